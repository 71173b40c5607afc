//! The adapted linear layer against the plain one on the GPU, forward and
//! backward, at `(n, d, m) = (8192, 4096, 4096)` (batch rows, inputs, outputs).
//!
//! plain (frozen W):    Y = X W^T + b,        dX = dY W
//! plain (trainable W): the same and dW = dY^T X
//! adapted:             Z = X R (adapter), Y = Z W^T + b,
//!                      dZ = dY W, (dX, dparams) = adapter backward
//!
//! Prints the ratio of the adapted layer's time to the plain layer's, and of
//! the adapter kernels alone to an elementwise add over the same `n x d`
//! batch (a memory-bandwidth reference), all measured in the same run.
//! Skips with a message when no CUDA device is present.
//!
//! `cargo bench -p qgoft-nn --features cuda --bench cuda_adapter`

use std::time::Instant;

use qgoft_math::{AngleMap, Layout};
use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice, CudaError, CudaTensor};

const N: usize = 8192;
const D: usize = 4096;
const M: usize = 4096;
const REPS: usize = 10;

/// Median seconds per call of `f` (after one warm-up call), each call
/// synchronised.
fn time(dev: &CudaDevice, mut f: impl FnMut() -> Result<(), CudaError>) -> Result<f64, CudaError> {
    f()?;
    dev.synchronize()?;
    let mut t = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let start = Instant::now();
        f()?;
        dev.synchronize()?;
        t.push(start.elapsed().as_secs_f64());
    }
    t.sort_by(f64::total_cmp);
    Ok(t[REPS / 2])
}

fn filled(dev: &CudaDevice, shape: &[usize], seed: u32) -> Result<CudaTensor, CudaError> {
    let len: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f32> = (0..len)
        .map(|_| {
            s = s.wrapping_mul(1664525).wrapping_add(1013904223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        })
        .collect();
    dev.upload(&v, shape)
}

fn main() -> Result<(), CudaError> {
    let dev = match CudaDevice::open(0) {
        Ok(dev) => dev,
        Err(e) => {
            println!("cuda_adapter: skipped, no CUDA device ({e})");
            return Ok(());
        }
    };
    println!("cuda_adapter on {} (device {}), n = {N}, d = {D}, m = {M}, median of {REPS}", dev.name()?, dev.ordinal());
    let x = filled(&dev, &[N, D], 1)?;
    let w = filled(&dev, &[M, D], 2)?;
    let b = filled(&dev, &[M], 3)?;
    let gy = filled(&dev, &[N, M], 4)?;

    let plain_frozen = time(&dev, || {
        let y = dev.add_bias(&dev.matmul(&x, false, &w, true)?, &b)?;
        let gx = dev.matmul(&gy, false, &w, false)?;
        drop((y, gx));
        Ok(())
    })?;
    let plain_trained = time(&dev, || {
        let y = dev.add_bias(&dev.matmul(&x, false, &w, true)?, &b)?;
        let gx = dev.matmul(&gy, false, &w, false)?;
        let gw = dev.matmul(&gy, true, &x, false)?;
        drop((y, gx, gw));
        Ok(())
    })?;
    let add = time(&dev, || dev.add(&x, &x).map(drop))?;
    let gemm_flops = 2.0 * (N * D * M) as f64;
    println!(
        "reference: one GEMM at {:.1} TFLOP/s; elementwise add of n x d at {:.0} GB/s",
        2.0 * gemm_flops / plain_frozen / 1e12,
        3.0 * 4.0 * (N * D) as f64 / add / 1e9
    );
    println!();
    println!(
        "{:<8} {:<22} {:>16} {:>18} {:>16} {:>16}",
        "layout", "mode", "layer/plain", "layer/plain+dW", "adapter fwd/add", "adapter bwd/add"
    );
    let modes = [AdapterMode::Goft(AngleMap::PiTanh), AdapterMode::GoftScaled(AngleMap::PiTanh), AdapterMode::Qgoft];
    for layout in [Layout::Tree, Layout::Chain] {
        for mode in modes {
            let a = CudaAdapter::identity(&dev, layout, D, mode)?;
            let layer = time(&dev, || {
                let z = a.forward(&dev, &x)?;
                let y = dev.add_bias(&dev.matmul(&z, false, &w, true)?, &b)?;
                let gz = dev.matmul(&gy, false, &w, false)?;
                let grads = a.backward(&dev, &x, &gz)?;
                drop((y, grads));
                Ok(())
            })?;
            let fwd = time(&dev, || a.forward(&dev, &x).map(drop))?;
            let bwd = time(&dev, || a.backward(&dev, &x, &x).map(drop))?;
            println!(
                "{:<8} {:<22} {:>16.3} {:>18.3} {:>16.2} {:>16.2}",
                format!("{layout:?}"),
                format!("{mode:?}"),
                layer / plain_frozen,
                layer / plain_trained,
                fwd / add,
                bwd / add
            );
        }
    }
    Ok(())
}
