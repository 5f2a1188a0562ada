//! Where a ResNet-18 training step's time goes, by phase: forward (with
//! the loss), backward, Adam, on the CPU backend (224×224, batch 8, 1,000
//! classes, as `bench encoders`' training-step row), each step on the CPU
//! pool as `Trainer::train` runs it. `benches/python/train_step_phases.py`
//! prints the same for PyTorch; run the two in turn.
//!
//! `cargo run --release -p polymodal-benches --example train_step_phases [STEPS]`

use std::time::Instant;

use burn::optim::GradientsParams;
use burn::prelude::*;
use polymodal::train::FusedAdamConfig;
use polymodal_benches::resnet_step::ResNetClassifier;
use polymodal_core::cpu::on_pool;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    polymodal_core::cpu::tune_allocator();
    let steps = polymodal_benches::runs_arg(9)?;
    let device = Device::flex().autodiff();
    let mut model = Some(ResNetClassifier::new(&device)?);
    let images = Tensor::<4>::random(
        [8, 3, 224, 224],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let labels = Tensor::<1, Int>::arange_step(0..800, 100, &device);
    let mut optimizer = FusedAdamConfig::new().init();
    // Seconds of forward, backward and Adam, summed over the timed steps.
    let mut total = [0f64; 3];
    for step in 0..steps {
        let m = model.take().ok_or("no model")?;
        let (m, times) = on_pool(|| -> Result<_, String> {
            let start = Instant::now();
            let loss = m.loss(&images, &labels)?;
            // Reading the loss waits for the forward pass.
            loss.clone().inner().into_data();
            let forward = start.elapsed().as_secs_f64();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            let backward = start.elapsed().as_secs_f64() - forward;
            let m = optimizer.step(1e-3, m, grads);
            m.head.bias.as_ref().map(|b| b.val().into_data());
            let adam = start.elapsed().as_secs_f64() - forward - backward;
            Ok((m, [forward, backward, adam]))
        })?;
        // The first step pays one-off costs.
        if step > 0 {
            total.iter_mut().zip(times).for_each(|(t, s)| *t += s);
        }
        model = Some(m);
    }
    let [forward, backward, adam] = total.map(|t| t / (steps - 1) as f64);
    println!(
        "polymodal: forward {forward:.3} s, backward {backward:.3} s, Adam {adam:.3} s, \
         step {:.3} s (mean of {} steps after a warm-up)",
        forward + backward + adam,
        steps - 1
    );
    Ok(())
}
