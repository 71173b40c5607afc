//! The CUDA kernels of `src/cuda/kernels/` run on the CPU under a small
//! emulation of the CUDA execution model (`tests/host_emulation/`): the
//! threads of a block are real threads and `__syncthreads()` a barrier. The
//! results are compared with `qgoft-math` in f64 (relative `<= 1e-5`), so the
//! kernels' logic (stage order, block transposes, the recomputation of stage
//! inputs in the backward, the fixed-order reductions, the global-memory
//! path for large `d`) is tested on machines without a GPU.
//!
//! Needs a C++17 compiler (`$CXX`, `c++`, `g++` or `clang++`); without one
//! the tests print why they are skipped and pass. A kernel that does not
//! compile under the emulation fails the test.

mod cuda_common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use cuda_common::{Lcg, MODES, TOL, assert_close, cpu_penalty, cpu_rows, f32s, fd_grads, params_for};
use qgoft_math::{AngleMap, Layout};
use qgoft_nn::cuda::AdapterMode;

const HERE: &str = env!("CARGO_MANIFEST_DIR");

fn compilers() -> Vec<String> {
    let mut v: Vec<String> = std::env::var("CXX").into_iter().collect();
    v.extend(["c++", "g++", "clang++"].map(String::from));
    v
}

fn compile(cxx: &str, src: &Path, out: &Path, include: &[&Path]) -> Result<(), String> {
    let mut cmd = Command::new(cxx);
    cmd.args(["-std=c++17", "-O1", "-pthread", "-o"]).arg(out).arg(src);
    for dir in include {
        cmd.arg("-I").arg(dir);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr).into_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// The kernel source with the one construct the emulation cannot express
/// (`extern __shared__`) replaced by the shim's block-shared buffer.
fn emulated_source(name: &str) -> String {
    let src = std::fs::read_to_string(Path::new(HERE).join("src/cuda/kernels").join(name)).unwrap();
    src.replace("extern __shared__ float smem[];", "float* smem = g_smem;")
}

/// Builds the driver once: `None` (with the reason printed) when no C++17
/// compiler works on this machine.
fn driver() -> Option<&'static Path> {
    static DRIVER: OnceLock<Option<PathBuf>> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("host_emulation");
            std::fs::create_dir_all(&dir).unwrap();
            let probe = dir.join("probe.cpp");
            std::fs::write(
                &probe,
                "#include <thread>\n#include <condition_variable>\nint main() { std::thread t([] {}); t.join(); }\n",
            )
            .unwrap();
            let Some(cxx) = compilers().into_iter().find(|c| compile(c, &probe, &dir.join("probe"), &[]).is_ok())
            else {
                eprintln!("skipped: no C++17 compiler with threads (tried $CXX, c++, g++, clang++)");
                return None;
            };
            for name in ["adapter", "elementwise"] {
                std::fs::write(dir.join(format!("{name}.inc")), emulated_source(&format!("{name}.cu"))).unwrap();
            }
            let shim = Path::new(HERE).join("tests/host_emulation");
            let exe = dir.join("driver");
            if let Err(log) = compile(&cxx, &shim.join("driver.cpp"), &exe, &[&shim, &dir]) {
                panic!("the kernels do not compile under the host emulation ({cxx}):\n{log}");
            }
            Some(exe)
        })
        .as_deref()
}

fn run(exe: &Path, what: &str, input: &str) -> String {
    let mut child = Command::new(exe).arg(what).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "driver {what} failed");
    String::from_utf8(out.stdout).unwrap()
}

fn line(text: &str, name: &str) -> Vec<f32> {
    let l = text.lines().find(|l| l.split(' ').next() == Some(name)).unwrap_or_else(|| panic!("no line {name}"));
    l.split(' ').skip(1).map(|v| v.parse().unwrap()).collect()
}

#[test]
fn elementwise_kernels_match_double_precision_loops() {
    let Some(exe) = driver() else { return };
    let out = run(exe, "elementwise", "");
    let worst: f64 = out.trim().strip_prefix("worst ").unwrap().parse().unwrap();
    assert!(worst <= TOL, "elementwise kernels: relative error {worst:.3e}");
}

#[test]
fn adapter_kernels_match_qgoft_math() {
    let Some(exe) = driver() else { return };
    let mut g = Lcg(11);
    let mut cases = 0;
    // (layout, d, threads per block): 7000 > 6144 takes the global-memory
    // path; a few threads per block are enough to exercise the striding.
    let mut plan = vec![];
    for layout in [Layout::Chain, Layout::Tree, Layout::Full] {
        for d in [1usize, 2, 3, 6, 13, 40] {
            // The full layout's 2d - 3 stages make the emulated barriers slow.
            if layout != Layout::Full || d <= 13 {
                plan.push((layout, d, 2));
            }
        }
    }
    plan.push((Layout::Tree, 300, 32));
    plan.push((Layout::Tree, 7000, 8));
    for (layout, d, threads) in plan {
        for mode in MODES {
            if d > 1000 && mode != MODES[4] {
                continue;
            }
            let n = if d > 1000 { 1 } else { 3 };
            let (p, s) = params_for(&mut g, layout, d, mode);
            let x = g.vec(n * d);
            let gz = g.vec(n * d);
            let stages: Vec<_> = layout.stages(d).collect();
            let pitanh =
                matches!(mode, AdapterMode::Goft(AngleMap::PiTanh) | AdapterMode::GoftScaled(AngleMap::PiTanh));
            let use_shared = 2 * d * 4 <= 48 * 1024;
            let mut input = format!(
                "{n} {d} {} {} {} {} {} {threads} {}\n",
                stages.len(),
                layout.num_rotations(d),
                mode.is_quasi() as u8,
                mode.has_scale() as u8,
                pitanh as u8,
                use_shared as u8
            );
            for st in &stages {
                input += &format!("{} {} {} {} {}\n", st.first, st.stride, st.gap, st.len, st.offset);
            }
            let join = |v: &[f64]| f32s(v).iter().map(|x| format!("{x:e}")).collect::<Vec<_>>().join(" ") + "\n";
            input += &join(&p);
            if let Some(s) = &s {
                input += &join(s);
            }
            input += &join(&x);
            input += &join(&gz);
            let out = run(exe, "adapter", &input);
            let what = format!("{layout:?} d={d} {mode:?}");
            let s = s.as_deref();
            assert_close(&format!("forward {what}"), &line(&out, "z"), &cpu_rows(layout, d, mode, &p, s, &x, false));
            assert_close(&format!("merge {what}"), &line(&out, "y"), &cpu_rows(layout, d, mode, &p, s, &x, true));
            assert_close(
                &format!("input gradient {what}"),
                &line(&out, "gx"),
                &cpu_rows(layout, d, mode, &p, s, &gz, true),
            );
            if d <= 300 {
                let (fd_p, fd_s) = fd_grads(layout, d, mode, &p, s, &x, &gz);
                assert_close(&format!("parameter gradient {what}"), &line(&out, "gp"), &fd_p);
                if let Some(fd_s) = fd_s {
                    assert_close(&format!("scale gradient {what}"), &line(&out, "gs"), &fd_s);
                }
            }
            if mode.is_quasi() {
                let (pen, grad) = cpu_penalty(&p, 0.5);
                let got = line(&out, "pen")[0] as f64;
                assert!((got - pen).abs() <= TOL * pen.max(f64::MIN_POSITIVE), "penalty {what}: {got} vs {pen}");
                assert_close(&format!("penalty gradient {what}"), &line(&out, "pg"), &grad);
            }
            cases += 1;
        }
    }
    println!("{cases} adapter cases checked under the host emulation");
}
