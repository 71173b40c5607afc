//! Named, trainable parameters and sets of them.
//!
//! A [`Param`] is a shared handle (cloning it does not copy the tensor) to a
//! tensor with a name (the key in safetensors files), a [`ParamKind`] (which
//! decides weight-decay exclusion) and a trainable flag. Layers own their
//! parameters; a graph reads them through [`crate::Graph::param`]; an
//! optimizer updates them in place.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What a parameter is for; optimizers exclude some kinds from weight decay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    /// A weight matrix.
    Weight,
    /// A bias vector.
    Bias,
    /// A normalisation scale or shift (layer norm `gamma`, `beta`).
    Norm,
    /// An adapter parameter (LoRA factors, OFT or qGOFT parameters).
    Adapter,
}

/// Unique identity of a parameter (stable for the life of the process).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(u64);

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

#[derive(Debug)]
struct Inner {
    id: ParamId,
    name: String,
    kind: ParamKind,
    value: RwLock<Arc<Tensor>>,
    trainable: std::sync::atomic::AtomicBool,
}

/// A named tensor that training may update.
///
/// ```
/// use qgoft_nn::{Param, ParamKind, Tensor};
/// let p = Param::new("fc.bias", ParamKind::Bias, Tensor::zeros(&[3]));
/// let q = p.clone(); // the same parameter
/// p.set(Tensor::full(&[3], 1.0))?;
/// assert_eq!(q.value().data(), &[1.0, 1.0, 1.0]);
/// q.freeze();
/// assert!(!p.is_trainable());
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct Param(Arc<Inner>);

impl Param {
    /// A new trainable parameter.
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[2, 2]));
    /// assert_eq!(p.name(), "w");
    /// ```
    pub fn new(name: impl Into<String>, kind: ParamKind, value: Tensor) -> Self {
        Param(Arc::new(Inner {
            id: ParamId(NEXT_ID.fetch_add(1, Ordering::Relaxed)),
            name: name.into(),
            kind,
            value: RwLock::new(Arc::new(value)),
            trainable: std::sync::atomic::AtomicBool::new(true),
        }))
    }

    /// The identity used to key gradients.
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[1]));
    /// assert_eq!(p.id(), p.clone().id());
    /// ```
    pub fn id(&self) -> ParamId {
        self.0.id
    }

    /// The name (safetensors key).
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("a.b", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[1]));
    /// assert_eq!(p.name(), "a.b");
    /// ```
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// The kind.
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("b", qgoft_nn::ParamKind::Bias, qgoft_nn::Tensor::zeros(&[1]));
    /// assert_eq!(p.kind(), qgoft_nn::ParamKind::Bias);
    /// ```
    pub fn kind(&self) -> ParamKind {
        self.0.kind
    }

    /// A shared snapshot of the current value (cheap: no copy).
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[2]));
    /// assert_eq!(p.value().shape(), &[2]);
    /// ```
    pub fn value(&self) -> Arc<Tensor> {
        Arc::clone(&self.0.value.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// The shape.
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[2, 5]));
    /// assert_eq!(p.shape(), vec![2, 5]);
    /// ```
    pub fn shape(&self) -> Vec<usize> {
        self.value().shape().to_vec()
    }

    /// Replaces the value.
    ///
    /// # Errors
    /// [`Error::Shape`] if `value` has a different shape (naming the parameter).
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[2]));
    /// assert!(p.set(qgoft_nn::Tensor::zeros(&[3])).is_err());
    /// ```
    pub fn set(&self, value: Tensor) -> Result<()> {
        let mut guard = self.0.value.write().unwrap_or_else(|e| e.into_inner());
        if guard.shape() != value.shape() {
            return Err(Error::shape(format!("parameter {}", self.0.name), guard.shape(), value.shape()));
        }
        *guard = Arc::new(value);
        Ok(())
    }

    /// Updates the value in place with `f` (copy-on-write if a graph still holds the old value).
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[2]));
    /// p.update(|t| t.data_mut()[0] = 1.0);
    /// assert_eq!(p.value().data(), &[1.0, 0.0]);
    /// ```
    pub fn update<R>(&self, f: impl FnOnce(&mut Tensor) -> R) -> R {
        let mut guard = self.0.value.write().unwrap_or_else(|e| e.into_inner());
        f(Arc::make_mut(&mut guard))
    }

    /// Whether optimizers update this parameter and graphs track its gradient.
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[1]));
    /// assert!(p.is_trainable());
    /// ```
    pub fn is_trainable(&self) -> bool {
        self.0.trainable.load(Ordering::Relaxed)
    }

    /// Sets the trainable flag.
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[1]));
    /// p.set_trainable(false);
    /// assert!(!p.is_trainable());
    /// ```
    pub fn set_trainable(&self, trainable: bool) {
        self.0.trainable.store(trainable, Ordering::Relaxed);
    }

    /// Freezes the parameter (`set_trainable(false)`).
    ///
    /// ```
    /// let p = qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[1]));
    /// p.freeze();
    /// assert!(!p.is_trainable());
    /// ```
    pub fn freeze(&self) {
        self.set_trainable(false);
    }
}

