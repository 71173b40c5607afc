//! End-to-end runs of the `qgoft` binary: train, inspect, fine-tune, merge,
//! verify, and the error paths.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn qgoft(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_qgoft")).args(args).arg("--quiet").current_dir(dir).output().expect("run qgoft")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn workdir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("qgoft-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn train_finetune_merge_verify_round_trip() {
    let dir = workdir();
    let o = qgoft(&["train", "--epochs", "4", "--hidden", "32", "-o", "m.safetensors"], &dir);
    assert!(o.status.success(), "{}", text(&o));
    let o = qgoft(&["inspect", "m.safetensors"], &dir);
    assert!(text(&o).contains("mlp.0.weight") && text(&o).contains("[32, 64]"), "{}", text(&o));
    for method in ["lora", "oft"] {
        let adapter = format!("{method}.safetensors");
        let merged = format!("{method}-merged.safetensors");
        let o =
            qgoft(&["finetune", "--base", "m.safetensors", "--method", method, "--epochs", "2", "-o", &adapter], &dir);
        assert!(o.status.success(), "{method}: {}", text(&o));
        let o = qgoft(&["merge", "--base", "m.safetensors", "--adapter", &adapter, "-o", &merged], &dir);
        assert!(o.status.success(), "{method}: {}", text(&o));
        let o = qgoft(&["verify", &merged], &dir);
        assert!(o.status.success() && text(&o).contains("accuracy"), "{method}: {}", text(&o));
    }
    for method in ["goft", "goft-scaled", "qgoft"] {
        let adapter = format!("{method}-adapter");
        let merged = format!("{method}-merged.safetensors");
        let o = qgoft(
            &[
                "finetune",
                "--base",
                "m.safetensors",
                "--method",
                method,
                "--epochs",
                "2",
                "--lr",
                "2e-2",
                "-o",
                &adapter,
            ],
            &dir,
        );
        assert!(o.status.success(), "{method}: {}", text(&o));
        assert!(dir.join(&adapter).join("adapter_config.json").is_file());
        let o = qgoft(&["inspect", &adapter], &dir);
        assert!(o.status.success() && text(&o).contains("orth. error") && text(&o).contains("mlp.1"), "{}", text(&o));
        let o = qgoft(&["merge", "--base", "m.safetensors", "--adapter", &adapter, "-o", &merged], &dir);
        assert!(o.status.success(), "{method}: {}", text(&o));
        let o = qgoft(&["verify", &merged], &dir);
        assert!(o.status.success() && text(&o).contains("accuracy"), "{method}: {}", text(&o));
    }
    // --device: a bad name and an unavailable device are typed errors, not panics.
    for (dev, needle) in [("tpu", "unknown device"), ("cuda:0", "cuda:0")] {
        let o = qgoft(&["finetune", "--base", "m.safetensors", "--device", dev], &dir);
        assert!(!o.status.success() && text(&o).contains(needle) && !text(&o).contains("panicked"), "{}", text(&o));
    }
    // verify a matrix: a rotation in CSV and in .npy (f8), and a reflection.
    let (c, s) = (0.6f64, 0.8f64);
    std::fs::write(dir.join("q.csv"), format!("{c},{},0\n{s},{c},0\n0,0,1\n", -s)).unwrap();
    let o = qgoft(&["verify", "q.csv"], &dir);
    assert!(o.status.success() && text(&o).contains("special orthogonal"), "{}", text(&o));
    assert!(text(&o).contains("decomposition round trip"), "{}", text(&o));
    let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }";
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let pad = 64 - (10 + header.len() + 1) % 64;
    let h = format!("{header}{}\n", " ".repeat(pad));
    npy.extend((h.len() as u16).to_le_bytes());
    npy.extend(h.as_bytes());
    for v in [1.0f64, 0.0, 0.0, -1.0] {
        npy.extend(v.to_le_bytes());
    }
    std::fs::write(dir.join("r.npy"), &npy).unwrap();
    let o = qgoft(&["verify", "r.npy"], &dir);
    assert!(o.status.success() && text(&o).contains("reflection"), "{}", text(&o));
    assert!(text(&o).contains("one reflection factored out"), "{}", text(&o));
    std::fs::write(dir.join("r.npy"), &npy[..npy.len() - 4]).unwrap();
    let o = qgoft(&["verify", "r.npy"], &dir);
    assert!(!o.status.success() && text(&o).contains("r.npy"), "{}", text(&o));
    // a truncated checkpoint is rejected with the file named
    let bytes = std::fs::read(dir.join("m.safetensors")).unwrap();
    std::fs::write(dir.join("cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let o = qgoft(&["verify", "cut.safetensors"], &dir);
    assert!(!o.status.success() && text(&o).contains("cut.safetensors"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
