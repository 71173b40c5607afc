//! Every GPU op against the CPU: `qgoft-math` (in f64) for the adapter,
//! plain f64 loops for the rest, central differences of the f64 forward for
//! the parameter gradients. Relative error (norm-wise) `<= 1e-5` in f32.
//!
//! On a machine without a CUDA device every GPU test prints why it is
//! skipped and passes. Without the `cuda` feature only the error path is
//! tested.

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_feature_every_constructor_says_to_rebuild() {
    use qgoft_nn::cuda::{CudaDevice, CudaError, Device};
    let e = CudaDevice::open(0).unwrap_err();
    assert_eq!(e, CudaError::NotCompiled);
    assert!(e.to_string().contains("--features cuda"), "{e}");
    assert_eq!(Device::Cuda(0).open().unwrap_err(), CudaError::NotCompiled);
    assert_eq!(qgoft_nn::cuda::device_count().unwrap_err(), CudaError::NotCompiled);
    assert!(Device::Cpu.open().unwrap().is_none());
}

mod cuda_common;

#[cfg(feature = "cuda")]
mod gpu {
    use super::cuda_common::{
        Lcg, MODES, TOL, assert_close, cpu_penalty, cpu_rotation, cpu_rows, f32s, fd_grads, params_for, rel,
    };
    use qgoft_math::{AngleMap, Layout};
    use qgoft_nn::cuda::{AdapterMode, CudaAdapter, CudaDevice, CudaError, Device};

    fn device() -> Option<CudaDevice> {
        match CudaDevice::open(0) {
            Ok(dev) => Some(dev),
            Err(e) => {
                eprintln!("skipped: no CUDA device available ({e})");
                None
            }
        }
    }

    macro_rules! device_or_skip {
        () => {
            match device() {
                Some(dev) => dev,
                None => return,
            }
        };
    }

    #[test]
    fn device_parsing_and_open_errors_are_typed() {
        assert_eq!("cuda:0".parse::<Device>().unwrap(), Device::Cuda(0));
        match CudaDevice::open(usize::MAX) {
            Err(CudaError::NoDevice { ordinal, .. }) => assert_eq!(ordinal, usize::MAX),
            Err(CudaError::LibraryNotFound { library }) => eprintln!("skipped: `{library}` not found"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn upload_download_round_trip() {
        let dev = device_or_skip!();
        let v = f32s(&Lcg(1).vec(1000));
        let t = dev.upload(&v, &[10, 100]).unwrap();
        assert_eq!(t.shape(), &[10, 100]);
        assert_eq!(dev.download(&t).unwrap(), v);
        assert!(matches!(dev.upload(&v, &[3, 3]), Err(CudaError::ShapeMismatch { .. })));
    }

    fn cpu_matmul(
        a: &[f64],
        (ra, ca): (usize, usize),
        ta: bool,
        b: &[f64],
        (rb, cb): (usize, usize),
        tb: bool,
    ) -> Vec<f64> {
        let at = |i: usize, k: usize| if ta { a[k * ca + i] } else { a[i * ca + k] };
        let bt = |k: usize, j: usize| if tb { b[j * cb + k] } else { b[k * cb + j] };
        let (m, k) = if ta { (ca, ra) } else { (ra, ca) };
        let n = if tb { rb } else { cb };
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            }
        }
        c
    }

    #[test]
    fn matmul_matches_cpu_for_every_transpose() {
        let dev = device_or_skip!();
        let mut g = Lcg(2);
        let (m, k, n) = (37, 65, 23);
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let sa = if ta { (k, m) } else { (m, k) };
            let sb = if tb { (n, k) } else { (k, n) };
            let a = g.vec(m * k);
            let b = g.vec(k * n);
            let ga = dev.upload(&f32s(&a), &[sa.0, sa.1]).unwrap();
            let gb = dev.upload(&f32s(&b), &[sb.0, sb.1]).unwrap();
            let c = dev.matmul(&ga, ta, &gb, tb).unwrap();
            assert_eq!(c.shape(), &[m, n]);
            let cpu = cpu_matmul(&a, sa, ta, &b, sb, tb);
            assert_close(&format!("matmul ta={ta} tb={tb}"), &dev.download(&c).unwrap(), &cpu);
        }
        let a = dev.zeros(&[2, 3]).unwrap();
        assert!(matches!(dev.matmul(&a, false, &a, false), Err(CudaError::ShapeMismatch { .. })));
    }

