//! The fast paths against Burn's own ops on Flex: values, gradients of
//! every input, running statistics, and the fallbacks.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::{Distribution, activation};

use super::{batch_norm, batch_norm_relu, conv2d, conv2d_norm, max_pool2d};

fn device() -> Device {
    Device::flex().autodiff()
}

fn random<const D: usize>(shape: [usize; D]) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &device())
}

fn assert_close<const D: usize>(ours: &Tensor<D>, burn: &Tensor<D>, what: &str) {
    assert_eq!(ours.dims(), burn.dims(), "{what}: shapes");
    let (a, b) = (
        ours.clone().try_into_vec_as::<f32>().unwrap(),
        burn.clone().try_into_vec_as::<f32>().unwrap(),
    );
    let scale = b.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: max |ours - burn| = {worst} (scale {scale})"
    );
}

/// Forward values and the gradients of x, weight and bias of `conv` on `x`
/// (a random weighting of the output, so every gradient element differs).
fn check_conv(conv: Conv2d, shape: [usize; 4], what: &str) {
    let x = random(shape).require_grad();
    let burn_out = conv.forward(x.clone());
    let ours_out = conv2d(&conv, x.clone());
    assert_close(&ours_out, &burn_out, &format!("{what}: output"));
    let weighting = random(burn_out.dims());
    let burn_grads = (burn_out * weighting.clone()).sum().backward();
    let ours_grads = (ours_out * weighting).sum().backward();
    let grad = |t: &Tensor<4>, grads| t.grad(grads).expect("tracked");
    assert_close(
        &grad(&x, &ours_grads),
        &grad(&x, &burn_grads),
        &format!("{what}: x grad"),
    );
    let w = conv.weight.val();
    assert_close(
        &grad(&w, &ours_grads),
        &grad(&w, &burn_grads),
        &format!("{what}: weight grad"),
    );
    if let Some(bias) = &conv.bias {
        let b = bias.val();
        let (ours, burn) = (b.grad(&ours_grads).unwrap(), b.grad(&burn_grads).unwrap());
        assert_close(&ours, &burn, &format!("{what}: bias grad"));
    }
}

#[test]
fn conv2d_matches_burn_forward_and_gradients() {
    let d = device();
    let same = |c: Conv2dConfig| c.with_padding(PaddingConfig2d::Same);
    let cases = [
        (
            "3x3 same 1->16",
            same(Conv2dConfig::new([1, 16], [3, 3])),
            [4, 1, 28, 28],
        ),
        (
            "3x3 same 16->32 odd",
            same(Conv2dConfig::new([16, 32], [3, 3])),
            [3, 16, 13, 9],
        ),
        (
            "7x7 stride 2 pad 3 (ResNet stem), no bias",
            Conv2dConfig::new([3, 8], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false),
            [2, 3, 23, 20],
        ),
        (
            "1x1 pointwise",
            Conv2dConfig::new([6, 5], [1, 1]),
            [3, 6, 5, 7],
        ),
        (
            "1x1 stride 2 (downsample)",
            Conv2dConfig::new([6, 5], [1, 1]).with_stride([2, 2]),
            [2, 6, 9, 8],
        ),
        (
            "3x2 asymmetric explicit padding, stride (2, 1)",
            Conv2dConfig::new([4, 3], [3, 2])
                .with_stride([2, 1])
                .with_padding(PaddingConfig2d::Explicit(2, 0, 1, 1)),
            [2, 4, 10, 6],
        ),
        (
            "dilation 2, valid",
            Conv2dConfig::new([2, 3], [3, 3]).with_dilation([2, 2]),
            [2, 2, 11, 12],
        ),
        (
            "3x3 dilation 2 padding 2 (same size, one run per tap)",
            Conv2dConfig::new([3, 4], [3, 3])
                .with_dilation([2, 2])
                .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2)),
            [2, 3, 7, 9],
        ),
        (
            "same with even kernel",
            same(Conv2dConfig::new([2, 4], [4, 4])),
            [2, 2, 9, 8],
        ),
        // Columns wider than one block (`COLUMN_BLOCK` values): the
        // passes run in blocks of output rows.
        (
            "blocks of one row",
            same(Conv2dConfig::new([64, 3], [3, 3])),
            [1, 64, 4, 120],
        ),
        (
            "blocks of two rows and a last of one",
            same(Conv2dConfig::new([32, 3], [3, 3])),
            [2, 32, 5, 104],
        ),
        // More than 128 output channels: the weight gradient's product
        // written [out, patch] (`TRANSPOSED_MAX_OUT`).
        (
            "weight gradient untransposed: 130 output channels, stride 2",
            Conv2dConfig::new([4, 130], [3, 3])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            [2, 4, 9, 7],
        ),
        // 64 channels or more: Winograd's F(2x2, 3x3) (`winograd.rs`),
        // forward and input gradient; odd sizes leave half-filled tiles.
        (
            "Winograd 64->64, odd height and width",
            same(Conv2dConfig::new([64, 64], [3, 3])),
            [2, 64, 7, 5],
        ),
        (
            "Winograd 64->80, one row, no bias",
            same(Conv2dConfig::new([64, 80], [3, 3]).with_bias(false)),
            [3, 64, 1, 3],
        ),
        (
            "Winograd 72->64: kernels transformed in blocks, the last partial",
            same(Conv2dConfig::new([72, 64], [3, 3])),
            [2, 72, 6, 6],
        ),
        (
            "Winograd in two chunks of tile rows across samples",
            same(Conv2dConfig::new([64, 64], [3, 3])),
            [2, 64, 40, 16],
        ),
    ];
    for (what, config, shape) in cases {
        check_conv(config.init(&d), shape, what);
    }
}