/// An ordered set of parameters with unique names.
///
/// ```
/// use qgoft_nn::{Param, ParamKind, Params, Tensor};
/// let mut ps = Params::new();
/// ps.push(Param::new("w", ParamKind::Weight, Tensor::zeros(&[2])))?;
/// assert!(ps.push(Param::new("w", ParamKind::Weight, Tensor::zeros(&[2]))).is_err());
/// assert_eq!(ps.get("w").map(|p| p.shape()), Some(vec![2]));
/// # Ok::<(), qgoft_nn::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Params {
    list: Vec<Param>,
}

impl Params {
    /// An empty set.
    ///
    /// ```
    /// assert!(qgoft_nn::Params::new().is_empty());
    /// ```
    pub fn new() -> Self {
        Params { list: Vec::new() }
    }

    /// A set from a list.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] on a duplicate name.
    ///
    /// ```
    /// use qgoft_nn::{Param, ParamKind, Params, Tensor};
    /// let ps = Params::from_vec(vec![Param::new("a", ParamKind::Weight, Tensor::zeros(&[1]))])?;
    /// assert_eq!(ps.len(), 1);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn from_vec(list: Vec<Param>) -> Result<Self> {
        let mut ps = Params::new();
        for p in list {
            ps.push(p)?;
        }
        Ok(ps)
    }

    /// Adds a parameter.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if the name is already present.
    ///
    /// ```
    /// let mut ps = qgoft_nn::Params::new();
    /// ps.push(qgoft_nn::Param::new("w", qgoft_nn::ParamKind::Weight, qgoft_nn::Tensor::zeros(&[1])))?;
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn push(&mut self, p: Param) -> Result<()> {
        if self.get(p.name()).is_some() {
            return Err(Error::invalid("duplicate parameter name", p.name()));
        }
        self.list.push(p);
        Ok(())
    }

    /// The parameter with this name.
    ///
    /// ```
    /// assert!(qgoft_nn::Params::new().get("w").is_none());
    /// ```
    pub fn get(&self, name: &str) -> Option<&Param> {
        self.list.iter().find(|p| p.name() == name)
    }

    /// All parameters in insertion order.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Params::new().iter().count(), 0);
    /// ```
    pub fn iter(&self) -> std::slice::Iter<'_, Param> {
        self.list.iter()
    }

    /// The trainable parameters.
    ///
    /// ```
    /// use qgoft_nn::{Param, ParamKind, Params, Tensor};
    /// let ps = Params::from_vec(vec![Param::new("a", ParamKind::Weight, Tensor::zeros(&[1]))])?;
    /// ps.freeze_all();
    /// assert!(ps.trainable().is_empty());
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn trainable(&self) -> Vec<Param> {
        self.list.iter().filter(|p| p.is_trainable()).cloned().collect()
    }

    /// Freezes every parameter.
    ///
    /// ```
    /// qgoft_nn::Params::new().freeze_all();
    /// ```
    pub fn freeze_all(&self) {
        self.list.iter().for_each(Param::freeze);
    }

    /// Number of parameters.
    ///
    /// ```
    /// assert_eq!(qgoft_nn::Params::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the set is empty.
    ///
    /// ```
    /// assert!(qgoft_nn::Params::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Total number of scalar elements (of all, or only trainable, parameters).
    ///
    /// ```
    /// use qgoft_nn::{Param, ParamKind, Params, Tensor};
    /// let ps = Params::from_vec(vec![Param::new("a", ParamKind::Weight, Tensor::zeros(&[2, 3]))])?;
    /// assert_eq!(ps.num_elements(false), 6);
    /// # Ok::<(), qgoft_nn::Error>(())
    /// ```
    pub fn num_elements(&self, trainable_only: bool) -> usize {
        self.list.iter().filter(|p| !trainable_only || p.is_trainable()).map(|p| p.value().len()).sum()
    }
}

impl<'a> IntoIterator for &'a Params {
    type Item = &'a Param;
    type IntoIter = std::slice::Iter<'a, Param>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}
