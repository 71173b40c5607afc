//! Structure of every layout, checked exhaustively over the dimensions:
//! plane validity, disjointness inside a stage, counts, parameter offsets,
//! agreement with the procedures of DESIGN.md re-implemented here, and the
//! ordering guarantees of the parallel full layout.

use qgoft_math::{Layout, Plane};

/// The tree procedure of DESIGN.md section 2, verbatim.
fn design_tree(d: usize) -> Vec<Vec<(usize, usize)>> {
    let mut stages = Vec::new();
    let (mut cur, mut step) = (d, 1usize);
    while cur > 1 {
        let left = cur % 2;
        cur /= 2;
        stages.push((0..cur).map(|t| (2 * step * t, 2 * step * t + step)).collect());
        step *= 2;
        cur += left;
    }
    stages
}

/// The full layout of DESIGN.md / the crate docs: for each column
/// `c = 0 .. d - 1`, the planes `(r - 1, r)` for `r = d - 1` down to `c + 1`.
fn design_full(d: usize) -> Vec<(usize, usize)> {
    let mut planes = Vec::new();
    for c in 0..d.saturating_sub(1) {
        for r in (c + 1..d).rev() {
            planes.push((r - 1, r));
        }
    }
    planes
}

fn stage_planes(l: Layout, d: usize) -> Vec<Vec<(usize, usize)>> {
    l.stages(d).map(|s| s.planes().map(|p| (p.i, p.j)).collect()).collect()
}

/// Checks what every layout promises: valid planes, disjoint stages,
/// contiguous parameter offsets in stage order, counts, and that `stage`,
/// `stages` (both directions) and `planes` agree.
fn check_common(l: Layout, d: usize) {
    let stages: Vec<_> = l.stages(d).collect();
    assert_eq!(stages.len(), l.num_stages(d), "{l:?} d = {d}: stage count");
    let mut back: Vec<_> = l.stages(d).rev().collect();
    back.reverse();
    assert_eq!(stages, back, "{l:?} d = {d}: reverse iteration");
    let mut offset = 0;
    let mut seen = vec![usize::MAX; d];
    for (k, s) in stages.iter().enumerate() {
        assert_eq!(*s, l.stage(d, k), "{l:?} d = {d}: stage({k})");
        assert!(s.len >= 1, "{l:?} d = {d}: empty stage {k}");
        assert_eq!(s.offset, offset, "{l:?} d = {d}: offset of stage {k}");
        assert_eq!(s.params(), offset..offset + s.len);
        for (t, p) in s.planes().enumerate() {
            assert_eq!(p, s.plane(t));
            assert!(p.i < p.j && p.j < d, "{l:?} d = {d}: invalid plane {p:?} in stage {k}");
            for x in [p.i, p.j] {
                assert_ne!(seen[x], k, "{l:?} d = {d}: coordinate {x} used twice in stage {k}");
                seen[x] = k;
            }
        }
        offset += s.len;
    }
    assert_eq!(offset, l.num_rotations(d), "{l:?} d = {d}: rotation count");
    assert_eq!(l.planes(d).count(), l.num_rotations(d));
}

#[test]
fn tree_structure_for_every_d_up_to_1024() {
    for d in 1..=1024usize {
        check_common(Layout::Tree, d);
        assert_eq!(Layout::Tree.num_rotations(d), d - 1);
        let ceil_log2 = (0..).find(|&k| 1usize << k >= d).unwrap();
        assert_eq!(Layout::Tree.num_stages(d), ceil_log2, "d = {d}");
        assert_eq!(stage_planes(Layout::Tree, d), design_tree(d), "d = {d}");
        // d - 1 rotations joining d coordinates without a cycle: a spanning
        // tree, so every coordinate is reached (union-find over the planes).
        let mut parent: Vec<usize> = (0..d).collect();
        fn find(p: &mut [usize], x: usize) -> usize {
            let mut r = x;
            while p[r] != r {
                r = p[r];
            }
            p[x] = r;
            r
        }
        for p in Layout::Tree.planes(d) {
            let (a, b) = (find(&mut parent, p.i), find(&mut parent, p.j));
            assert_ne!(a, b, "d = {d}: plane {p:?} closes a cycle");
            parent[a] = b;
        }
    }
}