/// A 3×3 "same" convolution of `in_channels` channels on a batch of 8
/// `input` maps.
fn same_3x3(in_channels: usize, input: [usize; 2]) -> super::ConvGeometry {
    super::ConvGeometry {
        batch: 8,
        in_channels,
        out_channels: 3,
        input,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [[1, 1], [1, 1]],
        dilation: [1, 1],
    }
}

#[test]
fn wide_convolutions_run_in_blocks_of_rows() {
    // The shapes of the two block cases above, and a small one in one block.
    assert_eq!(same_3x3(64, [4, 120]).block_rows(), 1);
    assert_eq!(same_3x3(32, [5, 104]).block_rows(), 2);
    assert_eq!(same_3x3(1, [28, 28]).block_rows(), 28);
    // At least 112 columns: four rows of ResNet-18's 28-wide stage, whose
    // column matrix would fit in cache at two.
    assert_eq!(same_3x3(128, [28, 28]).block_rows(), 4);
}

#[test]
fn small_maps_put_several_samples_in_one_product() {
    // The odd-sized, stem and pointwise cases of
    // conv2d_matches_burn_forward_and_gradients take this path (groups of
    // two and one, or all three samples); ResNet-18's last stage (7×7)
    // takes four samples per product, its 14×14 stage two, a 16×16 map one.
    assert_eq!(same_3x3(2, [7, 7]).group(4), 4);
    assert_eq!(same_3x3(2, [7, 7]).group(2), 2);
    assert_eq!(same_3x3(2, [13, 9]).group(3), 2);
    assert_eq!(same_3x3(2, [14, 14]).group(4), 2);
    assert_eq!(same_3x3(2, [16, 16]).group(4), 1);
}

