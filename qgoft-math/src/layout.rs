//! Layouts: which planes the rotations act on, grouped into stages.
//!
//! A layout is an ordered list of stages `S_1 .. S_K`; each stage is a set of
//! disjoint planes, so its rotations commute and can be applied in parallel.
//! Parameters are numbered in stage order, then plane order within a stage.
//! With `P_k` the product of stage `k`'s blocks, `R = P_K ... P_1` (times the
//! scaling, see [`crate::apply`]).
//!
//! Every stage of every layout here is an arithmetic progression of planes
//! `(first + t * stride, first + t * stride + gap)` for `t = 0 .. len`, so a
//! [`Stage`] is five integers: layouts are walked without allocating.
//!
//! | layout | rotations | stages | reaches |
//! | --- | --- | --- | --- |
//! | [`Layout::Chain`] | `d - 1` | `d - 1` | a `(d-1)`-dimensional family |
//! | [`Layout::Tree`] | `d - 1` | `ceil(log2 d)` | a `(d-1)`-dimensional family |
//! | [`Layout::Full`] | `d (d - 1) / 2` | `d (d - 1) / 2` | all of SO(d) |
//! | [`Layout::FullParallel`] | `d (d - 1) / 2` | `2 d - 3` | all of SO(d) |
//!
//! The chain and the tree do not reach every rotation. With `d - 1` rotations
//! whose planes are chosen for the pair, any vector can be moved onto any other
//! of the same norm (the paper's Theorem 4.1); with the planes fixed by the
//! chain or the tree this works for many pairs but not all (see
//! [`crate::decompose::align`]).

use core::ops::Range;

/// A coordinate plane `(i, j)` with `i < j`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Plane {
    /// The first coordinate.
    pub i: usize,
    /// The second coordinate, `j > i`.
    pub j: usize,
}

/// One stage: the disjoint planes `(first + t * stride, first + t * stride + gap)`
/// for `t = 0 .. len`, whose parameters are `offset .. offset + len`.
///
/// ```
/// use qgoft_math::{Layout, Plane};
/// let s = Layout::Tree.stage(6, 1);
/// assert_eq!(s.planes().collect::<Vec<_>>(), vec![Plane { i: 0, j: 2 }]);
/// assert_eq!(s.params(), 3..4);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage {
    /// First coordinate of the first plane.
    pub first: usize,
    /// Distance between the first coordinates of consecutive planes.
    pub stride: usize,
    /// `j - i` for every plane of the stage.
    pub gap: usize,
    /// Number of planes.
    pub len: usize,
    /// Parameter index of the first plane.
    pub offset: usize,
}

impl Stage {
    /// The `t`-th plane of the stage.
    ///
    /// # Panics
    /// If `t >= self.len`.
    #[inline]
    pub fn plane(&self, t: usize) -> Plane {
        assert!(t < self.len, "plane {t} out of range for a stage of {} planes", self.len);
        let i = self.first + t * self.stride;
        Plane { i, j: i + self.gap }
    }

    /// The planes of the stage, in parameter order.
    pub fn planes(&self) -> impl ExactSizeIterator<Item = Plane> + DoubleEndedIterator + Clone {
        let s = *self;
        (0..s.len).map(move |t| {
            let i = s.first + t * s.stride;
            Plane { i, j: i + s.gap }
        })
    }

    /// The parameter indices of the stage's planes.
    #[inline]
    pub fn params(&self) -> Range<usize> {
        self.offset..self.offset + self.len
    }
}

/// Which planes a rotation is built from, and in which stages.
///
/// ```
/// use qgoft_math::Layout;
/// assert_eq!(Layout::Tree.num_rotations(13), 12);
/// assert_eq!(Layout::Tree.num_stages(13), 4);
/// assert_eq!(Layout::Full.num_rotations(5), 10);
/// assert_eq!(Layout::FullParallel.num_stages(5), 7);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Layout {
    /// `d - 1` adjacent planes `(k, k + 1)`, one per stage, `k = 0 .. d - 1`.
    Chain,
    /// The reference qGOFT order: `d - 1` planes in `ceil(log2 d)` stages.
    ///
    /// ```text
    /// cur = d; step = 1
    /// while cur > 1:
    ///     left = cur % 2; cur = cur / 2
    ///     stage = planes (2*step*t, 2*step*t + step) for t = 0 .. cur-1
    ///     step = 2*step; cur = cur + left
    /// ```
    Tree,
    /// All `d (d - 1) / 2` rotations of SO(d), one per stage: for each
    /// column `c = 0 .. d - 1`, the adjacent planes `(r - 1, r)` for
    /// `r = d - 1` down to `c + 1`.
    Full,
    /// The planes of [`Layout::Full`] regrouped into `2 d - 3` stages of
    /// disjoint planes (Sameh and Kuck's order): the plane `(r - 1, r)` of
    /// column `c` goes to stage `d - 1 - r + 2 c`. Every pair of overlapping
    /// planes keeps its relative order, so applying it gives bitwise the same
    /// result as [`Layout::Full`] with the parameters permuted.
    FullParallel,
}