    #[test]
    fn elementwise_ops_match_cpu() {
        let dev = device_or_skip!();
        let mut g = Lcg(3);
        let (r, c) = (33, 70);
        let a = g.vec(r * c);
        let b = g.vec(r * c);
        let bias = g.vec(c);
        let ga = dev.upload(&f32s(&a), &[r, c]).unwrap();
        let gb = dev.upload(&f32s(&b), &[r, c]).unwrap();
        let gbias = dev.upload(&f32s(&bias), &[c]).unwrap();
        let get = |t| dev.download(&t).unwrap();
        let zip = |f: &dyn Fn(f64, f64) -> f64| a.iter().zip(&b).map(|(x, y)| f(*x, *y)).collect::<Vec<_>>();
        assert_close("add", &get(dev.add(&ga, &gb).unwrap()), &zip(&|x, y| x + y));
        assert_close("mul", &get(dev.mul(&ga, &gb).unwrap()), &zip(&|x, y| x * y));
        assert_close("relu", &get(dev.relu(&ga).unwrap()), &zip(&|x, _| x.max(0.0)));
        let rb = zip(&|x, y| if x > 0.0 { y } else { 0.0 });
        assert_close("relu_backward", &get(dev.relu_backward(&ga, &gb).unwrap()), &rb);
        let biased: Vec<f64> = a.iter().enumerate().map(|(i, x)| x + bias[i % c]).collect();
        assert_close("add_bias", &get(dev.add_bias(&ga, &gbias).unwrap()), &biased);
        let sums: Vec<f64> = (0..c).map(|j| (0..r).map(|i| a[i * c + j]).sum()).collect();
        assert_close("column_sums", &get(dev.column_sums(&ga).unwrap()), &sums);
        let mut y = dev.upload(&f32s(&b), &[r, c]).unwrap();
        dev.axpy(-0.25, &ga, &mut y).unwrap();
        assert_close("axpy", &get(y), &zip(&|x, y| y - 0.25 * x));
        let total: f64 = a.iter().sum();
        let s = dev.sum(&ga).unwrap() as f64;
        assert!((s - total).abs() <= TOL * a.iter().map(|v| v.abs()).sum::<f64>(), "sum {s} vs {total}");
        assert!(matches!(dev.add(&ga, &gbias), Err(CudaError::ShapeMismatch { .. })));
    }

    #[test]
    fn softmax_cross_entropy_matches_cpu() {
        let dev = device_or_skip!();
        let mut g = Lcg(4);
        let (r, c) = (41, 10);
        let z: Vec<f64> = g.vec(r * c).iter().map(|v| 8.0 * v).collect();
        let labels: Vec<u32> = (0..r).map(|i| ((i * 7 + 3) % c) as u32).collect();
        let gz = dev.upload(&f32s(&z), &[r, c]).unwrap();
        let (loss, grad) = dev.softmax_cross_entropy(&gz, &labels).unwrap();
        let mut cpu_loss = 0.0;
        let mut cpu_grad = vec![0.0; r * c];
        for i in 0..r {
            let row = &z[i * c..(i + 1) * c];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            cpu_loss += (lse - row[labels[i] as usize]) / r as f64;
            for k in 0..c {
                let onehot = if k == labels[i] as usize { 1.0 } else { 0.0 };
                cpu_grad[i * c + k] = ((row[k] - lse).exp() - onehot) / r as f64;
            }
        }
        assert!(((loss as f64) - cpu_loss).abs() <= TOL * cpu_loss, "loss {loss} vs {cpu_loss}");
        assert_close("softmax cross-entropy gradient", &dev.download(&grad).unwrap(), &cpu_grad);
        let bad = dev.softmax_cross_entropy(&gz, &vec![10; r]);
        assert!(matches!(bad, Err(CudaError::LabelOutOfRange { index: 0, label: 10, classes: 10 })));
    }

    fn upload_adapter(
        dev: &CudaDevice,
        layout: Layout,
        d: usize,
        mode: AdapterMode,
        p: &[f64],
        s: Option<&[f64]>,
    ) -> CudaAdapter {
        let s32 = s.map(f32s);
        CudaAdapter::new(dev, layout, d, mode, &f32s(p), s32.as_deref()).unwrap()
    }