#[test]
fn conv2d_runs_on_views_and_without_autodiff() {
    let d = device();
    let conv = Conv2dConfig::new([3, 4], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init(&d);
    // A permuted view: the fast path reads a contiguous copy.
    let x = random([2, 5, 3, 6]).swap_dims(1, 2);
    assert_close(&conv2d(&conv, x.clone()), &conv.forward(x), "view");
    let plain = conv.valid();
    let x = Tensor::<4>::random([2, 3, 6, 5], Distribution::Default, &Device::flex());
    assert_close(&conv2d(&plain, x.clone()), &plain.forward(x), "no autodiff");
}

#[test]
fn conv2d_falls_back_where_it_has_no_fast_path() {
    let d = device();
    // Grouped: Burn's op.
    let grouped = Conv2dConfig::new([4, 4], [3, 3]).with_groups(2).init(&d);
    let x = random([2, 4, 6, 6]);
    assert_close(&conv2d(&grouped, x.clone()), &grouped.forward(x), "groups");
    // A kernel larger than the padded input has no output: no fast path.
    let geometry = super::ConvGeometry {
        batch: 1,
        in_channels: 1,
        out_channels: 1,
        input: [3, 3],
        kernel: [5, 5],
        stride: [1, 1],
        padding: [[0, 0], [1, 1]],
        dilation: [1, 1],
    };
    assert_eq!(geometry.output(), None);
    let padded = super::ConvGeometry {
        padding: [[1, 1], [1, 1]],
        ..geometry
    };
    assert_eq!(padded.output(), Some([1, 1]));
}

fn norm(channels: usize) -> BatchNorm {
    let d = device();
    let mut norm = BatchNormConfig::new(channels).init(&d);
    // Non-trivial affine parameters, as after some training.
    norm.gamma = norm.gamma.map(|_| random([channels]).require_grad());
    norm.beta = norm.beta.map(|_| random([channels]).require_grad());
    norm
}

/// Batch norm (then a ReLU when `relu`) against Burn's layer (and ReLU):
/// output, running statistics, and the gradients of x, gamma and beta.
fn check_batch_norm<const D: usize>(shape: [usize; D], relu: bool, what: &str) {
    let channels = shape[1];
    let (ours_norm, burn_norm) = (norm(channels), norm(channels));
    let burn_norm = burn_norm.load_record(ours_norm.clone().into_record());
    // Shifted and scaled input: the statistics are not near 0 and 1.
    let x = (random(shape) * 3.0 + 2.0).require_grad();
    let (ours_out, burn_out) = if relu {
        (
            batch_norm_relu(&ours_norm, x.clone()),
            activation::relu(burn_norm.forward(x.clone())),
        )
    } else {
        (
            batch_norm(&ours_norm, x.clone()),
            burn_norm.forward(x.clone()),
        )
    };
    assert_close(&ours_out, &burn_out, &format!("{what}: output"));
    for (ours, burn, name) in [
        (
            &ours_norm.running_mean,
            &burn_norm.running_mean,
            "running mean",
        ),
        (
            &ours_norm.running_var,
            &burn_norm.running_var,
            "running variance",
        ),
    ] {
        // Burn's layer settles its update when the thread reads it back.
        assert_close(
            &ours.value(),
            &burn.value_sync(),
            &format!("{what}: {name}"),
        );
    }
    let mut weighting = random(shape);
    if relu {
        // Where an output is a small positive value the pre-activation may
        // lie within rounding of zero on one side and the two ReLU masks
        // disagree (the outputs agree to 1e-4, not bit for bit): no
        // gradient flows from there. Elsewhere the masks must agree.
        let near = ours_out
            .clone()
            .detach()
            .max_pair(burn_out.clone().detach());
        let clear = near.clone().equal_elem(0.0).float() + near.greater_elem(1e-3).float();
        weighting = weighting * clear;
    }
    let ours_grads = (ours_out * weighting.clone()).sum().backward();
    let burn_grads = (burn_out * weighting).sum().backward();
    let (ox, bx) = (x.grad(&ours_grads).unwrap(), x.grad(&burn_grads).unwrap());
    assert_close(&ox, &bx, &format!("{what}: x grad"));
    for (ours, burn, name) in [
        (ours_norm.gamma.val(), burn_norm.gamma.val(), "gamma grad"),
        (ours_norm.beta.val(), burn_norm.beta.val(), "beta grad"),
    ] {
        let (o, b) = (
            ours.grad(&ours_grads).unwrap(),
            burn.grad(&burn_grads).unwrap(),
        );
        assert_close(&o, &b, &format!("{what}: {name}"));
    }
}

#[test]
fn batch_norm_matches_burn_values_statistics_and_gradients() {
    check_batch_norm([8, 16, 14, 14], false, "4-d");
    check_batch_norm([5, 3, 7], false, "3-d");
    check_batch_norm([64, 32, 40, 50], false, "4-d, threaded");
    check_batch_norm([8, 16, 14, 14], true, "4-d with ReLU");
    check_batch_norm([64, 32, 40, 50], true, "4-d with ReLU, threaded");
}

#[test]
fn batch_norm_outside_training_is_burns() {
    let norm = norm(4);
    // Inference: the running statistics, Burn's op.
    let x = Tensor::<4>::random([2, 4, 3, 3], Distribution::Default, &Device::flex());
    let inference = norm.valid();
    assert_close(
        &batch_norm(&inference, x.clone()),
        &inference.forward(x),
        "inference",
    );
}

/// A batch norm with trained-looking affine parameters and running
/// statistics (mean around 0, variance between 0.5 and 2.5).
fn trained_norm(channels: usize) -> BatchNorm {
    let mut norm = norm(channels);
    let variance = Tensor::<1>::random([channels], Distribution::Uniform(0.5, 2.5), &device());
    norm.running_mean = burn::module::RunningState::new(random([channels]));
    norm.running_var = burn::module::RunningState::new(variance);
    norm
}

#[test]
fn conv2d_norm_in_inference_is_burns_layers() {
    let flex = Device::flex();
    let same = |c: Conv2dConfig| c.with_padding(PaddingConfig2d::Same);
    let cases = [
        (
            "3x3 same with bias",
            same(Conv2dConfig::new([3, 8], [3, 3])),
            [2, 3, 9, 11],
        ),
        (
            "7x7 stride 2 without bias (ResNet stem)",
            Conv2dConfig::new([3, 6], [7, 7])
                .with_stride([2, 2])
                .with_padding(PaddingConfig2d::Explicit(3, 3, 3, 3))
                .with_bias(false),
            [2, 3, 17, 16],
        ),
        (
            "1x1 stride 2 (downsample)",
            Conv2dConfig::new([4, 5], [1, 1])
                .with_stride([2, 2])
                .with_bias(false),
            [3, 4, 8, 7],
        ),
        (
            "3x3 same 64->64 without bias (Winograd; a ResNet block)",
            same(Conv2dConfig::new([64, 64], [3, 3]).with_bias(false)),
            [2, 64, 5, 7],
        ),
    ];
    for (what, config, shape) in cases {
        let channels = config.channels[1];
        let conv = config.init(&device()).valid();
        let norm = trained_norm(channels).valid();
        let x = Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &flex);
        let burn = norm.forward(conv.forward(x.clone()));
        let ours = conv2d_norm(&conv, &norm, x.clone(), false);
        assert_close(&ours, &burn, &format!("{what}: no ReLU"));
        let ours = conv2d_norm(&conv, &norm, x, true);
        assert_close(&ours, &activation::relu(burn), &format!("{what}: ReLU"));
    }
}

