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
    let o = qgoft(&["finetune", "--base", "m.safetensors", "--method", "qgoft"], &dir);
    assert!(!o.status.success() && text(&o).contains("not included"), "{}", text(&o));
    // a truncated checkpoint is rejected with the file named
    let bytes = std::fs::read(dir.join("m.safetensors")).unwrap();
    std::fs::write(dir.join("cut.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let o = qgoft(&["verify", "cut.safetensors"], &dir);
    assert!(!o.status.success() && text(&o).contains("cut.safetensors"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).unwrap();
}