#[test]
fn design_examples() {
    assert_eq!(design_tree(6), vec![vec![(0, 1), (2, 3), (4, 5)], vec![(0, 2)], vec![(0, 4)]]);
    assert_eq!(design_tree(13).iter().map(Vec::len).collect::<Vec<_>>(), vec![6, 3, 2, 1]);
    assert!(design_tree(1).is_empty());
    assert_eq!(stage_planes(Layout::Tree, 13), design_tree(13));
}

#[test]
fn chain_structure_for_every_d_up_to_1024() {
    for d in 1..=1024usize {
        check_common(Layout::Chain, d);
        let planes: Vec<Plane> = Layout::Chain.planes(d).collect();
        assert_eq!(planes, (0..d - 1).map(|k| Plane { i: k, j: k + 1 }).collect::<Vec<_>>(), "d = {d}");
        assert!(Layout::Chain.stages(d).all(|s| s.len == 1));
    }
}

#[test]
fn full_structure() {
    // Every d up to 200 in full, then a few large ones.
    let dims = (1..=200usize).chain([255, 256, 257, 511, 512, 1000, 1024]);
    for d in dims {
        check_common(Layout::Full, d);
        check_common(Layout::FullParallel, d);
        let full: Vec<(usize, usize)> = Layout::Full.planes(d).map(|p| (p.i, p.j)).collect();
        assert_eq!(full, design_full(d), "d = {d}");
        assert_eq!(Layout::Full.num_rotations(d), d * (d - 1) / 2);
        assert_eq!(Layout::FullParallel.num_stages(d), (2 * d).saturating_sub(3), "d = {d}");
        // The documented placement: plane (r-1, r) of column c sits in
        // stage d - 1 - r + 2c, in increasing column order within a stage.
        let mut want: Vec<Vec<(usize, usize)>> = vec![Vec::new(); (2 * d).saturating_sub(3)];
        for c in 0..d.saturating_sub(1) {
            for r in c + 1..d {
                want[d - 1 - r + 2 * c].push((r - 1, r));
            }
        }
        let got = stage_planes(Layout::FullParallel, d);
        assert_eq!(got.len(), want.len(), "d = {d}");
        for (k, (g, w)) in got.iter().zip(&want).enumerate() {
            let mut g = g.clone();
            let mut w = w.clone();
            g.sort_unstable();
            w.sort_unstable();
            assert_eq!(g, w, "d = {d}: FullParallel stage {k}");
        }
    }
}

/// `sequential_index` is a bijection onto the Full parameters that maps each
/// parallel plane to the same plane, and every two overlapping planes keep
/// their relative order: for each coordinate, the planes touching it, taken
/// in parallel (stage) order, have increasing sequential indices.
#[test]
fn full_parallel_keeps_the_order_of_overlapping_planes() {
    for d in 1..=96usize {
        let n = Layout::Full.num_rotations(d);
        let full: Vec<Plane> = Layout::Full.planes(d).collect();
        let mut hit = vec![false; n];
        let mut last: Vec<Option<usize>> = vec![None; d];
        for (p, plane) in Layout::FullParallel.planes(d).enumerate() {
            let q = Layout::FullParallel.sequential_index(d, p);
            assert!(q < n && !hit[q], "d = {d}: sequential_index({p}) = {q} repeated or out of range");
            hit[q] = true;
            assert_eq!(full[q], plane, "d = {d}: parameter {p}");
            for x in [plane.i, plane.j] {
                if let Some(prev) = last[x] {
                    assert!(prev < q, "d = {d}: planes on coordinate {x} reordered ({prev} after {q})");
                }
                last[x] = Some(q);
            }
        }
        // The identity for the other layouts.
        for l in [Layout::Chain, Layout::Tree, Layout::Full] {
            for p in 0..l.num_rotations(d) {
                assert_eq!(l.sequential_index(d, p), p);
            }
        }
    }
    // The pairwise statement itself, on small d.
    for d in 1..=24usize {
        let par: Vec<(usize, Plane)> = Layout::FullParallel
            .planes(d)
            .enumerate()
            .map(|(p, pl)| (Layout::FullParallel.sequential_index(d, p), pl))
            .collect();
        for (a, &(qa, pa)) in par.iter().enumerate() {
            for &(qb, pb) in &par[a + 1..] {
                let overlap = pa.i == pb.i || pa.i == pb.j || pa.j == pb.i || pa.j == pb.j;
                assert!(!overlap || qa < qb, "d = {d}: {pa:?} and {pb:?} swap order");
            }
        }
    }
}