#[test]
fn conv2d_norm_in_training_is_burns_layers() {
    // On the autodiff device the batch's statistics are used and the
    // running ones updated: the two training fast paths, not the fold.
    let conv = Conv2dConfig::new([2, 4], [3, 3]).init(&device());
    let ours_norm = trained_norm(4);
    // A twin with its own running statistics (clones share them).
    let burn_norm = BatchNorm {
        running_mean: burn::module::RunningState::new(ours_norm.running_mean.value()),
        running_var: burn::module::RunningState::new(ours_norm.running_var.value()),
        ..ours_norm.clone()
    };
    let x = random([3, 2, 6, 5]).require_grad();
    let ours = conv2d_norm(&conv, &ours_norm, x.clone(), true);
    let burn = activation::relu(burn_norm.forward(conv.forward(x)));
    assert_close(&ours, &burn, "training output");
    // Burn's layer settles its update when the thread reads it back.
    let running = |n: &BatchNorm| n.running_mean.value_sync();
    assert_close(&running(&ours_norm), &running(&burn_norm), "running mean");
}

#[test]
fn conv2d_norm_keeps_nan() {
    let conv = Conv2dConfig::new([1, 2], [1, 1]).init(&device()).valid();
    let norm = trained_norm(2).valid();
    let x = Tensor::<4>::from_data([[[[f32::NAN, 1.0]]]], &Device::flex());
    let out = conv2d_norm(&conv, &norm, x, true)
        .try_into_vec_as::<f32>()
        .unwrap();
    assert!(out[0].is_nan() && out[2].is_nan(), "{out:?}");
    assert!(out[1].is_finite() && out[3].is_finite(), "{out:?}");
}

#[test]
fn winograd_keeps_nan_where_it_reaches() {
    // A NaN input stays NaN in every output whose 3x3 window reads it (and
    // spreads to the rest of those outputs' 2x2 tiles: 0 · NaN is NaN in
    // the transforms), so a diverging model is still caught.
    let conv = Conv2dConfig::new([64, 64], [3, 3])
        .with_padding(PaddingConfig2d::Same)
        .init(&device())
        .valid();
    let mut values = vec![0.5f32; 64 * 6 * 6];
    values[2 * 6 + 3] = f32::NAN;
    let x = Tensor::<4>::from_data(TensorData::new(values, [1, 64, 6, 6]), &Device::flex());
    let out = conv2d(&conv, x).try_into_vec_as::<f32>().unwrap();
    for c in [0, 63] {
        for (y, x) in [(1, 2), (2, 3), (3, 4)] {
            assert!(
                out[(c * 6 + y) * 6 + x].is_nan(),
                "channel {c} at ({y}, {x})"
            );
        }
        assert!(out[(c * 6 + 5) * 6].is_finite(), "channel {c} far away");
    }
}

#[test]
fn f32_flex_tensors_take_the_fast_path() {
    let tracked = random([1, 1, 2, 2]).require_grad();
    assert!(super::on_flex_f32(&tracked));
    assert!(super::on_flex_f32(&Tensor::<1>::zeros(
        [1],
        &Device::flex()
    )));
    let half = Tensor::<1>::zeros([1], &Device::flex()).cast(burn::tensor::DType::F16);
    assert!(!super::on_flex_f32(&half));
}

