use qgoft_nn::layers::{GivensConfig, GivensLinear, Linear, Module};
use qgoft_nn::{Graph, Rng, Tensor};
use std::time::Instant;
fn step(layer: &dyn Module, x: &Tensor, gy: &Tensor) {
    let mut g = Graph::new();
    let xv = g.leaf(x.clone());
    let y = layer.forward(&mut g, xv).expect("forward");
    std::hint::black_box(g.backward_from(y, gy.clone()).expect("backward"));
}
fn main() {
    let (n, d, m) = (1024usize, 768usize, 768usize);
    let mut rng = Rng::new(0);
    let base = Linear::new("fc", d, m, true, &mut rng);
    base.freeze();
    let adapted = GivensLinear::with_default(base.clone(), GivensConfig::default()).expect("adapter");
    let x = Tensor::from_fn(&[n, d], |_| rng.uniform(-1.0, 1.0));
    let gy = Tensor::from_fn(&[n, m], |_| rng.uniform(-1.0, 1.0));
    let which = std::env::args().nth(1).unwrap_or_default();
    let layer: &dyn Module = if which == "plain" { &base } else { &adapted };
    let mut best = f64::MAX;
    for _ in 0..200 { let t = Instant::now(); step(layer, &x, &gy); best = best.min(t.elapsed().as_secs_f64()); }
    println!("{which} best {:.3} ms", best * 1e3);
}
