//! The CUDA implementation behind the public API (feature `cuda`): cudarc
//! with the driver, NVRTC and cuBLAS loaded at run time.

use std::sync::Arc;

use cudarc::cublas::sys::cublasOperation_t;
use cudarc::cublas::{CudaBlas, Gemm, GemmConfig};
use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

use super::CudaError;

pub(crate) type Buffer = CudaSlice<f32>;
pub(crate) type IndexBuffer = CudaSlice<u32>;

/// Elementwise binary operations.
#[derive(Clone, Copy)]
pub(crate) enum Binary {
    Add,
    Mul,
}

const ADAPTER_SRC: &str = include_str!("kernels/adapter.cu");
const ELEMENTWISE_SRC: &str = include_str!("kernels/elementwise.cu");

/// Threads per block of the elementwise kernels.
const THREADS: u32 = 256;
/// The largest dynamic shared memory a kernel may use without opting in.
const SHARED_LIMIT: usize = 48 * 1024;
/// Thread blocks of the adapter backward (fixed, so the reduction order and
/// thus the result do not depend on the device).
const BACKWARD_BLOCKS: usize = 1024;
/// Thread blocks of the adapter forward at most.
const FORWARD_BLOCKS: usize = 65535;

fn driver(during: &'static str) -> impl Fn(cudarc::driver::DriverError) -> CudaError {
    move |e| CudaError::Driver { during, message: e.to_string() }
}

fn blas(e: cudarc::cublas::result::CublasError) -> CudaError {
    CudaError::Blas { message: e.to_string() }
}

fn u32_of(what: &'static str, value: usize) -> Result<u32, CudaError> {
    u32::try_from(value).map_err(|_| CudaError::TooLarge { what, value })
}

fn check_libraries() -> Result<(), CudaError> {
    // SAFETY: these only try to open the shared libraries by name.
    let present = unsafe {
        [
            ("cuda", cudarc::driver::sys::is_culib_present()),
            ("nvrtc", cudarc::nvrtc::sys::is_culib_present()),
            ("cublas", cudarc::cublas::sys::is_culib_present()),
        ]
    };
    match present.iter().find(|(_, ok)| !ok) {
        Some(&(library, _)) => Err(CudaError::LibraryNotFound { library }),
        None => Ok(()),
    }
}

pub(crate) fn device_count() -> Result<usize, CudaError> {
    // SAFETY: only tries to open the driver library.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::LibraryNotFound { library: "cuda" });
    }
    match CudaContext::device_count() {
        Ok(n) => Ok(n.max(0) as usize),
        Err(e) if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => Ok(0),
        Err(e) => Err(driver("counting devices")(e)),
    }
}

struct Kernels {
    blocks_from_angles: CudaFunction,
    rotate_rows: CudaFunction,
    adapter_backward: CudaFunction,
    reduce_partials: CudaFunction,
    penalty_terms: CudaFunction,
    penalty_grad: CudaFunction,
    add: CudaFunction,
    mul: CudaFunction,
    axpy: CudaFunction,
    relu: CudaFunction,
    relu_backward: CudaFunction,
    add_bias: CudaFunction,
    column_sums: CudaFunction,
    softmax_xent: CudaFunction,
    sum_all: CudaFunction,
}

pub(crate) struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    blas: CudaBlas,
    k: Kernels,
    /// A one-element buffer passed for unused pointer arguments.
    unit: Buffer,
}

fn compile(
    ctx: &Arc<CudaContext>,
    source: &'static str,
    src: &str,
    names: &[&str],
) -> Result<Vec<CudaFunction>, CudaError> {
    let opts = CompileOptions { name: Some(source.to_string()), ..Default::default() };
    let ptx = compile_ptx_with_opts(src, opts).map_err(|e| CudaError::Compile {
        source,
        log: match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => log.to_string_lossy().into_owned(),
            other => other.to_string(),
        },
    })?;
    let module = ctx.load_module(ptx).map_err(driver("loading the compiled kernels"))?;
    names.iter().map(|n| module.load_function(n).map_err(driver("looking up a kernel"))).collect()
}

fn grid_for(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(THREADS as usize).clamp(1, 1 << 20) as u32;
    LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (THREADS, 1, 1), shared_mem_bytes: 0 }
}

/// Threads per block of the adapter kernels: enough for the widest stage,
/// a power of two between 32 and 256.
fn adapter_threads(max_stage_len: usize) -> u32 {
    max_stage_len.next_power_of_two().clamp(32, 256) as u32
}

