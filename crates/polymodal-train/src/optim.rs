//! The optimiser the trainer uses: Adam, updated in one pass per parameter
//! on the CPU ([`polymodal_core::cpu::adam_step`]).

use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer};
use burn::prelude::*;
use polymodal_core::cpu::{AdamStep, adam_step};

/// Settings of [`FusedAdam`], with the defaults of Burn's `AdamConfig`.
#[derive(Config, Debug)]
pub struct FusedAdamConfig {
    /// Decay of the first moment.
    #[config(default = 0.9)]
    pub beta_1: f32,
    /// Decay of the second moment.
    #[config(default = 0.999)]
    pub beta_2: f32,
    /// Added to the root of the second moment, for numerical stability.
    #[config(default = 1e-5)]
    pub epsilon: f32,
    /// L2 penalty added to each gradient as `penalty · parameter`.
    pub weight_decay: Option<f32>,
    /// Gradient clipping, applied before the update.
    pub grad_clipping: Option<GradientClippingConfig>,
}

/// Adam as Burn's `Adam` computes it (same formula, same state: its
/// optimiser records load either way), with the update of each parameter in
/// one pass over memory where Burn makes a dozen tensor passes. AMSGrad is
/// not offered.
#[derive(Debug, Clone, Copy)]
pub struct FusedAdam {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    weight_decay: Option<f32>,
}

impl FusedAdamConfig {
    /// The bare optimiser (one parameter group's, for
    /// `ModuleOptimizer::with_group`); [`init`](Self::init) is the
    /// whole-module one and the only one that applies the clipping.
    pub fn build(&self) -> FusedAdam {
        FusedAdam {
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
        }
    }

    /// The optimiser for a whole module, with the configured clipping.
    pub fn init(&self) -> ModuleOptimizer {
        let optimizer = ModuleOptimizer::from(self.build());
        match &self.grad_clipping {
            Some(clipping) => optimizer.with_grad_clipping(clipping.init()),
            None => optimizer,
        }
    }
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, moments) = match state {
            Some(AdamState { momentum }) => (
                momentum.time + 1,
                Some([momentum.moment_1, momentum.moment_2]),
            ),
            None => (1, None),
        };
        let step = AdamStep {
            learning_rate: lr,
            beta_1: self.beta_1,
            beta_2: self.beta_2,
            epsilon: self.epsilon,
            weight_decay: self.weight_decay,
            time,
        };
        let [tensor, moment_1, moment_2] = adam_step(tensor, grad, moments, &step);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        AdamState::new(state.momentum.to_device(device))
    }
}

#[cfg(test)]
mod tests {
    use burn::optim::AdamConfig;
    use burn::optim::decay::WeightDecayConfig;
    use burn::tensor::{DType, Distribution};

    use super::*;

    /// `steps` updates of one parameter by Burn's `Adam` and by
    /// [`FusedAdam`] with the same settings and gradients: the parameters
    /// and moments after each step, side by side.
    fn compare(shape: [usize; 2], dtype: DType, weight_decay: Option<f32>, what: &str) {
        // Holds the generator so a seeded run on another test thread is
        // not changed by this test's draws.
        let _rng = crate::RngGuard::hold();
        let device = Device::flex();
        let mut config = AdamConfig::new().with_epsilon(1e-6);
        if let Some(penalty) = weight_decay {
            config = config.with_weight_decay(Some(WeightDecayConfig::new(penalty)));
        }
        let burn = config.build();
        let ours = FusedAdamConfig::new()
            .with_epsilon(1e-6)
            .with_weight_decay(weight_decay)
            .build();
        let random =
            || Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device).cast(dtype);
        let (mut theirs_param, mut ours_param) = (random(), None::<Tensor<2>>);
        let (mut theirs_state, mut ours_state) = (None, None);
        for step in 1..=4 {
            // A gradient with a spread of magnitudes, zeros included.
            let grad = random().mul_scalar(10f32.powi(step - 2)).clamp_min(-0.5);
            let param = ours_param.take().unwrap_or_else(|| theirs_param.clone());
            let lr = 1e-2 / step as f64;
            let (p, s) = Optimizer::step(&ours, lr, param, grad.clone(), ours_state.take());
            (ours_param, ours_state) = (Some(p), s);
            let (p, s) = Optimizer::step(&burn, lr, theirs_param, grad, theirs_state.take());
            (theirs_param, theirs_state) = (p, s);
            let (a, b) = (
                ours_state.as_ref().unwrap().momentum.clone(),
                theirs_state.as_ref().unwrap().momentum.clone(),
            );
            assert_eq!(a.time, b.time, "{what}: step count");
            let pairs = [
                (
                    ours_param.clone().unwrap(),
                    theirs_param.clone(),
                    "parameter",
                ),
                (a.moment_1, b.moment_1, "first moment"),
                (a.moment_2, b.moment_2, "second moment"),
            ];
            for (a, b, name) in pairs {
                assert_eq!(a.dtype(), dtype, "{what}: {name} keeps its dtype");
                let (a, b) = (
                    a.try_into_vec_as::<f64>().unwrap(),
                    b.try_into_vec_as::<f64>().unwrap(),
                );
                let scale = b.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
                let worst = a
                    .iter()
                    .zip(&b)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    worst <= 1e-6 * scale,
                    "{what}, step {step}: {name} differs by {worst} (scale {scale})"
                );
            }
        }
    }

    #[test]
    fn matches_burns_adam_on_the_one_pass_path() {
        compare([3, 5], DType::F32, None, "small f32");
        // Over several tasks' chunks, with weight decay.
        compare([300, 700], DType::F32, Some(0.01), "large f32 with decay");
    }

    #[test]
    fn matches_burns_adam_on_the_tensor_op_path() {
        // f64 is not the one-pass path's: Burn's tensor ops run.
        compare([4, 6], DType::F64, Some(0.05), "f64");
    }

    #[test]
    fn updates_shared_tensors_without_touching_their_other_owners() {
        let device = Device::flex();
        let param = Tensor::<1>::from_floats([1.0, -2.0, 3.0], &device);
        let kept = param.clone();
        let grad = Tensor::<1>::from_floats([0.5, 0.5, -0.5], &device);
        let ours = FusedAdamConfig::new().build();
        let (updated, _) = Optimizer::step(&ours, 0.1, param, grad, None);
        assert_eq!(kept.try_into_vec_as::<f32>().unwrap(), [1.0, -2.0, 3.0]);
        // The first step moves each value by about the learning rate
        // against its gradient's sign.
        let moved = updated.try_into_vec_as::<f32>().unwrap();
        for (v, expected) in moved.iter().zip([0.9, -2.1, 3.1]) {
            assert!((v - expected).abs() < 1e-4, "{moved:?}");
        }
    }
}
