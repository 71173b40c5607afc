//! Checkpoints in the safetensors format, and atomic file writes.
//!
//! Every write goes through [`atomic_write`]: the bytes are written to a
//! temporary file in the destination's directory, flushed and `fsync`ed,
//! then renamed over the destination (and the directory is synced where
//! the platform allows), so a failed or interrupted write leaves any previous
//! file intact and never a half-written one.
//!
//! Reading validates everything: the header, dtypes (only `F32` is
//! accepted), that data lengths match shapes, that values are finite, and,
//! when loading into parameters, that the names and shapes match the model.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::error::{Error, Result};
use crate::param::Param;
use crate::tensor::Tensor;

/// Named tensors, as read from a file (sorted by name).
pub type NamedTensors = Vec<(String, Tensor)>;

/// The string metadata of a safetensors file.
pub type Metadata = HashMap<String, String>;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically (see the module documentation).
///
/// # Errors
/// [`Error::Io`] naming the file if any step fails; the destination is then unchanged.
///
/// ```
/// let path = std::env::temp_dir().join(format!("qgoft-doc-atomic-{}", std::process::id()));
/// qgoft_nn::io::atomic_write(&path, b"hello")?;
/// assert_eq!(std::fs::read(&path).unwrap(), b"hello");
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with_hook(path, bytes, |_| Ok(()))
}

/// [`atomic_write`] with a hook run between the synced write and the rename
/// (tests inject failures there).
pub(crate) fn atomic_write_with_hook(
    path: &Path,
    bytes: &[u8],
    before_rename: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid("output path (no file name)", path.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp =
        dir.join(format!(".{file_name}.{}.{}.tmp", std::process::id(), TMP_COUNTER.fetch_add(1, Ordering::Relaxed)));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.flush()?;
        f.sync_all()?;
        drop(f);
        before_rename(&tmp)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    // Make the rename durable; not every platform can open a directory.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Serialises named tensors (as `F32`) with optional string metadata.
///
/// # Errors
/// [`Error::InvalidArgument`] for a duplicate name; [`Error::Checkpoint`] if
/// the serialiser rejects the input.
///
/// ```
/// use qgoft_nn::{io, Tensor};
/// let t = Tensor::full(&[2], 1.0);
/// let bytes = io::serialize_tensors(&[("a", &t)], None)?;
/// let back = io::deserialize_tensors(&bytes, "".as_ref())?;
/// assert_eq!(back, vec![("a".to_string(), t)]);
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn serialize_tensors(tensors: &[(&str, &Tensor)], metadata: Option<&HashMap<String, String>>) -> Result<Vec<u8>> {
    let mut names: Vec<&str> = tensors.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(Error::invalid("duplicate tensor name", w[0]));
    }
    let bytes: Vec<Vec<u8>> =
        tensors.iter().map(|(_, t)| t.data().iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let err = |e: safetensors::SafeTensorError| Error::Checkpoint { path: PathBuf::new(), reason: e.to_string() };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, t), b)| Ok((name.to_string(), TensorView::new(Dtype::F32, t.shape().to_vec(), b).map_err(err)?)))
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, metadata.cloned()).map_err(err)
}

/// Parses safetensors bytes into named `F32` tensors, sorted by name.
/// `path` is only used in error messages.
///
/// # Errors
/// [`Error::Checkpoint`] naming what is wrong: a malformed or truncated
/// header or data section, a dtype other than `F32` (naming the tensor), or a
/// NaN or infinite value (naming the tensor and index).
///
/// ```
/// let err = qgoft_nn::io::deserialize_tensors(b"\x08\0\0\0\0\0\0\0{}", "x.safetensors".as_ref()).unwrap_err();
/// assert!(err.to_string().contains("x.safetensors"));
/// ```
pub fn deserialize_tensors(bytes: &[u8], path: &Path) -> Result<Vec<(String, Tensor)>> {
    let err = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(format!("{e} (the file is {} bytes)", bytes.len())))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(err(format!("tensor {name} has dtype {:?}, expected F32", view.dtype())));
        }
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(err(format!("tensor {name} holds the non-finite value {} at index {i}", data[i])));
        }
        let t = Tensor::new(view.shape().to_vec(), data).map_err(|e| err(format!("tensor {name}: {e}")))?;
        out.push((name, t));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

