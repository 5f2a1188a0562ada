//! Checks and helpers shared by the fusion layers.

use burn::prelude::*;

use polymodal_core::{Error, ModalityEmbeddings, Result};

/// Large negative score given to absent modalities before a softmax, so they
/// get (numerically) zero weight without producing NaN when all are absent.
pub(crate) const MASKED_SCORE: f32 = -1e4;

/// Checks that `inputs` has one entry per configured modality, each with the
/// configured pooled width.
pub(crate) fn check_pooled(
    layer: &str,
    inputs: &[ModalityEmbeddings],
    input_dims: &[usize],
) -> Result<()> {
    check_widths(layer, "pooled", inputs, input_dims, |m| {
        m.embeddings.pooled.dims()[1]
    })
}

/// Checks the token widths of the sequences, as [`check_pooled`] does for pooled vectors.
pub(crate) fn check_sequence(
    layer: &str,
    inputs: &[ModalityEmbeddings],
    input_dims: &[usize],
) -> Result<()> {
    check_widths(layer, "sequence", inputs, input_dims, |m| {
        m.embeddings.sequence.dims()[2]
    })
}

fn check_widths(
    layer: &str,
    what: &str,
    inputs: &[ModalityEmbeddings],
    expected: &[usize],
    width: fn(&ModalityEmbeddings) -> usize,
) -> Result<()> {
    let got: Vec<usize> = inputs.iter().map(width).collect();
    if got != expected {
        return Err(Error::Invalid(format!(
            "{layer} was built for {what} widths {expected:?} but got {got:?}"
        )));
    }
    Ok(())
}

/// Checks the input widths of a configuration: at least `min` modalities, no zero width.
pub(crate) fn check_config(layer: &str, input_dims: &[usize], min: usize) -> Result<()> {
    if input_dims.len() < min || input_dims.contains(&0) {
        return Err(Error::Config(format!(
            "{layer} needs at least {min} modalities of positive width, got {input_dims:?}"
        )));
    }
    Ok(())
}

/// Checks that a width or count is positive.
pub(crate) fn check_positive(layer: &str, name: &str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(Error::Config(format!("{layer}: `{name}` must be positive")));
    }
    Ok(())
}

/// Presence of a modality as `[batch, 1]` floats (1 present, 0 absent).
pub(crate) fn presence(input: &ModalityEmbeddings) -> Tensor<2> {
    input.present.clone().float().unsqueeze_dim::<2>(1)
}

/// The pooled embedding with absent samples zeroed.
pub(crate) fn masked_pooled(input: &ModalityEmbeddings) -> Tensor<2> {
    input.embeddings.pooled.clone() * presence(input)
}

/// The token mask with every token of an absent sample switched off.
pub(crate) fn token_mask(input: &ModalityEmbeddings) -> Tensor<2, Bool> {
    let [batch, length] = input.embeddings.mask.dims();
    let present = input.present.clone().unsqueeze_dim::<2>(1);
    input
        .embeddings
        .mask
        .clone()
        .bool_and(present.expand([batch, length]))
}

/// Softmax over modalities (dimension 1 of `scores` `[batch, modalities, …]`)
/// with absent modalities (`present` `[batch, modalities]`, 1/0) left out.
pub(crate) fn masked_softmax<const D: usize>(scores: Tensor<D>, present: Tensor<2>) -> Tensor<D> {
    let mut shape = scores.dims();
    shape[2..].iter_mut().for_each(|d| *d = 1);
    let present: Tensor<D> = present.reshape(shape);
    let scores = scores + (present.clone().neg() + 1.0) * MASKED_SCORE;
    burn::tensor::activation::softmax(scores, 1) * present
}

#[cfg(test)]
pub(crate) mod testing {
    //! Inputs for the fusion tests.

    use burn::prelude::*;
    use polymodal_core::{Embeddings, Modality, ModalityEmbeddings};

    /// One modality's embeddings: `batch` samples, `length` random tokens of
    /// width `dim`, presence from `present`.
    pub fn part(
        modality: Modality,
        dim: usize,
        length: usize,
        present: &[bool],
        device: &Device,
    ) -> ModalityEmbeddings {
        let batch = present.len();
        let sequence = Tensor::<3>::random(
            [batch, length, dim],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            device,
        );
        let mask = Tensor::<2>::ones([batch, length], device).equal_elem(1.0);
        ModalityEmbeddings {
            modality,
            embeddings: Embeddings::from_sequence(sequence, mask),
            present: Tensor::from_data(TensorData::new(present.to_vec(), [batch]), device),
        }
    }

    /// The same embeddings with different values for the absent samples.
    pub fn perturb_absent(input: &ModalityEmbeddings) -> ModalityEmbeddings {
        let absent = input.present.clone().bool_not().float();
        let noise = |t: Tensor<3>| {
            let [b, l, d] = t.dims();
            let shift = absent.clone().reshape([b, 1, 1]).expand([b, l, d]) * 50.0;
            t + shift
        };
        let sequence = noise(input.embeddings.sequence.clone());
        ModalityEmbeddings {
            modality: input.modality,
            embeddings: Embeddings {
                pooled: input.embeddings.pooled.clone()
                    + absent.clone().unsqueeze_dim::<2>(1) * 50.0,
                sequence,
                mask: input.embeddings.mask.clone(),
            },
            present: input.present.clone(),
        }
    }