    #[test]
    fn adapter_forward_and_merge_match_qgoft_math() {
        let dev = device_or_skip!();
        let mut g = Lcg(5);
        // 7000 > 6144 takes the kernels' global-memory path.
        for layout in [Layout::Chain, Layout::Tree, Layout::Full] {
            for d in [1usize, 2, 3, 6, 13, 64, 257, 7000] {
                if layout == Layout::Full && d > 64 {
                    continue;
                }
                for mode in MODES {
                    let n = if d > 1000 { 3 } else { 9 };
                    let (p, s) = params_for(&mut g, layout, d, mode);
                    let a = upload_adapter(&dev, layout, d, mode, &p, s.as_deref());
                    let x = g.vec(n * d);
                    let gx = dev.upload(&f32s(&x), &[n, d]).unwrap();
                    let what = format!("{layout:?} d={d} {mode:?}");
                    let z = cpu_rows(layout, d, mode, &p, s.as_deref(), &x, false);
                    assert_close(
                        &format!("forward {what}"),
                        &dev.download(&a.forward(&dev, &gx).unwrap()).unwrap(),
                        &z,
                    );
                    let w = cpu_rows(layout, d, mode, &p, s.as_deref(), &x, true);
                    assert_close(&format!("merge {what}"), &dev.download(&a.merge(&dev, &gx).unwrap()).unwrap(), &w);
                }
            }
        }
    }

    #[test]
    fn adapter_backward_matches_central_differences() {
        let dev = device_or_skip!();
        let mut g = Lcg(6);
        for layout in [Layout::Chain, Layout::Tree] {
            for d in [1usize, 2, 3, 6, 13, 40] {
                for mode in MODES {
                    let n = 7;
                    let (p, s) = params_for(&mut g, layout, d, mode);
                    let a = upload_adapter(&dev, layout, d, mode, &p, s.as_deref());
                    let x = g.vec(n * d);
                    let gz = g.vec(n * d);
                    let (ux, ugz) = (dev.upload(&f32s(&x), &[n, d]).unwrap(), dev.upload(&f32s(&gz), &[n, d]).unwrap());
                    let grads = a.backward(&dev, &ux, &ugz).unwrap();
                    let what = format!("{layout:?} d={d} {mode:?}");
                    // dL/dX: row by row R g_r, exact on the CPU.
                    let gx = cpu_rows(layout, d, mode, &p, s.as_deref(), &gz, true);
                    assert_close(&format!("input gradient {what}"), &dev.download(&grads.input).unwrap(), &gx);
                    let (fd_p, fd_s) = fd_grads(layout, d, mode, &p, s.as_deref(), &x, &gz);
                    assert_close(&format!("parameter gradient {what}"), &dev.download(&grads.params).unwrap(), &fd_p);
                    match (fd_s, &grads.scale) {
                        (Some(fd_s), Some(gs)) => {
                            assert_close(&format!("scale gradient {what}"), &dev.download(gs).unwrap(), &fd_s)
                        }
                        (None, None) => {}
                        _ => panic!("{what}: a scale gradient exactly when the mode scales"),
                    }
                }
            }
        }
    }

    #[test]
    fn adapter_backward_is_bitwise_reproducible() {
        let dev = device_or_skip!();
        let mut g = Lcg(7);
        let (n, d) = (3000, 256);
        for mode in [AdapterMode::GoftScaled(AngleMap::PiTanh), AdapterMode::Qgoft] {
            let (p, s) = params_for(&mut g, Layout::Tree, d, mode);
            let a = upload_adapter(&dev, Layout::Tree, d, mode, &p, s.as_deref());
            let x = dev.upload(&f32s(&g.vec(n * d)), &[n, d]).unwrap();
            let gz = dev.upload(&f32s(&g.vec(n * d)), &[n, d]).unwrap();
            let first = a.backward(&dev, &x, &gz).unwrap();
            let second = a.backward(&dev, &x, &gz).unwrap();
            let bits = |t: &qgoft_nn::cuda::CudaTensor| {
                dev.download(t).unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            };
            assert_eq!(bits(&first.params), bits(&second.params), "{mode:?}");
            assert_eq!(bits(&first.input), bits(&second.input), "{mode:?}");
        }
    }

    #[test]
    fn penalty_and_its_gradient_match_cpu() {
        let dev = device_or_skip!();
        let mut g = Lcg(8);
        for d in [2usize, 13, 300] {
            let (p, _) = params_for(&mut g, Layout::Tree, d, AdapterMode::Qgoft);
            let a = upload_adapter(&dev, Layout::Tree, d, AdapterMode::Qgoft, &p, None);
            let lambda = 0.7;
            let (cpu, cpu_grad) = cpu_penalty(&p, lambda);
            let blocks = cpu_rotation(Layout::Tree, d, AdapterMode::Qgoft, &p, None);
            let math = qgoft_math::metrics::penalty(blocks.as_rotation().blocks());
            assert!((math - cpu).abs() <= 1e-12 * cpu, "the reference agrees with qgoft-math");
            let gpu = a.penalty(&dev).unwrap() as f64;
            assert!((gpu - cpu).abs() <= TOL * cpu.max(f64::MIN_POSITIVE), "penalty d={d}: {gpu} vs {cpu}");
            let init = g.vec(p.len());
            let mut grad = dev.upload(&f32s(&init), &[p.len() / 4, 2, 2]).unwrap();
            a.add_penalty_grad(&dev, lambda as f32, &mut grad).unwrap();
            let expected: Vec<f64> = cpu_grad.iter().zip(&init).map(|(g, g0)| g + g0).collect();
            assert_close(&format!("penalty gradient d={d}"), &dev.download(&grad).unwrap(), &expected);
        }
    }

