//! Training through the Givens adapters: a short run on the digits lowers
//! the loss and is bit-reproducible; the demo is deterministic for a seed.

use qgoft_nn::layers::{Activation, Adapter, GivensConfig, GivensLinear, GivensMode, Mlp, Module, Stack};
use qgoft_nn::optim::{AdamW, ParamsAdamW};
use qgoft_nn::train::{train_classifier, train_classifier_with, EpochStats, TrainConfig};
use qgoft_nn::{data, demo, Rng};

fn run(mode: GivensMode, seed: u64) -> (Vec<EpochStats>, Vec<u32>) {
    let source = data::digits().unwrap().subset(&(0..600).collect::<Vec<_>>()).unwrap();
    let d = demo::shifted(&source).unwrap();
    // A briefly pretrained base, then the adapters on the shifted images.
    let mlp = Mlp::new("mlp", &[64, 32, 10], Activation::Relu, 0.0, &mut Rng::new(seed)).unwrap();
    let mut opt = AdamW::new(mlp.params(), ParamsAdamW { lr: 1e-2, ..Default::default() }).unwrap();
    let cfg = TrainConfig { epochs: 5, batch_size: 50, seed, quiet: true, ..Default::default() };
    train_classifier(&mlp, &mut opt, &source, None, &cfg).unwrap();
    let layers =
        mlp.layers().iter().map(|l| GivensLinear::with_default(l.clone(), GivensConfig::tree(mode)).unwrap()).collect();
    let model = Stack::new(layers, Activation::Relu);
    let params: Vec<_> = model.layers.iter().flat_map(|l| l.adapter_params()).collect();
    let mut opt = AdamW::new(params.clone(), ParamsAdamW { lr: 3e-2, ..Default::default() }).unwrap();
    let cfg = TrainConfig { epochs: 4, batch_size: 50, seed, quiet: true, ..Default::default() };
    let stats = train_classifier_with(&model, &mut opt, &d, None, &cfg, |g| model.penalty(g)).unwrap();
    let bits = params.iter().flat_map(|p| p.value().data().iter().map(|v| v.to_bits()).collect::<Vec<_>>()).collect();
    (stats, bits)
}

#[test]
fn short_adapter_training_lowers_the_loss_and_is_bit_reproducible() {
    for mode in [GivensMode::Goft, GivensMode::GoftScaled, GivensMode::Qgoft { lambda: 1e-2 }] {
        let (a, pa) = run(mode, 3);
        let (b, pb) = run(mode, 3);
        assert_eq!(a, b, "{mode:?}");
        assert_eq!(pa, pb, "{mode:?}");
        let (first, last) = (a[0].train_loss, a[a.len() - 1].train_loss);
        assert!(last < 0.7 * first, "{mode:?}: loss {first} -> {last}");
        println!("{}: train loss {first:.4} -> {last:.4}", mode.name());
        let (c, _) = run(mode, 4);
        assert_ne!(a, c, "{mode:?}: another seed gives another run");
    }
}

#[test]
fn demo_is_deterministic_and_every_method_adapts() {
    let cfg = demo::DemoConfig { quiet: true, pretrain_epochs: 10, adapt_epochs: 8, ..Default::default() };
    let a = demo::run(&cfg).unwrap();
    let b = demo::run(&cfg).unwrap();
    assert_eq!(a.table(false), b.table(false));
    assert_eq!(a.rows.len(), 6);
    for r in &a.rows {
        assert!(
            r.target_accuracy > a.base_target_accuracy,
            "{}: {} vs {}",
            r.method,
            r.target_accuracy,
            a.base_target_accuracy
        );
    }
    println!("{}", a.table(true));
}
