//! Replays every committed corpus file through its target's invariants, so
//! that a stable toolchain (and CI) re-checks what the fuzzers found.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("corpus entry").path();
        if path.is_file() {
            let data = std::fs::read(&path).expect("corpus file");
            f(&data);
            count += 1;
        }
    }
    assert!(count > 0, "no corpus files for {target}");
    println!("{target}: {count} inputs replayed");
}

#[test]
fn givens_corpus() {
    replay("givens", qgoft_fuzz::givens);
}

#[test]
fn apply_corpus() {
    replay("apply", qgoft_fuzz::apply);
}

#[test]
fn safetensors_corpus() {
    replay("safetensors", qgoft_fuzz::safetensors);
}

#[test]
fn csv_corpus() {
    replay("csv", qgoft_fuzz::csv);
}

#[test]
fn idx_corpus() {
    replay("idx", qgoft_fuzz::idx);
}

#[test]
fn decompose_corpus() {
    replay("decompose", qgoft_fuzz::decompose);
}

#[test]
fn adapter_corpus() {
    replay("adapter", qgoft_fuzz::adapter);
}