#[test]
fn max_pool2d_matches_burn_forward_and_gradient() {
    let cases = [
        ("2x2", MaxPool2dConfig::new([2, 2]), [4, 16, 28, 28]),
        (
            "2x2 odd sizes",
            MaxPool2dConfig::new([2, 2]),
            [3, 5, 15, 13],
        ),
        (
            "3x3 stride 2 pad 1 (ResNet)",
            MaxPool2dConfig::new([3, 3])
                .with_strides([2, 2])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)),
            [2, 4, 17, 16],
        ),
        (
            "2x2 stride 2 dilation 2 (not the 2x2 loops)",
            MaxPool2dConfig::new([2, 2])
                .with_strides([2, 2])
                .with_dilation([2, 2]),
            [2, 3, 9, 10],
        ),
        (
            "3x2 stride (1, 2) dilation 2",
            MaxPool2dConfig::new([3, 2])
                .with_strides([1, 2])
                .with_dilation([2, 2]),
            [2, 3, 11, 10],
        ),
    ];
    for (what, config, shape) in cases {
        let pool = config.init();
        // Normal values: no ties, so both sides pick the same maxima.
        let x = random(shape).require_grad();
        assert_pool_is_burns(&pool, x, what);
    }
}

/// `max_pool2d` against Burn's `pool.forward`: output and input gradient.
fn assert_pool_is_burns(pool: &MaxPool2d, x: Tensor<4>, what: &str) {
    let (ours, burn) = (max_pool2d(pool, x.clone()), pool.forward(x.clone()));
    assert_close(&ours, &burn, &format!("{what}: output"));
    let weighting = random(burn.dims());
    let ours_grads = (ours * weighting.clone()).sum().backward();
    let burn_grads = (burn * weighting).sum().backward();
    let (o, b) = (x.grad(&ours_grads).unwrap(), x.grad(&burn_grads).unwrap());
    assert_close(&o, &b, &format!("{what}: x grad"));
}

#[test]
fn max_pool2d_gradient_goes_to_the_first_of_tied_maxima_as_in_burn() {
    // Values in {-1, 0, 1}: most windows hold ties, in every arrangement.
    // 2×2: widths with whole groups of four windows and with a remainder,
    // and an odd height and width whose last row and column no window
    // reads; ResNet's overlapping 3×3 stride-2 windows with padding.
    let two = MaxPool2dConfig::new([2, 2]).init();
    let three = MaxPool2dConfig::new([3, 3])
        .with_strides([2, 2])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init();
    for (pool, shape) in [
        (&two, [2, 3, 8, 16]),
        (&two, [2, 3, 9, 22]),
        (&three, [2, 3, 11, 12]),
    ] {
        let x = random(shape).clamp(-1.5, 1.5).round().require_grad();
        assert_pool_is_burns(pool, x, &format!("{shape:?}"));
    }
}

#[test]
fn max_pool2d_propagates_nan_and_falls_back_in_ceil_mode() {
    let pool = MaxPool2dConfig::new([2, 2]).init();
    let x = Tensor::<4>::from_floats([[[[1.0, f32::NAN], [3.0, 2.0]]]], &device());
    let out = max_pool2d(&pool, x).into_scalar::<f32>();
    assert!(out.is_nan());
    let ceil = MaxPool2dConfig::new([2, 2]).with_ceil_mode(true).init();
    let x = random([1, 2, 5, 5]);
    assert_close(&max_pool2d(&ceil, x.clone()), &ceil.forward(x), "ceil mode");
}

fn options(causal: bool, scale: Option<f64>) -> burn::tensor::ops::AttentionModuleOptions {
    burn::tensor::ops::AttentionModuleOptions {
        scale,
        softcap: None,
        is_causal: causal,
    }
}

