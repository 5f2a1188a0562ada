//! Each convolution shape of a ResNet-18 training step (224×224, batch 8)
//! timed alone on the CPU fast path: forward, input gradient and weight
//! gradient, milliseconds per call (median of the runs after a warm-up).
//! `benches/python/conv_layers.py` prints the same for PyTorch
//! (`aten.convolution_backward`); run the two in turn to see which shapes
//! and which pass a training step loses on.
//!
//! `cargo run --release -p polymodal-benches --example conv_layers [RUNS]`

use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use polymodal_benches::resnet_step::RESNET18_CONVS;
use polymodal_core::cpu::{CpuTrainOps, flex_tensor, on_pool};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    polymodal_core::cpu::tune_allocator();
    let runs = polymodal_benches::runs_arg(7)?;
    println!("conv                      forward  x grad  w grad  (ms)");
    let mut total = [0.0; 3];
    for conv in RESNET18_CONVS {
        let g = conv.geometry(8);
        let [oh, ow] = g.output().ok_or("a convolution that does not fit")?;
        // Built once: a Flex tensor's clone shares its values.
        let x = tensor(&[g.batch, g.in_channels, g.input[0], g.input[1]]);
        let w = tensor(&[g.out_channels, g.in_channels, g.kernel[0], g.kernel[1]]);
        let dy = tensor(&[g.batch, g.out_channels, oh, ow]);
        let bias = flex_tensor(vec![0.0; g.out_channels], &[g.out_channels]);
        let time = |f: &(dyn Fn() + Sync)| median_ms(runs, || on_pool(f));
        let forward = time(&|| {
            Flex::cpu_conv2d(x.clone(), w.clone(), bias.clone(), g);
        });
        let x_grad = time(&|| {
            Flex::cpu_conv2d_x_grad(w.clone(), dy.clone(), g);
        });
        let w_grad = time(&|| {
            Flex::cpu_conv2d_weight_grad(x.clone(), dy.clone(), g);
        });
        let times = [forward, x_grad, w_grad];
        for (t, s) in total.iter_mut().zip(times) {
            *t += s * conv.count as f64;
        }
        println!(
            "{:<24} {:>8.2} {:>7.2} {:>7.2}  ×{}",
            conv.name, forward, x_grad, w_grad, conv.count
        );
    }
    println!(
        "{:<24} {:>8.1} {:>7.1} {:>7.1}  (sum over the network)",
        "total", total[0], total[1], total[2]
    );
    Ok(())
}

/// A tensor of `shape` holding values in [-1, 1) from a fixed sequence.
fn tensor(shape: &[usize]) -> FlexTensor {
    let n = shape.iter().product::<usize>() as u64;
    let values = (0..n)
        .map(|i| (i.wrapping_mul(2654435761) % 2000) as f32 / 1000.0 - 1.0)
        .collect();
    flex_tensor(values, shape)
}

/// Median milliseconds of `f` over `runs − 1` runs after one warm-up.
fn median_ms(runs: usize, f: impl Fn()) -> f64 {
    let times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .skip(1)
        .collect();
    polymodal_benches::median(&times).as_secs_f64() * 1e3
}