impl Layout {
    /// Number of rotations (parameters) for dimension `d`.
    pub fn num_rotations(self, d: usize) -> usize {
        match self {
            Layout::Chain | Layout::Tree => d.saturating_sub(1),
            Layout::Full | Layout::FullParallel => d * d.saturating_sub(1) / 2,
        }
    }

    /// Number of stages for dimension `d`.
    pub fn num_stages(self, d: usize) -> usize {
        match self {
            Layout::Chain => d.saturating_sub(1),
            Layout::Tree => {
                if d <= 1 {
                    0
                } else {
                    (usize::BITS - (d - 1).leading_zeros()) as usize
                }
            }
            Layout::Full => self.num_rotations(d),
            Layout::FullParallel => (2 * d).saturating_sub(3),
        }
    }

    /// Stage `k` (0-based) for dimension `d`.
    ///
    /// # Panics
    /// If `k >= self.num_stages(d)`.
    pub fn stage(self, d: usize, k: usize) -> Stage {
        let n = self.num_stages(d);
        assert!(k < n, "stage {k} out of range: {self:?} has {n} stages for d = {d}");
        match self {
            Layout::Chain => Stage { first: k, stride: 1, gap: 1, len: 1, offset: k },
            Layout::Tree => {
                let (mut cur, mut step, mut offset) = (d, 1usize, 0usize);
                for _ in 0..k {
                    let left = cur % 2;
                    cur /= 2;
                    offset += cur;
                    step *= 2;
                    cur += left;
                }
                Stage { first: 0, stride: 2 * step, gap: step, len: cur / 2, offset }
            }
            Layout::Full => {
                let (_, start) = full_column_of(d, k);
                let r = d - 1 - (k - start);
                Stage { first: r - 1, stride: 1, gap: 1, len: 1, offset: k }
            }
            Layout::FullParallel => {
                let (c_lo, len) = parallel_geometry(d, k);
                let offset = (0..k).map(|s| parallel_geometry(d, s).1).sum();
                Stage { first: d + 2 * c_lo - 2 - k, stride: 2, gap: 1, len, offset }
            }
        }
    }

    /// The stages for dimension `d`, first to last (reversible).
    ///
    /// ```
    /// use qgoft_math::Layout;
    /// let lens: Vec<usize> = Layout::Tree.stages(13).map(|s| s.len).collect();
    /// assert_eq!(lens, vec![6, 3, 2, 1]);
    /// ```
    pub fn stages(self, d: usize) -> Stages {
        Stages {
            layout: self,
            d,
            front: 0,
            back: self.num_stages(d),
            front_offset: 0,
            back_offset: self.num_rotations(d),
        }
    }

    /// All planes for dimension `d` in parameter order.
    pub fn planes(self, d: usize) -> impl Iterator<Item = Plane> + Clone {
        self.stages(d).flat_map(|s| s.planes())
    }

    /// For [`Layout::FullParallel`], the [`Layout::Full`] parameter index of
    /// each parallel parameter index; the identity for the other layouts.
    ///
    /// ```
    /// use qgoft_math::Layout;
    /// let d = 5;
    /// let full: Vec<_> = Layout::Full.planes(d).collect();
    /// for (p, plane) in Layout::FullParallel.planes(d).enumerate() {
    ///     let q = Layout::FullParallel.sequential_index(d, p);
    ///     assert_eq!(full[q], plane);
    /// }
    /// ```
    pub fn sequential_index(self, d: usize, p: usize) -> usize {
        if self != Layout::FullParallel {
            return p;
        }
        // Find the stage holding p, then the column of that plane.
        let mut offset = 0;
        for t in 0..self.num_stages(d) {
            let (c_lo, len) = parallel_geometry(d, t);
            if p < offset + len {
                let c = c_lo + (p - offset);
                let r = d + 2 * c - 1 - t;
                return full_column_start(d, c) + (d - 1 - r);
            }
            offset += len;
        }
        panic!("parameter {p} out of range for FullParallel with d = {d}");
    }