#[test]
fn attention_matches_burn() {
    let flex = Device::flex();
    let random =
        |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &flex);
    // (batch, heads, queries, keys, dim, value, causal, scale)
    let cases = [
        (2, 3, 17, 7, 8, 8, false, None),
        (1, 6, 16, 300, 16, 16, false, None),
        // One query: a decoder step with its cache.
        (5, 6, 1, 300, 16, 16, false, None),
        (2, 2, 70, 70, 4, 6, true, None),
        (1, 1, 130, 3, 5, 2, false, Some(0.3)),
        (1, 2, 19, 19, 3, 3, true, Some(1.7)),
    ];
    for (b, h, lq, lk, d, dv, causal, scale) in cases {
        let what = format!("b{b} h{h} q{lq} k{lk} d{d} v{dv} causal {causal} scale {scale:?}");
        // The heads as views of [batch, length, heads, dim], as the
        // encoders make them.
        let check = |q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, what: &str| {
            let opts = options(causal, scale);
            let ours = super::attention(q.clone(), k.clone(), v.clone(), None, opts);
            let burn = burn::tensor::module::attention(q, k, v, None, None, opts);
            assert_close(&ours, &burn, what);
        };
        let q = random([b, lq, h, d]).swap_dims(1, 2);
        let k = random([b, lk, h, d]).swap_dims(1, 2);
        let v = random([b, lk, h, dv]).swap_dims(1, 2);
        check(q, k, v, &what);
        // Contiguous inputs too.
        let contiguous = |t: Tensor<4>| Tensor::<4>::from_data(t.into_data(), &flex);
        check(
            contiguous(random([b, h, lq, d])),
            contiguous(random([b, h, lk, d])),
            contiguous(random([b, h, lk, dv])),
            &format!("{what}, contiguous"),
        );
    }
}

/// Keys hidden per sample (a padded batch) give Burn's op with the padding
/// broadcast into its mask: heads as views, causal too, a sample that
/// hides every key (zeros from both), one that hides none, padding at the
/// end and keys hidden in between.
#[test]
fn attention_padded_matches_burn() {
    let flex = Device::flex();
    let random =
        |shape: [usize; 4]| Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &flex);
    // (batch, heads, queries, keys, dim, causal, holes)
    for (b, h, lq, lk, d, causal, holes) in [
        (4, 3, 9, 9, 8, false, false),
        (4, 2, 70, 70, 16, false, false),
        (3, 2, 5, 11, 4, false, false),
        (4, 3, 9, 9, 8, true, false),
        (4, 3, 9, 9, 8, false, true),
        (4, 3, 9, 9, 8, true, true),
    ] {
        // Sample i hides its last i · lk / 3 keys: none, some, all (i = 3);
        // with holes, also every third key of the first two samples.
        let hidden: Vec<bool> = (0..b * lk)
            .map(|at| {
                let (sample, key) = (at / lk, at % lk);
                key >= lk - (sample * lk / 3).min(lk) || (holes && sample < 2 && key % 3 == 1)
            })
            .collect();
        assert!(hidden[(b - 1) * lk..].iter().all(|&h| h) || b < 4);
        let padding = Tensor::<2, Bool>::from_data(TensorData::new(hidden, [b, lk]), &flex);
        let mask = padding
            .clone()
            .reshape([b, 1, 1, lk])
            .expand([b, h, lq, lk]);
        let opts = options(causal, None);
        let q = random([b, lq, h, d]).swap_dims(1, 2);
        let k = random([b, lk, h, d]).swap_dims(1, 2);
        let v = random([b, lk, h, d]).swap_dims(1, 2);
        let ours = super::attention_padded(q.clone(), k.clone(), v.clone(), Some(padding), opts);
        let burn = burn::tensor::module::attention(q, k, v, Some(mask), None, opts);
        let what = format!("b{b} h{h} q{lq} k{lk} d{d} causal {causal}");
        assert_close(&ours, &burn, &what);
        if b == 4 && !causal {
            // The sample that hides every key: zeros.
            let last = ours.narrow(0, 3, 1).try_into_vec_as::<f32>().unwrap();
            assert!(last.iter().all(|&x| x == 0.0), "{what}: {last:?}");
        }
    }
}

#[test]
fn attention_keeps_nan_and_falls_back_with_a_mask_or_autodiff() {
    let flex = Device::flex();
    // Query 0 of 16 with a NaN.
    let mut values = vec![0.25f32; 16 * 4];
    values[1] = f32::NAN;
    let q = Tensor::<4>::from_data(TensorData::new(values, [1, 1, 16, 4]), &flex);
    let k = Tensor::<4>::random([1, 1, 3, 4], Distribution::Normal(0.0, 1.0), &flex);
    let v = Tensor::<4>::random([1, 1, 3, 4], Distribution::Normal(0.0, 1.0), &flex);
    let out = super::attention(q.clone(), k.clone(), v.clone(), None, options(false, None))
        .try_into_vec_as::<f32>()
        .unwrap();
    assert!(out[..4].iter().all(|x| x.is_nan()), "{out:?}");
    assert!(out[4..].iter().all(|x| x.is_finite()), "{out:?}");
    // A mask: Burn's op, the same result.
    let hidden: Vec<bool> = (0..16 * 3).map(|i| i % 5 == 1).collect();
    let mask = Tensor::<4, Bool>::from_data(TensorData::new(hidden, [1, 1, 16, 3]), &flex);
    let ours = super::attention(
        q.clone(),
        k.clone(),
        v.clone(),
        Some(mask.clone()),
        options(false, None),
    );
    let burn = burn::tensor::module::attention(q, k, v, Some(mask), None, options(false, None));
    assert_eq!(
        ours.try_into_vec_as::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>(),
        burn.try_into_vec_as::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    );
    // Under autodiff: Burn's op, with gradients.
    let q = random([1, 2, 3, 4]).require_grad();
    let (k, v) = (random([1, 2, 3, 4]), random([1, 2, 3, 4]));
    let grads = super::attention(q.clone(), k, v, None, options(true, None))
        .sum()
        .backward();
    assert!(q.grad(&grads).is_some());
}

