//! Mini-batch iteration.

use super::Dataset;
use crate::rng::Rng;
use crate::tensor::Tensor;

/// An iterator over `(features, labels)` mini-batches of a [`Dataset`], in a
/// shuffled order when built with a generator (see [`Dataset::batches`]).
#[derive(Debug)]
pub struct Batches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    batch_size: usize,
    pos: usize,
}

impl<'a> Batches<'a> {
    /// Batches over `data`; the order is a permutation drawn from `shuffle`, or the stored order.
    ///
    /// # Panics
    /// If `batch_size == 0`.
    ///
    /// ```
    /// let d = qgoft_nn::data::digits()?;
    /// let mut it = qgoft_nn::data::Batches::new(&d, 10, None);
    /// assert_eq!(it.next().unwrap().1, d.labels()[..10].to_vec());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn new(data: &'a Dataset, batch_size: usize, shuffle: Option<&mut Rng>) -> Self {
        assert!(batch_size > 0, "batch size must be positive");
        let mut order: Vec<usize> = (0..data.len()).collect();
        if let Some(rng) = shuffle {
            rng.shuffle(&mut order);
        }
        Batches { data, order, batch_size, pos: 0 }
    }

    /// Number of batches in total.
    ///
    /// ```
    /// let d = qgoft_nn::data::digits()?;
    /// assert_eq!(d.batches(100, None).num_batches(), 18);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn num_batches(&self) -> usize {
        self.order.len().div_ceil(self.batch_size)
    }
}

impl Iterator for Batches<'_> {
    type Item = (Tensor, Vec<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.batch_size).min(self.order.len());
        let idx = &self.order[self.pos..end];
        self.pos = end;
        let x = self.data.features().gather_rows(idx).expect("batch indices are in range");
        let y = idx.iter().map(|&i| self.data.labels()[i]).collect();
        Some((x, y))
    }
}

#[cfg(test)]
mod tests {
    use crate::{Rng, Tensor, data::Dataset};

    #[test]
    fn shuffled_batches_cover_every_example_once() {
        let d = Dataset::new(Tensor::from_fn(&[23, 1], |i| i as f32), (0..23).map(|i| i % 3).collect(), 3).unwrap();
        let mut seen: Vec<usize> =
            d.batches(5, Some(&mut Rng::new(1))).flat_map(|(x, _)| x.into_data()).map(|v| v as usize).collect();
        assert_ne!(seen, (0..23).collect::<Vec<_>>());
        seen.sort();
        assert_eq!(seen, (0..23).collect::<Vec<_>>());
    }
}