    /// Largest absolute difference.
    pub fn max_diff(a: Tensor<2>, b: Tensor<2>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// A fusion layer with a linear head, trained on the tiny problem.
    #[derive(Module, Debug)]
    struct Probe<F> {
        fusion: F,
        head: burn::nn::Linear,
    }

    /// The tiny problem: each modality carries one bit, the class is their
    /// sum (0, 1 or 2). One modality alone is right half of the time at most.
    fn bits_problem(n: usize, device: &Device) -> (Vec<ModalityEmbeddings>, Tensor<1, Int>) {
        let bits = |salt: u64| -> Vec<f32> {
            (0..n as u64)
                .map(|i| ((i.wrapping_mul(0x9E37_79B9) ^ salt) >> 3 & 1) as f32)
                .collect()
        };
        let (a, b) = (bits(0x55), bits(0x2A3));
        let make = |modality, bits: &[f32], dim: usize| {
            let mut p = part(modality, dim, 2, &vec![true; n], device);
            let signal = Tensor::<1>::from_data(TensorData::new(bits.to_vec(), [n]), device)
                .mul_scalar(2.0)
                .sub_scalar(1.0)
                .reshape([n, 1, 1])
                .expand([n, 2, dim]);
            let sequence = signal + p.embeddings.sequence.clone() * 0.3;
            p.embeddings = polymodal_core::Embeddings::from_sequence(sequence, p.embeddings.mask);
            p
        };
        let labels: Vec<i64> = a.iter().zip(&b).map(|(x, y)| (x + y) as i64).collect();
        (
            vec![make(Modality::Image, &a, 6), make(Modality::Audio, &b, 4)],
            Tensor::from_data(TensorData::new(labels, [n]), device),
        )
    }

    /// The tests every feature-level and joint fusion layer must pass:
    /// output shape, absent samples without influence, wrong inputs refused,
    /// gradients reaching every modality, and learning the tiny problem.
    pub fn conformance<F, B>(build: B)
    where
        F: polymodal_core::Fusion + Module + burn::module::ModuleDisplay + std::fmt::Debug,
        B: Fn(Vec<usize>, &Device) -> polymodal_core::Result<F>,
    {
        use burn::optim::{AdamConfig, GradientsParams};

        let device = Device::flex();
        device.seed(5);
        let inputs = [
            part(Modality::Image, 6, 3, &[true, true, false, true], &device),
            part(Modality::Audio, 4, 5, &[true, false, true, true], &device),
        ];
        let fusion = build(vec![6, 4], &device).expect("valid config");
        let fused = fusion.fuse(&inputs).expect("valid inputs");
        assert_eq!(fused.dims(), [4, fusion.output_dim()], "output shape");
        let perturbed = inputs.clone().map(|m| perturb_absent(&m));
        let diff = max_diff(fused, fusion.fuse(&perturbed).unwrap());
        assert!(diff < 1e-4, "absent samples changed the output by {diff}");
        assert!(fusion.fuse(&inputs[..1]).is_err(), "one input accepted");
        let swapped = [inputs[1].clone(), inputs[0].clone()];
        assert!(fusion.fuse(&swapped).is_err(), "wrong widths accepted");

        // Gradients reach every modality.
        let device = device.autodiff();
        let fusion = build(vec![6, 4], &device).unwrap();
        let raw: Vec<Tensor<3>> = [6, 4]
            .map(|d| {
                Tensor::<3>::random(
                    [3, 2, d],
                    burn::tensor::Distribution::Normal(0.0, 1.0),
                    &device,
                )
                .require_grad()
            })
            .to_vec();
        let inputs: Vec<ModalityEmbeddings> = raw
            .iter()
            .zip([Modality::Image, Modality::Audio])
            .map(|(r, modality)| {
                let mask = Tensor::<2>::ones([3, 2], &device).equal_elem(1.0);
                ModalityEmbeddings {
                    modality,
                    embeddings: polymodal_core::Embeddings::from_sequence(r.clone() * 1.0, mask),
                    present: Tensor::from_data([true, true, true], &device),
                }
            })
            .collect();
        let grads = fusion
            .fuse(&inputs)
            .unwrap()
            .powf_scalar(2.0)
            .sum()
            .backward();
        for (i, r) in raw.iter().enumerate() {
            let g = r
                .grad(&grads)
                .expect("a gradient")
                .abs()
                .sum()
                .into_scalar::<f32>();
            assert!(g > 0.0, "no gradient reaches modality {i}");
        }

        // Learns the tiny problem, on samples it did not train on.
        let fusion = build(vec![6, 4], &device).unwrap();
        let head = burn::nn::LinearConfig::new(fusion.output_dim(), 3).init(&device);
        let mut probe = Probe { fusion, head };
        let mut optimizer = AdamConfig::new().init();
        let (train, labels) = bits_problem(64, &device);
        let loss_fn = burn::nn::loss::CrossEntropyLossConfig::new().init(&device);
        for _ in 0..120 {
            let logits = probe.head.forward(probe.fusion.fuse(&train).unwrap());
            let loss = loss_fn.forward(logits, labels.clone());
            let grads = GradientsParams::from_grads(loss.backward(), &probe);
            probe = optimizer.step(0.01, probe, grads);
        }
        let probe = probe.valid();
        let device = Device::flex();
        let (test, labels) = bits_problem(256, &device);
        let test = test
            .into_iter()
            .map(|m| perturb_absent(&m))
            .collect::<Vec<_>>();
        let predicted = probe
            .head
            .forward(probe.fusion.fuse(&test).unwrap())
            .argmax(1);
        let correct = predicted
            .squeeze_dim::<1>(1)
            .equal(labels)
            .int()
            .sum()
            .into_scalar::<i64>();
        let accuracy = correct as f32 / 256.0;
        assert!(
            accuracy > 0.85,
            "accuracy {accuracy} on the tiny problem (one modality: 0.5)"
        );
    }
}
