//! Training resumed from a checkpoint reaches bit-identical weights to an
//! uninterrupted run; broken or mismatched checkpoints are refused.

use qgoft_nn::layers::{Activation, Mlp, Module};
use qgoft_nn::optim::{AdamW, Decay, LrSchedule, Optimizer, ParamsAdamW, ParamsSgd, Sgd};
use qgoft_nn::train::{Checkpointing, TrainConfig, train_classifier_checkpointed, train_classifier_with};
use qgoft_nn::{Error, Rng, data};

fn setup(seed: u64) -> (data::Dataset, Mlp) {
    let all = data::digits().unwrap();
    let small = all.subset(&(0..600).collect::<Vec<_>>()).unwrap();
    let mlp = Mlp::new("mlp", &[64, 32, 10], Activation::Gelu, 0.1, &mut Rng::new(seed)).unwrap();
    (small, mlp)
}

fn config(epochs: usize, steps_per_epoch: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 50,
        seed: 7,
        clip_norm: Some(2.0),
        schedule: Some(LrSchedule {
            peak: 1e-2,
            min: 1e-3,
            warmup_steps: 5,
            total_steps: 4 * steps_per_epoch,
            decay: Decay::Cosine,
        }),
        quiet: true,
    }
}

fn weights(m: &Mlp) -> Vec<u32> {
    m.params().iter().flat_map(|p| p.value().data().iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect()
}

fn tmp(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("qgoft-resume-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("train.safetensors")
}

fn resumes_bit_identically(make_opt: &dyn Fn(&Mlp) -> Box<dyn Optimizer>, tag: &str) {
    let (train, mlp) = setup(1);
    let spe = train.len().div_ceil(50);
    // Uninterrupted: four epochs.
    let mut opt = make_opt(&mlp);
    train_classifier_with(&mlp, opt.as_mut(), &train, None, &config(4, spe), |_| Ok(None)).unwrap();
    let straight = weights(&mlp);

    // Interrupted: a failure in epoch 3 after the epoch-2 checkpoint was written.
    let path = tmp(tag);
    let ckpt = Checkpointing { path: path.clone(), every_epochs: 1, resume: true };
    let _ = std::fs::remove_file(&path);
    let (_, mlp2) = setup(1);
    let mut opt2 = make_opt(&mlp2);
    let mut calls = 0usize;
    let crash = train_classifier_checkpointed(&mlp2, opt2.as_mut(), &train, None, &config(4, spe), &ckpt, |_| {
        calls += 1;
        if calls == 2 * spe + 3 {
            Err(Error::Data { source_name: "test".into(), reason: "crash".into() })
        } else {
            Ok(None)
        }
    });
    assert!(crash.is_err(), "the injected failure must stop the run");
    assert_ne!(weights(&mlp2), straight);

    // Resumed in a fresh process state: new model (other init) and optimizer.
    let (_, mlp3) = setup(99);
    let mut opt3 = make_opt(&mlp3);
    let stats = train_classifier_checkpointed(&mlp3, opt3.as_mut(), &train, None, &config(4, spe), &ckpt, |_| Ok(None))
        .unwrap();
    assert_eq!(stats.iter().map(|s| s.epoch).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(weights(&mlp3), straight, "resumed weights differ from the uninterrupted run");
    std::fs::remove_dir_all(path.parent().expect("the checkpoint's directory")).unwrap();
}

#[test]
fn adamw_resume_is_bit_identical() {
    resumes_bit_identically(
        &|m: &Mlp| Box::new(AdamW::new(m.params(), ParamsAdamW { lr: 1e-2, ..Default::default() }).unwrap()),
        "adamw",
    );
}

#[test]
fn sgd_momentum_resume_is_bit_identical() {
    resumes_bit_identically(
        &|m: &Mlp| Box::new(Sgd::new(m.params(), ParamsSgd { lr: 0.05, momentum: 0.9, ..Default::default() }).unwrap()),
        "sgd",
    );
}

#[test]
fn mismatched_checkpoints_are_refused() {
    let (train, mlp) = setup(1);
    let spe = train.len().div_ceil(50);
    let path = tmp("mismatch");
    let ckpt = Checkpointing { path: path.clone(), every_epochs: 1, resume: true };
    let _ = std::fs::remove_file(&path);
    let mut opt = AdamW::new(mlp.params(), ParamsAdamW::default()).unwrap();
    train_classifier_checkpointed(&mlp, &mut opt, &train, None, &config(1, spe), &ckpt, |_| Ok(None)).unwrap();

    // Another seed.
    let mut other_seed = config(2, spe);
    other_seed.seed = 8;
    let err =
        train_classifier_checkpointed(&mlp, &mut opt, &train, None, &other_seed, &ckpt, |_| Ok(None)).unwrap_err();
    assert!(err.to_string().contains("seed 7"), "{err}");

    // Another model shape.
    let wider = Mlp::new("mlp", &[64, 33, 10], Activation::Gelu, 0.1, &mut Rng::new(1)).unwrap();
    let mut opt_w = AdamW::new(wider.params(), ParamsAdamW::default()).unwrap();
    let err = train_classifier_checkpointed(&wider, &mut opt_w, &train, None, &config(2, spe), &ckpt, |_| Ok(None))
        .unwrap_err();
    assert!(err.to_string().contains("shape"), "{err}");

    // A truncated file.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err =
        train_classifier_checkpointed(&mlp, &mut opt, &train, None, &config(2, spe), &ckpt, |_| Ok(None)).unwrap_err();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");

    // A zero interval.
    let bad = Checkpointing { every_epochs: 0, ..ckpt };
    assert!(train_classifier_checkpointed(&mlp, &mut opt, &train, None, &config(1, spe), &bad, |_| Ok(None)).is_err());
    std::fs::remove_dir_all(path.parent().expect("the checkpoint's directory")).unwrap();
}