#[test]
fn matmul_transposed_matches_burn() {
    let flex = Device::flex();
    let random =
        |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &flex);
    // (rows, k, n): every row count of the fast path, widths with and
    // without a tail past a multiple of eight (and under eight), several
    // tasks' worth of columns, and seven to nine rows (Burn's product).
    let cases = [
        (1, 384, 3000),
        (2, 13, 5),
        (3, 7, 1),
        (4, 40, 1025),
        (5, 384, 2100),
        (6, 9, 64),
        (7, 16, 17),
        (8, 385, 33),
        (9, 24, 50),
    ];
    for (rows, k, n) in cases {
        let what = format!("rows {rows} k {k} n {n}");
        let (x, w) = (random([rows, k]), random([n, k]));
        let ours = super::matmul_transposed(x.clone(), w.clone());
        let burn = x.clone().matmul(w.clone().transpose());
        assert_close(&ours, &burn, &what);
        // `x` as a view (a row of a wider tensor's slice).
        let wide = Tensor::cat(vec![x.clone(), x.clone()], 1).narrow(1, k, k);
        assert_close(&super::matmul_transposed(wide, w.clone()), &burn, &what);
        // `w` as a transposed view: Burn's product.
        let wt = Tensor::<2>::from_data(w.clone().transpose().into_data(), &flex).transpose();
        assert_close(&super::matmul_transposed(x, wt), &burn, &what);
    }
}

#[test]
fn matmul_transposed_keeps_nan_and_falls_back_under_autodiff() {
    let flex = Device::flex();
    let x = Tensor::<2>::from_data([[1.0f32, f32::NAN, 0.5], [0.25, 0.5, 2.0]], &flex);
    let w = Tensor::<2>::from_data([[1.0f32, 0.0, 1.0], [0.0, 0.0, 3.0]], &flex);
    let out = super::matmul_transposed(x, w)
        .try_into_vec_as::<f32>()
        .unwrap();
    assert!(out[0].is_nan() && out[1].is_nan(), "{out:?}");
    assert_eq!(&out[2..], &[2.25, 6.0]);
    let x = random([3, 4]).require_grad();
    let w = random([5, 4]);
    let grads = super::matmul_transposed(x.clone(), w).sum().backward();
    assert!(x.grad(&grads).is_some());
}