/// The layout of the adapter kernels' launch.
pub(crate) struct StageTable<'a> {
    pub stages: &'a IndexBuffer,
    pub num_stages: usize,
    pub max_len: usize,
}

impl Device {
    pub(crate) fn open(ordinal: usize) -> Result<Self, CudaError> {
        check_libraries()?;
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal).map_err(driver("creating the context"))?;
        let stream = ctx.default_stream();
        let blas = CudaBlas::new(stream.clone()).map_err(blas)?;
        let a = compile(
            &ctx,
            "adapter.cu",
            ADAPTER_SRC,
            &[
                "blocks_from_angles",
                "rotate_rows",
                "adapter_backward",
                "reduce_partials",
                "penalty_terms",
                "penalty_grad",
            ],
        )?;
        let e = compile(
            &ctx,
            "elementwise.cu",
            ELEMENTWISE_SRC,
            &["add", "mul", "axpy", "relu", "relu_backward", "add_bias", "column_sums", "softmax_xent", "sum_all"],
        )?;
        let mut a = a.into_iter();
        let mut e = e.into_iter();
        let mut next_a = || a.next().expect("one function per name");
        let mut next_e = || e.next().expect("one function per name");
        let k = Kernels {
            blocks_from_angles: next_a(),
            rotate_rows: next_a(),
            adapter_backward: next_a(),
            reduce_partials: next_a(),
            penalty_terms: next_a(),
            penalty_grad: next_a(),
            add: next_e(),
            mul: next_e(),
            axpy: next_e(),
            relu: next_e(),
            relu_backward: next_e(),
            add_bias: next_e(),
            column_sums: next_e(),
            softmax_xent: next_e(),
            sum_all: next_e(),
        };
        let unit = stream.alloc_zeros::<f32>(1).map_err(driver("allocating device memory"))?;
        Ok(Self { ctx, stream, blas, k, unit })
    }

    pub(crate) fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    pub(crate) fn name(&self) -> Result<String, CudaError> {
        self.ctx.name().map_err(driver("reading the device name"))
    }

    pub(crate) fn synchronize(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(driver("waiting for the stream"))
    }

    pub(crate) fn upload(&self, data: &[f32]) -> Result<Buffer, CudaError> {
        if data.is_empty() {
            return self.zeros(0);
        }
        self.stream.clone_htod(data).map_err(driver("copying to the device"))
    }

    pub(crate) fn upload_u32(&self, data: &[u32]) -> Result<IndexBuffer, CudaError> {
        if data.is_empty() {
            return self.stream.alloc_zeros::<u32>(1).map_err(driver("allocating device memory"));
        }
        self.stream.clone_htod(data).map_err(driver("copying to the device"))
    }

    pub(crate) fn zeros(&self, len: usize) -> Result<Buffer, CudaError> {
        // Never allocate zero bytes: keeps every pointer valid for the kernels.
        self.stream.alloc_zeros::<f32>(len.max(1)).map_err(driver("allocating device memory"))
    }

    pub(crate) fn download(&self, buf: &Buffer, len: usize) -> Result<Vec<f32>, CudaError> {
        let mut v = self.stream.clone_dtoh(buf).map_err(driver("copying from the device"))?;
        v.truncate(len);
        Ok(v)
    }

    /// Row-major `C (m x n) = op(A) op(B)`, `A` stored with `lda` columns,
    /// `B` with `ldb`. cuBLAS is column-major, where the row-major `C` reads
    /// as `C^T = op(B)^T op(A)^T`: swap the operands and keep the flags.
    pub(crate) fn gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        (a, lda, ta): (&Buffer, usize, bool),
        (b, ldb, tb): (&Buffer, usize, bool),
        c: &mut Buffer,
    ) -> Result<(), CudaError> {
        let op = |t: bool| if t { cublasOperation_t::CUBLAS_OP_T } else { cublasOperation_t::CUBLAS_OP_N };
        let int = |what, v: usize| i32::try_from(v).map_err(|_| CudaError::TooLarge { what, value: v });
        let cfg = GemmConfig {
            transa: op(tb),
            transb: op(ta),
            m: int("GEMM columns", n)?,
            n: int("GEMM rows", m)?,
            k: int("GEMM inner dimension", k)?,
            alpha: 1.0f32,
            lda: int("GEMM leading dimension", ldb)?,
            ldb: int("GEMM leading dimension", lda)?,
            beta: 0.0f32,
            ldc: int("GEMM columns", n)?,
        };
        // SAFETY: the public layer checked the shapes: `a` holds m x k (or
        // k x m) floats, `b` k x n (or n x k), `c` m x n.
        unsafe { self.blas.gemm(cfg, b, a, c) }.map_err(blas)
    }

    pub(crate) fn binary(
        &self,
        op: Binary,
        a: &Buffer,
        b: &Buffer,
        out: &mut Buffer,
        n: usize,
    ) -> Result<(), CudaError> {
        if n == 0 {
            return Ok(());
        }
        let f = match op {
            Binary::Add => &self.k.add,
            Binary::Mul => &self.k.mul,
        };
        let mut l = self.stream.launch_builder(f);
        l.arg(a).arg(b).arg(out).arg(&n);
        // SAFETY: all three buffers hold n floats (checked shapes).
        unsafe { l.launch(grid_for(n)) }.map_err(driver("launching an elementwise kernel"))?;
        Ok(())
    }

    pub(crate) fn axpy(&self, alpha: f32, x: &Buffer, y: &mut Buffer, n: usize) -> Result<(), CudaError> {
        if n == 0 {
            return Ok(());
        }
        let mut l = self.stream.launch_builder(&self.k.axpy);
        l.arg(&alpha).arg(x).arg(y).arg(&n);
        // SAFETY: both buffers hold n floats.
        unsafe { l.launch(grid_for(n)) }.map_err(driver("launching axpy"))?;
        Ok(())
    }

    pub(crate) fn relu(&self, x: &Buffer, out: &mut Buffer, n: usize) -> Result<(), CudaError> {
        if n == 0 {
            return Ok(());
        }
        let mut l = self.stream.launch_builder(&self.k.relu);
        l.arg(x).arg(out).arg(&n);
        // SAFETY: both buffers hold n floats.
        unsafe { l.launch(grid_for(n)) }.map_err(driver("launching relu"))?;
        Ok(())
    }

    pub(crate) fn relu_backward(&self, x: &Buffer, g: &Buffer, out: &mut Buffer, n: usize) -> Result<(), CudaError> {
        if n == 0 {
            return Ok(());
        }
        let mut l = self.stream.launch_builder(&self.k.relu_backward);
        l.arg(x).arg(g).arg(out).arg(&n);
        // SAFETY: all three buffers hold n floats.
        unsafe { l.launch(grid_for(n)) }.map_err(driver("launching relu_backward"))?;
        Ok(())
    }

    pub(crate) fn add_bias(
        &self,
        x: &Buffer,
        bias: &Buffer,
        out: &mut Buffer,
        n: usize,
        cols: usize,
    ) -> Result<(), CudaError> {
        let cols32 = u32_of("columns", cols)?;
        let mut l = self.stream.launch_builder(&self.k.add_bias);
        l.arg(x).arg(bias).arg(out).arg(&n).arg(&cols32);
        // SAFETY: x and out hold n floats, bias cols floats, cols divides n.
        unsafe { l.launch(grid_for(n)) }.map_err(driver("launching add_bias"))?;
        Ok(())
    }

    pub(crate) fn column_sums(&self, g: &Buffer, out: &mut Buffer, rows: usize, cols: usize) -> Result<(), CudaError> {
        let rows32 = u32_of("rows", rows)?;
        let cols32 = u32_of("columns", cols)?;
        let mut l = self.stream.launch_builder(&self.k.column_sums);
        l.arg(g).arg(out).arg(&rows32).arg(&cols32);
        // SAFETY: g holds rows x cols floats, out cols.
        unsafe { l.launch(grid_for(cols)) }.map_err(driver("launching column_sums"))?;
        Ok(())
    }

    pub(crate) fn softmax_xent(
        &self,
        logits: &Buffer,
        labels: &[u32],
        grad: &mut Buffer,
        rows: usize,
        classes: usize,
    ) -> Result<f32, CudaError> {
        let rows32 = u32_of("rows", rows)?;
        let classes32 = u32_of("classes", classes)?;
        let labels = self.upload_u32(labels)?;
        let mut loss_rows = self.zeros(rows)?;
        let inv = 1.0f32 / rows as f32;
        let mut l = self.stream.launch_builder(&self.k.softmax_xent);
        l.arg(logits).arg(&labels).arg(&mut loss_rows).arg(grad).arg(&rows32).arg(&classes32).arg(&inv);
        // SAFETY: logits and grad hold rows x classes floats, labels rows
        // values below classes (checked on the host).
        unsafe { l.launch(grid_for(rows)) }.map_err(driver("launching softmax_xent"))?;
        self.sum_scaled(&loss_rows, rows, inv)
    }

    pub(crate) fn sum(&self, x: &Buffer, n: usize) -> Result<f32, CudaError> {
        self.sum_scaled(x, n, 1.0)
    }

    fn sum_scaled(&self, x: &Buffer, n: usize, scale: f32) -> Result<f32, CudaError> {
        let mut out = self.zeros(1)?;
        let mut l = self.stream.launch_builder(&self.k.sum_all);
        l.arg(x).arg(&n).arg(&scale).arg(&mut out);
        let cfg = LaunchConfig { grid_dim: (1, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        // SAFETY: x holds n floats; the kernel uses exactly 256 threads.
        unsafe { l.launch(cfg) }.map_err(driver("launching sum_all"))?;
        Ok(self.download(&out, 1)?[0])
    }

    pub(crate) fn blocks_from_angles(
        &self,
        params: &Buffer,
        blocks: &mut Buffer,
        num: usize,
        pitanh: bool,
    ) -> Result<(), CudaError> {
        if num == 0 {
            return Ok(());
        }
        let num32 = u32_of("rotations", num)?;
        let flag = pitanh as i32;
        let mut l = self.stream.launch_builder(&self.k.blocks_from_angles);
        l.arg(params).arg(blocks).arg(&num32).arg(&flag);
        // SAFETY: params holds num floats, blocks 4 num.
        unsafe { l.launch(grid_for(num)) }.map_err(driver("launching blocks_from_angles"))?;
        Ok(())
    }

    /// Rows of `y` = `R^T x_r` (forward = false) or `R x_r` (forward = true).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rotate_rows(
        &self,
        x: &Buffer,
        y: &mut Buffer,
        (n, d): (usize, usize),
        table: &StageTable<'_>,
        blocks: &Buffer,
        scale: Option<&Buffer>,
        forward: bool,
    ) -> Result<(), CudaError> {
        if n == 0 {
            return Ok(());
        }
        let n32 = u32_of("rows", n)?;
        let d32 = u32_of("dimension", d)?;
        let k32 = u32_of("stages", table.num_stages)?;
        let grid = n.min(FORWARD_BLOCKS);
        let use_shared = d * 4 <= SHARED_LIMIT;
        let work = if use_shared { self.zeros(1)? } else { self.zeros(grid * d)? };
        let (has_scale, scale) = match scale {
            Some(s) => (1i32, s),
            None => (0i32, &self.unit),
        };
        let (fwd, shared) = (forward as i32, use_shared as i32);
        let mut l = self.stream.launch_builder(&self.k.rotate_rows);
        l.arg(x).arg(y).arg(&n32).arg(&d32).arg(table.stages).arg(&k32).arg(blocks);
        l.arg(scale).arg(&has_scale).arg(&fwd).arg(&shared).arg(&work);
        let cfg = LaunchConfig {
            grid_dim: (grid as u32, 1, 1),
            block_dim: (adapter_threads(table.max_len), 1, 1),
            shared_mem_bytes: if use_shared { (d * 4) as u32 } else { 0 },
        };
        // SAFETY: x and y hold n x d floats, the stage table describes
        // planes inside 0..d and blocks inside the blocks buffer, scale (if
        // flagged) holds d floats, work grid x d floats when not shared.
        unsafe { l.launch(cfg) }.map_err(driver("launching rotate_rows"))?;
        Ok(())
    }

    /// The adapter's backward. Returns the gradients with respect to the
    /// blocks (quasi: 4 per block) or the angle parameters (strict: the raw
    /// parameters when `pitanh` holds them, else the angles), and the
    /// scaling's gradient when there is a scaling.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn adapter_backward(
        &self,
        x: &Buffer,
        gz: &Buffer,
        gx: &mut Buffer,
        (n, d): (usize, usize),
        table: &StageTable<'_>,
        blocks: &Buffer,
        num_blocks: usize,
        scale: Option<&Buffer>,
        quasi: bool,
        pitanh: Option<&Buffer>,
    ) -> Result<(Buffer, Option<Buffer>), CudaError> {
        let width = if quasi { 4 * num_blocks } else { num_blocks };
        let mut grad = self.zeros(width)?;
        let mut grad_scale = match scale {
            Some(_) => Some(self.zeros(d)?),
            None => None,
        };
        if n == 0 {
            return Ok((grad, grad_scale));
        }
        let n32 = u32_of("rows", n)?;
        let d32 = u32_of("dimension", d)?;
        let k32 = u32_of("stages", table.num_stages)?;
        let p32 = u32_of("rotations", num_blocks)?;
        let w32 = u32_of("gradient width", width)?;
        let grid = n.min(BACKWARD_BLOCKS);
        let g32 = grid as u32;
        let use_shared = 2 * d * 4 <= SHARED_LIMIT;
        let work = if use_shared { self.zeros(1)? } else { self.zeros(grid * 2 * d)? };
        let mut partial = self.zeros(grid * width)?;
        let mut pscale = if scale.is_some() { self.zeros(grid * d)? } else { self.zeros(1)? };
        let mut saved = if quasi { self.zeros(grid * 2 * num_blocks)? } else { self.zeros(1)? };
        let (has_scale, scale_buf) = match scale {
            Some(s) => (1i32, s),
            None => (0i32, &self.unit),
        };
        let (q, shared) = (quasi as i32, use_shared as i32);
        let mut l = self.stream.launch_builder(&self.k.adapter_backward);
        l.arg(x).arg(gz).arg(gx).arg(&n32).arg(&d32).arg(table.stages).arg(&k32).arg(blocks).arg(&p32);
        l.arg(scale_buf).arg(&has_scale).arg(&q).arg(&mut partial).arg(&mut pscale).arg(&mut saved);
        l.arg(&shared).arg(&work);
        let cfg = LaunchConfig {
            grid_dim: (g32, 1, 1),
            block_dim: (adapter_threads(table.max_len), 1, 1),
            shared_mem_bytes: if use_shared { (2 * d * 4) as u32 } else { 0 },
        };
        // SAFETY: x, gz, gx hold n x d floats; partial grid x width, pscale
        // grid x d (when scaled), saved grid x 2 num_blocks (when quasi),
        // work grid x 2d (when not shared); the stage table stays in bounds.
        unsafe { l.launch(cfg) }.map_err(driver("launching adapter_backward"))?;

        let chain = pitanh.is_some() as i32;
        let params = pitanh.unwrap_or(&self.unit);
        let mut l = self.stream.launch_builder(&self.k.reduce_partials);
        l.arg(&partial).arg(&g32).arg(&w32).arg(&mut grad).arg(&chain).arg(params);
        // SAFETY: partial holds grid x width floats, grad width, params
        // width when chained.
        unsafe { l.launch(grid_for(width)) }.map_err(driver("launching reduce_partials"))?;
        if let Some(gs) = grad_scale.as_mut() {
            let zero = 0i32;
            let mut l = self.stream.launch_builder(&self.k.reduce_partials);
            l.arg(&pscale).arg(&g32).arg(&d32).arg(gs).arg(&zero).arg(&self.unit);
            // SAFETY: pscale holds grid x d floats, gs d.
            unsafe { l.launch(grid_for(d)) }.map_err(driver("launching reduce_partials"))?;
        }
        Ok((grad, grad_scale))
    }

    pub(crate) fn penalty(&self, blocks: &Buffer, num: usize) -> Result<f32, CudaError> {
        if num == 0 {
            return Ok(0.0);
        }
        let num32 = u32_of("rotations", num)?;
        let mut terms = self.zeros(num)?;
        let mut l = self.stream.launch_builder(&self.k.penalty_terms);
        l.arg(blocks).arg(&num32).arg(&mut terms);
        // SAFETY: blocks holds 4 num floats, terms num.
        unsafe { l.launch(grid_for(num)) }.map_err(driver("launching penalty_terms"))?;
        self.sum(&terms, num)
    }

    pub(crate) fn penalty_grad(
        &self,
        blocks: &Buffer,
        num: usize,
        lambda: f32,
        grad: &mut Buffer,
    ) -> Result<(), CudaError> {
        if num == 0 {
            return Ok(());
        }
        let num32 = u32_of("rotations", num)?;
        let mut l = self.stream.launch_builder(&self.k.penalty_grad);
        l.arg(blocks).arg(&num32).arg(&lambda).arg(grad);
        // SAFETY: blocks and grad hold 4 num floats.
        unsafe { l.launch(grid_for(num)) }.map_err(driver("launching penalty_grad"))?;
        Ok(())
    }
}
