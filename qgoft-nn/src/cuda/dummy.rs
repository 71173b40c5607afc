//! The stand-in for the CUDA implementation when the `cuda` feature is off:
//! the same items, uninhabited, and every constructor returns
//! [`CudaError::NotCompiled`].
#![allow(clippy::too_many_arguments, clippy::needless_pass_by_ref_mut)]

use super::CudaError;

/// No device exists without the feature.
pub(crate) enum Device {}
/// No buffer exists without the feature.
pub(crate) enum Buffer {}
/// No buffer exists without the feature.
pub(crate) enum IndexBuffer {}

/// Elementwise binary operations.
#[derive(Clone, Copy)]
pub(crate) enum Binary {
    Add,
    Mul,
}

/// The layout of the adapter kernels' launch.
#[allow(dead_code)]
pub(crate) struct StageTable<'a> {
    pub stages: &'a IndexBuffer,
    pub num_stages: usize,
    pub max_len: usize,
}

pub(crate) fn device_count() -> Result<usize, CudaError> {
    Err(CudaError::NotCompiled)
}

impl Device {
    pub(crate) fn open(_ordinal: usize) -> Result<Self, CudaError> {
        Err(CudaError::NotCompiled)
    }
    pub(crate) fn ordinal(&self) -> usize {
        match *self {}
    }
    pub(crate) fn name(&self) -> Result<String, CudaError> {
        match *self {}
    }
    pub(crate) fn synchronize(&self) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn upload(&self, _data: &[f32]) -> Result<Buffer, CudaError> {
        match *self {}
    }
    pub(crate) fn upload_u32(&self, _data: &[u32]) -> Result<IndexBuffer, CudaError> {
        match *self {}
    }
    pub(crate) fn zeros(&self, _len: usize) -> Result<Buffer, CudaError> {
        match *self {}
    }
    pub(crate) fn download(&self, _buf: &Buffer, _len: usize) -> Result<Vec<f32>, CudaError> {
        match *self {}
    }
    pub(crate) fn gemm(
        &self,
        _mnk: (usize, usize, usize),
        _a: (&Buffer, usize, bool),
        _b: (&Buffer, usize, bool),
        _c: &mut Buffer,
    ) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn binary(
        &self,
        _op: Binary,
        _a: &Buffer,
        _b: &Buffer,
        _out: &mut Buffer,
        _n: usize,
    ) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn axpy(&self, _alpha: f32, _x: &Buffer, _y: &mut Buffer, _n: usize) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn relu(&self, _x: &Buffer, _out: &mut Buffer, _n: usize) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn relu_backward(
        &self,
        _x: &Buffer,
        _g: &Buffer,
        _out: &mut Buffer,
        _n: usize,
    ) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn add_bias(
        &self,
        _x: &Buffer,
        _b: &Buffer,
        _out: &mut Buffer,
        _n: usize,
        _c: usize,
    ) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn column_sums(&self, _g: &Buffer, _out: &mut Buffer, _r: usize, _c: usize) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn softmax_xent(
        &self,
        _logits: &Buffer,
        _labels: &[u32],
        _grad: &mut Buffer,
        _rows: usize,
        _classes: usize,
    ) -> Result<f32, CudaError> {
        match *self {}
    }
    pub(crate) fn sum(&self, _x: &Buffer, _n: usize) -> Result<f32, CudaError> {
        match *self {}
    }
    pub(crate) fn blocks_from_angles(
        &self,
        _p: &Buffer,
        _b: &mut Buffer,
        _num: usize,
        _pitanh: bool,
    ) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn rotate_rows(
        &self,
        _x: &Buffer,
        _y: &mut Buffer,
        _nd: (usize, usize),
        _table: &StageTable<'_>,
        _blocks: &Buffer,
        _scale: Option<&Buffer>,
        _forward: bool,
    ) -> Result<(), CudaError> {
        match *self {}
    }
    pub(crate) fn adapter_backward(
        &self,
        _x: &Buffer,
        _gz: &Buffer,
        _gx: &mut Buffer,
        _nd: (usize, usize),
        _table: &StageTable<'_>,
        _blocks: &Buffer,
        _num_blocks: usize,
        _scale: Option<&Buffer>,
        _quasi: bool,
        _pitanh: Option<&Buffer>,
    ) -> Result<(Buffer, Option<Buffer>), CudaError> {
        match *self {}
    }
    pub(crate) fn penalty(&self, _blocks: &Buffer, _num: usize) -> Result<f32, CudaError> {
        match *self {}
    }
    pub(crate) fn penalty_grad(
        &self,
        _blocks: &Buffer,
        _num: usize,
        _lambda: f32,
        _grad: &mut Buffer,
    ) -> Result<(), CudaError> {
        match *self {}
    }
}