    #[test]
    fn bad_adapter_input_is_an_error() {
        let dev = device_or_skip!();
        let mode = AdapterMode::Goft(AngleMap::PiTanh);
        assert!(matches!(
            CudaAdapter::new(&dev, Layout::Tree, 4, mode, &[0.0, f32::NAN, 0.0], None),
            Err(CudaError::Math(_))
        ));
        assert!(matches!(CudaAdapter::new(&dev, Layout::Tree, 4, mode, &[0.0; 2], None), Err(CudaError::Math(_))));
        assert!(matches!(
            CudaAdapter::new(&dev, Layout::Tree, 4, mode, &[0.0; 3], Some(&[1.0; 4])),
            Err(CudaError::InvalidArgument { .. })
        ));
        let a = CudaAdapter::identity(&dev, Layout::Tree, 4, mode).unwrap();
        let x = dev.zeros(&[2, 5]).unwrap();
        assert!(matches!(a.forward(&dev, &x), Err(CudaError::ShapeMismatch { .. })));
    }

    /// One adapted layer `Y = (X R) W^T + b` with softmax cross-entropy,
    /// trained by SGD entirely on the device: the loss and the parameter
    /// gradient of the first step match the CPU, and the loss goes down.
    #[test]
    fn a_training_step_stays_on_the_device() {
        let dev = device_or_skip!();
        let mut g = Lcg(9);
        let (n, d, m) = (64, 16, 5);
        let mode = AdapterMode::Goft(AngleMap::PiTanh);
        let x = g.vec(n * d);
        let w = g.vec(m * d);
        let labels: Vec<u32> = (0..n).map(|i| (i % m) as u32).collect();
        let gx = dev.upload(&f32s(&x), &[n, d]).unwrap();
        let gw = dev.upload(&f32s(&w), &[m, d]).unwrap();
        let gb = dev.zeros(&[m]).unwrap();
        let mut a = CudaAdapter::identity(&dev, Layout::Tree, d, mode).unwrap();
        let cpu = |p: &[f64]| -> f64 {
            let z = cpu_rows(Layout::Tree, d, mode, p, None, &x, false);
            let y = cpu_matmul(&z, (n, d), false, &w, (m, d), true);
            (0..n)
                .map(|i| {
                    let row = &y[i * m..(i + 1) * m];
                    let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    mx + row.iter().map(|v| (v - mx).exp()).sum::<f64>().ln() - row[labels[i] as usize]
                })
                .sum::<f64>()
                / n as f64
        };
        let mut losses = vec![];
        for step in 0..20 {
            let z = a.forward(&dev, &gx).unwrap();
            let y = dev.add_bias(&dev.matmul(&z, false, &gw, true).unwrap(), &gb).unwrap();
            let (loss, gy) = dev.softmax_cross_entropy(&y, &labels).unwrap();
            let gz = dev.matmul(&gy, false, &gw, false).unwrap();
            let grads = a.backward(&dev, &gx, &gz).unwrap();
            if step == 0 {
                let p0 = vec![0.0; d - 1];
                let cpu_loss = cpu(&p0);
                assert!(((loss as f64) - cpu_loss).abs() <= TOL * cpu_loss, "loss {loss} vs {cpu_loss}");
                let h = 1e-6;
                let fd: Vec<f64> = (0..d - 1)
                    .map(|i| {
                        let (mut hi, mut lo) = (p0.clone(), p0.clone());
                        hi[i] += h;
                        lo[i] -= h;
                        (cpu(&hi) - cpu(&lo)) / (2.0 * h)
                    })
                    .collect();
                let gp = dev.download(&grads.params).unwrap();
                // The loss gradient passes through a GEMM and the softmax: 1e-4.
                let e = rel(&gp, &fd);
                assert!(e <= 1e-4, "first-step gradient: relative error {e:.3e}");
            }
            dev.axpy(-0.5, &grads.params, a.params_mut()).unwrap();
            losses.push(loss);
        }
        assert!(losses[19] < 0.95 * losses[0], "loss did not decrease: {losses:?}");
    }
}