/// Every copy of the vectorised loops (the baseline build, AVX2, AVX-512,
/// as far as this CPU has them) computes the same bits: batch norm's
/// statistics, output and gradients (with and without its ReLU), 2×2
/// max pooling, Winograd's convolution, the attention softmax and the
/// log-sum-exp, on sizes that leave vector tails.
#[test]
fn every_vector_width_computes_the_same_values() {
    use super::norm::{Layout, Saved};
    use super::simd::{Level, with_ceiling};
    let layout = Layout {
        batch: 3,
        channels: 5,
        rest: 6 * 7,
    };
    let n = layout.batch * layout.channels * layout.rest;
    let wave = |scale: f32, at: f32| -> Vec<f32> {
        (0..n)
            .map(|i| (i as f32 * scale + at).sin() * 3.0)
            .collect()
    };
    let (x, grad) = (wave(0.731, 0.2), wave(1.37, 1.1));
    let gamma: Vec<f32> = (0..5).map(|c| 0.5 + c as f32 * 0.3).collect();
    let beta: Vec<f32> = (0..5).map(|c| c as f32 * 0.1 - 0.2).collect();
    let pool = super::PoolGeometry {
        planes: layout.batch * layout.channels,
        input: [6, 7],
        kernel: [2, 2],
        stride: [2, 2],
        padding: [[0, 0], [0, 0]],
        dilation: [1, 1],
    };
    let run = || {
        [false, true].map(|relu| {
            let (out, mean, variance) = super::norm::forward(layout, &x, &gamma, &beta, 1e-5, relu);
            let saved = Saved {
                gamma: &gamma,
                beta: &beta,
                mean: &mean,
                variance: &variance,
                epsilon: 1e-5,
                relu,
            };
            let (dx, dgamma, dbeta) = super::norm::backward(layout, &x, &saved, &grad);
            let pooled = super::pool::forward(&pool, &out);
            [out, mean, variance, dx, dgamma, dbeta, pooled]
                .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
        })
    };
    // Winograd's transforms (64 channels, odd sizes: a tail in every row
    // of tiles and a last tile cut in half both ways), with a folded norm
    // and ReLU, and the input gradient.
    let conv = super::ConvGeometry {
        batch: 2,
        in_channels: 64,
        out_channels: 64,
        input: [7, 37],
        kernel: [3, 3],
        stride: [1, 1],
        padding: [[1, 1], [1, 1]],
        dilation: [1, 1],
    };
    let values = |len: usize, scale: f32| -> Vec<f32> {
        (0..len).map(|i| (i as f32 * scale).sin()).collect()
    };
    let image = values(2 * 64 * 7 * 37, 0.37);
    let kernels = values(64 * 64 * 9, 0.53);
    let (scale, shift) = (values(64, 1.1), values(64, 0.7));
    let run_winograd = || {
        let epilogue = super::conv::Epilogue {
            scale: Some(&scale),
            shift: &shift,
            relu: true,
        };
        // And im2col's strided copies (a stride-2 stem on an odd width).
        let stem = super::ConvGeometry {
            in_channels: 3,
            kernel: [7, 7],
            stride: [2, 2],
            padding: [[3, 3], [3, 3]],
            ..conv
        };
        let bias = super::conv::Epilogue {
            scale: None,
            shift: &shift,
            relu: false,
        };
        [
            super::winograd::forward(&conv, &image, &kernels, epilogue),
            super::winograd::x_grad(&conv, &kernels, &image),
            super::conv::forward(&stem, &image, &kernels, bias),
        ]
        .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<u32>>())
    };
    // The attention softmax (a row length with a tail, causal and
    // padded) and the log-sum-exp.
    let flex = Device::flex();
    let head = |len: usize, scale: f32| {
        Tensor::<4>::from_data(
            TensorData::new(values(len * 8, scale), [1, 1, len, 8]),
            &flex,
        )
    };
    let hidden: Vec<bool> = (0..21).map(|k| k >= 17).collect();
    let padding = Tensor::<2, Bool>::from_data(TensorData::new(hidden, [1, 21]), &flex);
    let run_softmax = || {
        let (q, k, v) = (head(21, 0.31), head(21, 0.77), head(21, 1.3));
        let bits = |t: Tensor<4>| -> Vec<u32> {
            let values = t.try_into_vec_as::<f32>().unwrap();
            values.iter().map(|f| f.to_bits()).collect()
        };
        let causal = super::attention(q.clone(), k.clone(), v.clone(), None, options(true, None));
        let padded = super::attention_padded(q, k, v, Some(padding.clone()), options(false, None));
        let logits = values(1001, 0.13);
        [
            bits(causal),
            bits(padded),
            vec![super::log_sum_exp(&logits).to_bits()],
        ]
    };
    let all = || (run(), run_winograd(), run_softmax());
    let widest = all();
    for level in [Level::Baseline, Level::Avx2] {
        assert!(with_ceiling(level, all) == widest, "{level:?} differs");
    }
}

/// Training steps that run on whichever thread is free (a step handed to
/// rayon's pool) leave the running statistics each step's update gives, as
/// steps on one thread do: Burn keeps a thread's update apart until that
/// thread reads it again, and averages the threads' pending updates.
#[test]
fn batch_norm_running_statistics_do_not_depend_on_the_thread() {
    let first = norm(3);
    let other = norm(3).load_record(first.clone().into_record());
    let inputs: Vec<Tensor<4>> = (0..3)
        .map(|i| random([4, 3, 5, 5]) * (1.0 + i as f32) + i as f32)
        .collect();
    for x in &inputs {
        batch_norm(&first, x.clone());
    }
    for (i, x) in inputs.iter().enumerate() {
        if i % 2 == 0 {
            batch_norm(&other, x.clone());
        } else {
            std::thread::scope(|s| {
                s.spawn(|| batch_norm(&other, x.clone()));
            });
        }
    }
    for (ours, theirs, what) in [
        (&first.running_mean, &other.running_mean, "mean"),
        (&first.running_var, &other.running_var, "variance"),
    ] {
        let (ours, theirs) = (ours.value().into_data(), theirs.value().into_data());
        assert_eq!(ours, theirs, "running {what}");
    }
}