/// Saves named tensors to a safetensors file, atomically.
///
/// # Errors
/// As [`serialize_tensors`] and [`atomic_write`].
///
/// ```
/// use qgoft_nn::{io, Tensor};
/// let path = std::env::temp_dir().join(format!("qgoft-doc-save-{}.safetensors", std::process::id()));
/// io::save_tensors(&path, &[("w", &Tensor::eye(2))], None)?;
/// assert_eq!(io::load_tensors(&path)?[0].1, Tensor::eye(2));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn save_tensors(
    path: &Path,
    tensors: &[(&str, &Tensor)],
    metadata: Option<&HashMap<String, String>>,
) -> Result<()> {
    let bytes = serialize_tensors(tensors, metadata)?;
    atomic_write(path, &bytes)
}

/// Loads every tensor of a safetensors file, sorted by name.
///
/// # Errors
/// [`Error::Io`] if the file cannot be read; otherwise as [`deserialize_tensors`].
///
/// ```
/// assert!(qgoft_nn::io::load_tensors("/nonexistent/x.safetensors".as_ref()).is_err());
/// ```
pub fn load_tensors(path: &Path) -> Result<Vec<(String, Tensor)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    deserialize_tensors(&bytes, path)
}

/// Loads every tensor of a safetensors file (sorted by name) and its
/// string metadata (empty when the file has none).
///
/// # Errors
/// As [`load_tensors`].
///
/// ```
/// use std::collections::HashMap;
/// use qgoft_nn::{io, Tensor};
/// let path = std::env::temp_dir().join(format!("qgoft-doc-meta-{}.safetensors", std::process::id()));
/// let meta = HashMap::from([("model".to_string(), "mlp".to_string())]);
/// io::save_tensors(&path, &[("w", &Tensor::eye(2))], Some(&meta))?;
/// let (tensors, back) = io::load_checkpoint(&path)?;
/// assert_eq!((tensors.len(), back), (1, meta));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn load_checkpoint(path: &Path) -> Result<(NamedTensors, Metadata)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let tensors = deserialize_tensors(&bytes, path)?;
    let (_, meta) = SafeTensors::read_metadata(&bytes)
        .map_err(|e| Error::Checkpoint { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok((tensors, meta.metadata().clone().unwrap_or_default()))
}

/// Saves parameters under their names (with optional metadata), atomically.
///
/// # Errors
/// As [`save_tensors`].
///
/// ```
/// use qgoft_nn::{io, layers::{Linear, Module}, Rng};
/// let fc = Linear::new("fc", 3, 2, true, &mut Rng::new(0));
/// let path = std::env::temp_dir().join(format!("qgoft-doc-params-{}.safetensors", std::process::id()));
/// io::save_params(&path, &fc.params(), None)?;
/// let other = Linear::new("fc", 3, 2, true, &mut Rng::new(1));
/// io::load_params(&path, &other.params(), true)?;
/// assert_eq!(*other.weight().value(), *fc.weight().value());
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn save_params(path: &Path, params: &[Param], metadata: Option<&HashMap<String, String>>) -> Result<()> {
    let values: Vec<_> = params.iter().map(Param::value).collect();
    let named: Vec<(&str, &Tensor)> = params.iter().zip(&values).map(|(p, v)| (p.name(), &**v)).collect();
    save_tensors(path, &named, metadata)
}

/// Loads a file into parameters, matching by name. Every parameter must be
/// present with its shape; with `strict`, the file may hold no other
/// tensors. Nothing is changed unless the whole file validates.
///
/// # Errors
/// [`Error::Checkpoint`] naming a missing or unexpected tensor, or a tensor
/// whose shape differs from its parameter's (both shapes given); otherwise
/// as [`load_tensors`].
///
/// ```
/// use qgoft_nn::{io, Param, ParamKind, Tensor};
/// let path = std::env::temp_dir().join(format!("qgoft-doc-load-{}.safetensors", std::process::id()));
/// io::save_tensors(&path, &[("w", &Tensor::zeros(&[3]))], None)?;
/// let p = Param::new("w", ParamKind::Weight, Tensor::zeros(&[2]));
/// let err = io::load_params(&path, &[p], true).unwrap_err();
/// assert!(err.to_string().contains("tensor w has shape [3], the model expects [2]"));
/// # std::fs::remove_file(&path).unwrap();
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
pub fn load_params(path: &Path, params: &[Param], strict: bool) -> Result<()> {
    let tensors = load_tensors(path)?;
    let err = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
    let mut by_name: HashMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut updates = Vec::with_capacity(params.len());
    for p in params {
        let t = by_name.remove(p.name()).ok_or_else(|| err(format!("tensor {} is missing", p.name())))?;
        if t.shape() != p.shape() {
            return Err(err(format!(
                "tensor {} has shape {:?}, the model expects {:?}",
                p.name(),
                t.shape(),
                p.shape()
            )));
        }
        updates.push((p, t));
    }
    if strict && let Some(name) = by_name.keys().min() {
        return Err(err(format!("unexpected tensor {name} (not a parameter of the model)")));
    }
    for (p, t) in updates {
        p.set(t.clone())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamKind;

    fn tmp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("qgoft-io-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn failed_write_leaves_the_previous_file_intact_and_no_temporary() {
        let dir = tmp_dir("atomic");
        let path = dir.join("model.safetensors");
        save_tensors(&path, &[("w", &Tensor::full(&[2], 1.0))], None).unwrap();
        let before = std::fs::read(&path).unwrap();
        let new_bytes = serialize_tensors(&[("w", &Tensor::full(&[2], 2.0))], None).unwrap();
        let mut saw_tmp = false;
        let err = atomic_write_with_hook(&path, &new_bytes, |tmp| {
            saw_tmp = std::fs::read(tmp)? == new_bytes;
            Err(std::io::Error::other("injected failure before rename"))
        })
        .unwrap_err();
        assert!(saw_tmp, "the temporary file held the full new contents");
        assert!(err.to_string().contains("injected failure") && err.to_string().contains("model.safetensors"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
        assert_eq!(load_tensors(&path).unwrap()[0].1.data(), &[1.0, 1.0]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn malformed_and_truncated_files_are_rejected() {
        let good = serialize_tensors(&[("a", &Tensor::full(&[2, 2], 1.0)), ("b", &Tensor::zeros(&[3]))], None).unwrap();
        let p = Path::new("m.safetensors");
        for cut in [0, 4, 8, 20, good.len() - 1] {
            let e = deserialize_tensors(&good[..cut], p).unwrap_err();
            assert!(matches!(e, Error::Checkpoint { .. }) && e.to_string().contains("m.safetensors"), "cut {cut}: {e}");
        }
        let mut bad_json = good.clone();
        bad_json[8] = b'!';
        assert!(deserialize_tensors(&bad_json, p).is_err());
        // a huge header length
        let mut huge = good.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(deserialize_tensors(&huge, p).is_err());
        // wrong dtype
        let data = [0u8; 4];
        let view = TensorView::new(Dtype::I32, vec![1], &data).unwrap();
        let i32_file = safetensors::serialize(vec![("n".to_string(), view)], None).unwrap();
        let e = deserialize_tensors(&i32_file, p).unwrap_err().to_string();
        assert!(e.contains("tensor n has dtype I32"), "{e}");
        // non-finite value
        let nan = serialize_tensors(&[("x", &Tensor::new(vec![2], vec![0.0, f32::NAN]).unwrap())], None).unwrap();
        let e = deserialize_tensors(&nan, p).unwrap_err().to_string();
        assert!(e.contains("tensor x") && e.contains("index 1"), "{e}");
    }

    #[test]
    fn load_params_validates_names_and_shapes_before_changing_anything() {
        let dir = tmp_dir("params");
        let path = dir.join("p.safetensors");
        save_tensors(&path, &[("w", &Tensor::full(&[2], 5.0)), ("extra", &Tensor::zeros(&[1]))], None).unwrap();
        let w = Param::new("w", ParamKind::Weight, Tensor::zeros(&[2]));
        let b = Param::new("b", ParamKind::Bias, Tensor::zeros(&[1]));
        let e = load_params(&path, &[w.clone(), b], false).unwrap_err().to_string();
        assert!(e.contains("tensor b is missing"), "{e}");
        assert_eq!(w.value().data(), &[0.0, 0.0]);
        let e = load_params(&path, std::slice::from_ref(&w), true).unwrap_err().to_string();
        assert!(e.contains("unexpected tensor extra"), "{e}");
        load_params(&path, std::slice::from_ref(&w), false).unwrap();
        assert_eq!(w.value().data(), &[5.0, 5.0]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(serialize_tensors(&[("a", &Tensor::zeros(&[1])), ("a", &Tensor::zeros(&[1]))], None).is_err());
    }
}
