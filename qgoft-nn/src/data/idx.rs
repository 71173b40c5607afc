//! The MNIST IDX format: big-endian magic `0x00 0x00 type ndim`, `ndim`
//! big-endian `u32` dimensions, then the data. Images are type `0x08`
//! (`u8`) with 3 dimensions (count, rows, cols); labels `0x08` with 1.

use std::path::Path;

use super::Dataset;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Decoded IDX images: `count` images of `rows x cols` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdxImages {
    /// Number of images.
    pub count: usize,
    /// Rows per image.
    pub rows: usize,
    /// Columns per image.
    pub cols: usize,
    /// `count * rows * cols` pixel bytes, image by image, row-major.
    pub pixels: Vec<u8>,
}

fn header(bytes: &[u8], name: &str, ndim: u8) -> Result<(Vec<usize>, usize)> {
    let err = |reason: String| Error::Data { source_name: name.to_string(), reason };
    if bytes.len() < 4 {
        return Err(err(format!("file is {} bytes, too short for the 4-byte IDX magic", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(format!("bad IDX magic {:02x} {:02x} (expected 00 00)", bytes[0], bytes[1])));
    }
    if bytes[2] != 0x08 {
        return Err(err(format!("IDX data type 0x{:02x} is not unsigned bytes (0x08)", bytes[2])));
    }
    if bytes[3] != ndim {
        return Err(err(format!("IDX file has {} dimensions, expected {ndim}", bytes[3])));
    }
    let head = 4 + 4 * ndim as usize;
    if bytes.len() < head {
        return Err(err(format!("file is {} bytes, truncated inside the {head}-byte header", bytes.len())));
    }
    let dims: Vec<usize> = (0..ndim as usize)
        .map(|k| u32::from_be_bytes(bytes[4 + 4 * k..8 + 4 * k].try_into().expect("4 bytes")) as usize)
        .collect();
    let n = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(format!("dimensions {dims:?} overflow")))?;
    if bytes.len() - head != n {
        let what = if bytes.len() - head < n { "truncated" } else { "has trailing bytes" };
        return Err(err(format!("{what}: header {dims:?} needs {n} data bytes, found {}", bytes.len() - head)));
    }
    Ok((dims, head))
}

/// Parses an IDX image file (`u8`, 3 dimensions).
///
/// # Errors
/// [`Error::Data`] naming the bad magic, type, dimension count, or the
/// expected and found data lengths.
///
/// ```
/// let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2];
/// bytes.extend([1, 2, 3, 4]);
/// let img = qgoft_nn::data::parse_idx_images(&bytes, "x.idx")?;
/// assert_eq!((img.count, img.rows, img.cols), (1, 2, 2));
/// assert!(qgoft_nn::data::parse_idx_images(&bytes[..18], "x.idx").is_err());
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn parse_idx_images(bytes: &[u8], name: &str) -> Result<IdxImages> {
    let (dims, head) = header(bytes, name, 3)?;
    Ok(IdxImages { count: dims[0], rows: dims[1], cols: dims[2], pixels: bytes[head..].to_vec() })
}

/// Parses an IDX label file (`u8`, 1 dimension).
///
/// # Errors
/// [`Error::Data`] as for [`parse_idx_images`].
///
/// ```
/// let bytes = [0, 0, 8, 1, 0, 0, 0, 3, 7, 0, 9];
/// assert_eq!(qgoft_nn::data::parse_idx_labels(&bytes, "y.idx")?, vec![7, 0, 9]);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn parse_idx_labels(bytes: &[u8], name: &str) -> Result<Vec<u8>> {
    let (_, head) = header(bytes, name, 1)?;
    Ok(bytes[head..].to_vec())
}

/// Loads an MNIST-style pair of IDX files into a [`Dataset`] with pixels
/// scaled to `[0, 1]` and 10 classes.
///
/// # Errors
/// [`Error::Io`] naming an unreadable file; [`Error::Data`] for malformed
/// files or differing counts; [`Error::Label`] for a label above 9.
///
/// ```no_run
/// let d = qgoft_nn::data::load_mnist("train-images-idx3-ubyte".as_ref(), "train-labels-idx1-ubyte".as_ref())?;
/// assert_eq!(d.num_features(), 784);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn load_mnist(images: &Path, labels: &Path) -> Result<Dataset> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| Error::io(p, e));
    let img = parse_idx_images(&read(images)?, &images.display().to_string())?;
    let lab = parse_idx_labels(&read(labels)?, &labels.display().to_string())?;
    if img.count != lab.len() {
        return Err(Error::Data {
            source_name: labels.display().to_string(),
            reason: format!("{} labels for {} images in {}", lab.len(), img.count, images.display()),
        });
    }
    let f = img.rows * img.cols;
    let x = Tensor::new(vec![img.count, f], img.pixels.iter().map(|&p| f32::from(p) / 255.0).collect())?;
    Dataset::new(x, lab.into_iter().map(usize::from).collect(), 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(count: u32, rows: u32, cols: u32) -> Vec<u8> {
        let mut b = vec![0, 0, 8, 3];
        for d in [count, rows, cols] {
            b.extend(d.to_be_bytes());
        }
        b.extend((0..count * rows * cols).map(|i| i as u8));
        b
    }

    #[test]
    fn malformed_idx_is_rejected_with_reasons() {
        let good = images(2, 3, 3);
        assert_eq!(parse_idx_images(&good, "x").unwrap().pixels.len(), 18);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..3].to_vec(), "too short"),
            ([&[1u8, 0, 8, 3][..], &good[4..]].concat(), "magic"),
            ([&[0u8, 0, 0x0d, 3][..], &good[4..]].concat(), "0x0d"),
            ([&[0u8, 0, 8, 2][..], &good[4..]].concat(), "2 dimensions"),
            (good[..10].to_vec(), "truncated inside"),
            (good[..good.len() - 1].to_vec(), "truncated: header [2, 3, 3] needs 18"),
            ([&good[..], &[0u8]].concat(), "trailing"),
        ];
        for (bytes, want) in cases {
            let e = parse_idx_images(&bytes, "img.idx").unwrap_err().to_string();
            assert!(e.contains(want) && e.contains("img.idx"), "{want}: {e}");
        }
        let e = parse_idx_labels(&good, "lab.idx").unwrap_err().to_string();
        assert!(e.contains("3 dimensions, expected 1"), "{e}");
    }

    #[test]
    fn mnist_pair_loads_and_checks_counts() {
        let dir = std::env::temp_dir().join(format!("qgoft-idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (xi, yi) = (dir.join("x"), dir.join("y"));
        std::fs::write(&xi, images(2, 2, 2)).unwrap();
        std::fs::write(&yi, [0u8, 0, 8, 1, 0, 0, 0, 2, 3, 9]).unwrap();
        let d = load_mnist(&xi, &yi).unwrap();
        assert_eq!((d.len(), d.num_features()), (2, 4));
        assert_eq!(d.labels(), &[3, 9]);
        std::fs::write(&yi, [0u8, 0, 8, 1, 0, 0, 0, 1, 3]).unwrap();
        assert!(load_mnist(&xi, &yi).unwrap_err().to_string().contains("1 labels for 2 images"));
        std::fs::write(&yi, [0u8, 0, 8, 1, 0, 0, 0, 2, 3, 10]).unwrap();
        assert!(matches!(load_mnist(&xi, &yi).unwrap_err(), Error::Label { label: 10, .. }));
        assert!(matches!(load_mnist(&dir.join("missing"), &yi).unwrap_err(), Error::Io { .. }));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