    fn geometry(self, d: usize, k: usize) -> (usize, usize, usize, usize) {
        // (first, stride, gap, len) without the offset.
        match self {
            Layout::FullParallel => {
                let (c_lo, len) = parallel_geometry(d, k);
                (d + 2 * c_lo - 2 - k, 2, 1, len)
            }
            _ => {
                let s = self.stage(d, k);
                (s.first, s.stride, s.gap, s.len)
            }
        }
    }
}

/// Parameter index of the first plane of column `c` in [`Layout::Full`].
#[inline]
pub(crate) fn full_column_start(d: usize, c: usize) -> usize {
    // columns 0..c hold (d-1) + (d-2) + ... + (d-c) planes
    c * (d - 1) - c * c.saturating_sub(1) / 2
}

/// Column of parameter `k` in [`Layout::Full`] and that column's start.
fn full_column_of(d: usize, k: usize) -> (usize, usize) {
    // largest c with full_column_start(d, c) <= k
    let (mut lo, mut hi) = (0usize, d - 1);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        if full_column_start(d, mid) <= k {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo, full_column_start(d, lo))
}

/// Lowest column and number of planes of stage `t` of [`Layout::FullParallel`].
fn parallel_geometry(d: usize, t: usize) -> (usize, usize) {
    // plane (r-1, r) of column c sits at t = d-1-r+2c, with c+1 <= r <= d-1
    let c_lo = (t + 2).saturating_sub(d);
    let c_hi = t / 2;
    (c_lo, c_hi + 1 - c_lo)
}

/// Iterator over the stages of a layout; see [`Layout::stages`].
#[derive(Clone, Debug)]
pub struct Stages {
    layout: Layout,
    d: usize,
    front: usize,
    back: usize,
    front_offset: usize,
    back_offset: usize,
}

impl Iterator for Stages {
    type Item = Stage;

    fn next(&mut self) -> Option<Stage> {
        if self.front >= self.back {
            return None;
        }
        let (first, stride, gap, len) = self.layout.geometry(self.d, self.front);
        let s = Stage { first, stride, gap, len, offset: self.front_offset };
        self.front += 1;
        self.front_offset += len;
        Some(s)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.back - self.front;
        (n, Some(n))
    }
}

impl DoubleEndedIterator for Stages {
    fn next_back(&mut self) -> Option<Stage> {
        if self.front >= self.back {
            return None;
        }
        self.back -= 1;
        let (first, stride, gap, len) = self.layout.geometry(self.d, self.back);
        self.back_offset -= len;
        Some(Stage { first, stride, gap, len, offset: self.back_offset })
    }
}

impl ExactSizeIterator for Stages {}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate alloc;
    use alloc::{vec, vec::Vec};

    fn stage_planes(l: Layout, d: usize) -> Vec<Vec<(usize, usize)>> {
        l.stages(d).map(|s| s.planes().map(|p| (p.i, p.j)).collect()).collect()
    }

    #[test]
    fn tree_d6_matches_design() {
        assert_eq!(stage_planes(Layout::Tree, 6), vec![vec![(0, 1), (2, 3), (4, 5)], vec![(0, 2)], vec![(0, 4)]]);
    }

    #[test]
    fn tree_small_dims() {
        assert_eq!(Layout::Tree.num_stages(1), 0);
        assert_eq!(stage_planes(Layout::Tree, 2), vec![vec![(0, 1)]]);
        assert_eq!(stage_planes(Layout::Tree, 3), vec![vec![(0, 1)], vec![(0, 2)]]);
        assert_eq!(stage_planes(Layout::Tree, 5), vec![vec![(0, 1), (2, 3)], vec![(0, 2)], vec![(0, 4)]]);
    }

    #[test]
    fn full_parallel_d4() {
        assert_eq!(stage_planes(Layout::Full, 4).concat(), vec![(2, 3), (1, 2), (0, 1), (2, 3), (1, 2), (2, 3)]);
        assert_eq!(
            stage_planes(Layout::FullParallel, 4),
            vec![vec![(2, 3)], vec![(1, 2)], vec![(0, 1), (2, 3)], vec![(1, 2)], vec![(2, 3)]]
        );
    }

    #[test]
    fn reverse_iteration_matches_forward() {
        for l in [Layout::Chain, Layout::Tree, Layout::Full, Layout::FullParallel] {
            for d in 0..20 {
                let f: Vec<Stage> = l.stages(d).collect();
                let mut b: Vec<Stage> = l.stages(d).rev().collect();
                b.reverse();
                assert_eq!(f, b, "{l:?} d={d}");
                for (k, s) in f.iter().enumerate() {
                    assert_eq!(*s, l.stage(d, k));
                }
            }
        }
    }
}
