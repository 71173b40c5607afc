//! Data sets: the embedded optdigits set, CSV and MNIST IDX loaders, splits
//! and shuffled mini-batches.

mod batches;
mod csv;
mod idx;

pub use batches::Batches;
pub use csv::parse_csv;
pub use idx::{IdxImages, load_mnist, parse_idx_images, parse_idx_labels};

use std::io::Read;

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A classification data set: features (n x f) and labels in `0..num_classes`.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    features: Tensor,
    labels: Vec<usize>,
    num_classes: usize,
}

impl Dataset {
    /// A data set from features and labels.
    ///
    /// # Errors
    /// [`Error::Shape`] if `features` is not a matrix with one row per label;
    /// [`Error::Label`] for a label `>= num_classes`; [`Error::NonFinite`]
    /// for a NaN or infinite feature.
    ///
    /// ```
    /// use qgoft_nn::{data::Dataset, Tensor};
    /// let d = Dataset::new(Tensor::zeros(&[2, 3]), vec![0, 1], 2)?;
    /// assert_eq!(d.len(), 2);
    /// assert!(Dataset::new(Tensor::zeros(&[2, 3]), vec![0, 2], 2).is_err());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn new(features: Tensor, labels: Vec<usize>, num_classes: usize) -> Result<Self> {
        let (n, f) = features.dims2()?;
        if n != labels.len() {
            return Err(Error::shape("features (one row per label)", &[labels.len(), f], features.shape()));
        }
        if let Some((index, &label)) = labels.iter().enumerate().find(|&(_, &l)| l >= num_classes) {
            return Err(Error::Label { index, label, num_classes });
        }
        crate::error::check_finite("features", features.data())?;
        Ok(Dataset { features, labels, num_classes })
    }

    /// The features (n x f).
    ///
    /// ```
    /// assert_eq!(qgoft_nn::data::digits()?.features().shape(), &[1797, 64]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn features(&self) -> &Tensor {
        &self.features
    }

    /// The labels.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::data::digits()?.labels()[0], 0);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn labels(&self) -> &[usize] {
        &self.labels
    }

    /// Number of classes.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::data::digits()?.num_classes(), 10);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// Number of examples.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::data::digits()?.len(), 1797);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    ///
    /// ```
    /// assert!(!qgoft_nn::data::digits()?.is_empty());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Feature width.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::data::digits()?.num_features(), 64);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn num_features(&self) -> usize {
        self.features.shape()[1]
    }

    /// The examples with the given indices, in that order.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for an index out of range.
    ///
    /// ```
    /// let d = qgoft_nn::data::digits()?.subset(&[1, 0])?;
    /// assert_eq!(d.labels(), &[1, 0]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        let features = self.features.gather_rows(indices)?;
        let labels = indices.iter().map(|&i| self.labels[i]).collect();
        Ok(Dataset { features, labels, num_classes: self.num_classes })
    }

    /// A shuffled split into `(train, test)` with `round(test_fraction * n)` test examples.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless `0 <= test_fraction <= 1`.
    ///
    /// ```
    /// let (train, test) = qgoft_nn::data::digits()?.split(0.2, &mut qgoft_nn::Rng::new(0))?;
    /// assert_eq!(test.len(), 359);
    /// assert_eq!(train.len() + test.len(), 1797);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn split(&self, test_fraction: f64, rng: &mut Rng) -> Result<(Dataset, Dataset)> {
        if !(0.0..=1.0).contains(&test_fraction) {
            return Err(Error::invalid("test fraction", test_fraction));
        }
        let mut idx: Vec<usize> = (0..self.len()).collect();
        rng.shuffle(&mut idx);
        let n_test = (test_fraction * self.len() as f64).round() as usize;
        Ok((self.subset(&idx[n_test..])?, self.subset(&idx[..n_test])?))
    }

    /// Shuffled mini-batches of at most `batch_size` examples (the last may be smaller).
    ///
    /// # Panics
    /// If `batch_size == 0`.
    ///
    /// ```
    /// let d = qgoft_nn::data::digits()?;
    /// let sizes: Vec<usize> = d.batches(1000, Some(&mut qgoft_nn::Rng::new(0))).map(|(x, _)| x.shape()[0]).collect();
    /// assert_eq!(sizes, [1000, 797]);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn batches(&self, batch_size: usize, shuffle: Option<&mut Rng>) -> Batches<'_> {
        Batches::new(self, batch_size, shuffle)
    }
}

static DIGITS_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// The optdigits set (1797 8x8 images, UCI, CC BY 4.0, see `data/README.md`),
/// embedded in the crate, with pixel values scaled from `0..16` to `[0, 1]`.
///
/// # Errors
/// [`Error::Data`] only if the embedded file were corrupt.
///
/// ```
/// let d = qgoft_nn::data::digits()?;
/// assert_eq!((d.len(), d.num_features(), d.num_classes()), (1797, 64, 10));
/// assert!(d.features().data().iter().all(|&v| (0.0..=1.0).contains(&v)));
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn digits() -> Result<Dataset> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(DIGITS_GZ)
        .read_to_string(&mut text)
        .map_err(|e| Error::Data { source_name: "embedded digits.csv.gz".into(), reason: e.to_string() })?;
    let d = parse_csv(&text, "digits.csv", 64, Some(10))?;
    let mut features = d.features;
    features.scale(1.0 / 16.0);
    Dataset::new(features, d.labels, 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_class_counts_match_the_readme() {
        let d = digits().unwrap();
        let mut counts = [0usize; 10];
        d.labels().iter().for_each(|&l| counts[l] += 1);
        assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    }

    #[test]
    fn split_is_seeded_and_disjoint() {
        let d = digits().unwrap();
        let (a, b) = d.split(0.25, &mut Rng::new(3)).unwrap();
        let (a2, _) = d.split(0.25, &mut Rng::new(3)).unwrap();
        assert_eq!(a, a2);
        assert_eq!(a.len() + b.len(), d.len());
        assert!(d.split(1.5, &mut Rng::new(0)).is_err());
    }
}
