//! The training loop's promises: exact resume, gradient accumulation equal
//! to a large batch, early stopping, the run folder's files, and a
//! non-finite loss stopping training with the last good state kept.

use std::path::Path;

use burn::prelude::*;
use polymodal::core::testing::max_abs_diff;
use polymodal::train::{
    Batcher, Dataset, Example, FeatureConfig, Features, Label, LrSchedule, Progress, RngGuard,
    RunDir, TrainConfig, Trainer, avmnist_features, evaluate, load_checkpoint,
};
use polymodal::{Error, Modality, Result};
use polymodal_tests::{Tiny, scratch_dir};

fn features() -> FeatureConfig {
    let mut config = avmnist_features();
    config.image.width = 4;
    config.image.height = 4;
    config
}

/// Three classes, each a noisy pattern over 16 pixels.
fn dataset(n: usize, salt: u32) -> Dataset {
    let examples = (0..n)
        .map(|i| {
            let label = i % 3;
            let image = (0..16)
                .map(|p| {
                    let noise = ((i as u32 * 7919 + p * 104_729 + salt) % 1000) as f32 / 1000.0;
                    let signal = if p as usize % 3 == label { 1.0 } else { 0.0 };
                    signal + noise - 0.5
                })
                .collect();
            Example {
                id: format!("s{i}"),
                features: Features {
                    image: Some(image),
                    ..Features::default()
                },
                label: Label::Single(label),
            }
        })
        .collect();
    Dataset {
        examples,
        classes: vec!["a".into(), "b".into(), "c".into()],
    }
}

/// Multi-label: sample `i` has class `k` when bit `k` of `i` is set (all 8
/// subsets of 3 classes occur), each class a noisy pattern as above.
fn multi_label_dataset(n: usize, salt: u32) -> Dataset {
    let mut data = dataset(n, salt);
    for (i, e) in data.examples.iter_mut().enumerate() {
        let has = |k: usize| (i >> k) & 1 == 1;
        let image = e.features.image.as_mut().unwrap();
        for (p, v) in image.iter_mut().enumerate() {
            let single = if p % 3 == i % 3 { 1.0 } else { 0.0 };
            *v += if has(p % 3) { 1.0 } else { 0.0 } - single;
        }
        e.label = Label::Multi((0..3).map(has).collect());
    }
    data
}

fn settings(epochs: usize) -> TrainConfig {
    TrainConfig {
        epochs,
        batch_size: 16,
        learning_rate: 0.02,
        seed: 5,
        schedule: LrSchedule::WarmupCosine {
            warmup_steps: 3,
            min_factor: 0.1,
        },
        clip_grad_norm: Some(1.0),
        ..TrainConfig::default()
    }
}

fn run(
    config: TrainConfig,
    output: Option<&Path>,
    resume: bool,
    train: &Dataset,
) -> Result<(Tiny, polymodal::train::TrainReport)> {
    run_until(config, output, resume, train, None)
}

/// Trains; with `crash_after`, the process "crashes" (panics) right after
/// that epoch has been saved.
fn run_until(
    config: TrainConfig,
    output: Option<&Path>,
    resume: bool,
    train: &Dataset,
    crash_after: Option<usize>,
) -> Result<(Tiny, polymodal::train::TrainReport)> {
    let batcher = Batcher::new(vec![Modality::Image], features(), None).unwrap();
    let device = Device::flex().autodiff();
    let _rng = RngGuard::seeded(&device, 1);
    let trainer = Trainer {
        batcher: &batcher,
        config,
        device: device.clone(),
        output: output.map(Path::to_path_buf),
        resume,
    };
    trainer.train(Tiny::new(&device), train, &dataset(30, 9), &mut |event| {
        if let Progress::Epoch(report) = event
            && Some(report.epoch) == crash_after
        {
            panic!("simulated crash after epoch {}", report.epoch);
        }
    })
}

fn weights(model: &Tiny) -> Vec<f32> {
    model.linear.weight.val().try_into_vec_as::<f32>().unwrap()
}

#[test]
fn a_resumed_run_equals_an_uninterrupted_one() {
    let train = dataset(90, 1);
    let straight = scratch_dir("resume-straight");
    let (_, full) = run(settings(4), Some(&straight), false, &train).unwrap();
    let split = scratch_dir("resume-split");
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_until(settings(4), Some(&split), false, &train, Some(2))
    }));
    assert!(crashed.is_err(), "the simulated crash happened");
    let (_, resumed) = run(settings(4), Some(&split), true, &train).unwrap();
    assert_eq!(
        resumed.epochs.len(),
        4,
        "the history includes the first run"
    );
    assert_eq!(
        full.epochs.len(),
        resumed.epochs.len(),
        "epochs: {} uninterrupted, {} resumed",
        full.epochs.len(),
        resumed.epochs.len()
    );
    for (a, b) in full.epochs.iter().zip(&resumed.epochs) {
        assert!((a.train_loss - b.train_loss).abs() < 1e-6, "{a:?} vs {b:?}");
        assert_eq!(a.learning_rate, b.learning_rate);
    }
    // The last epoch's weights (model and optimiser state both restored).
    let last = |dir: &Path| {
        let device = Device::flex();
        let file = dir.join("training").join("epoch-4.model.bpk");
        weights(&load_checkpoint(Tiny::new(&device), &file).unwrap())
    };
    let diff = max_abs_diff(&last(&straight), &last(&split));
    assert!(diff < 1e-6, "resumed weights differ by {diff}");
    // The run folder: best model, metrics, charts; old epochs cleaned up.
    for file in [
        "model.bpk",
        "metrics.csv",
        "metrics.jsonl",
        "loss.svg",
        "accuracy.svg",
    ] {
        assert!(split.join(file).is_file(), "{file} missing");
    }
    let csv = std::fs::read_to_string(split.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(!split.join("training").join("epoch-3.model.bpk").exists());
    // Changing a setting other than epochs is refused, naming the file.
    let other = TrainConfig {
        learning_rate: 0.5,
        ..settings(5)
    };
    let message = run(other, Some(&split), true, &train)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(message.contains("state.json"), "{message}");
}

#[test]
fn accumulated_batches_equal_one_large_batch() {
    let train = dataset(64, 2);
    let plain = TrainConfig {
        schedule: LrSchedule::Constant,
        clip_grad_norm: None,
        ..settings(2)
    };
    let (large, _) = run(plain.clone(), None, false, &train).unwrap();
    let accumulated = TrainConfig {
        batch_size: 8,
        accumulation: 2,
        ..plain
    };
    let (small, _) = run(accumulated, None, false, &train).unwrap();
    let diff = max_abs_diff(&weights(&large), &weights(&small));
    assert!(
        diff < 1e-5,
        "accumulation differs from the large batch by {diff}"
    );
}

#[test]
fn early_stopping_ends_a_run_that_stopped_improving() {
    let train = dataset(60, 3);
    let config = TrainConfig {
        learning_rate: 1e-9,
        schedule: LrSchedule::Constant,
        early_stopping: Some(2),
        ..settings(20)
    };
    let (_, report) = run(config, None, false, &train).unwrap();
    assert!(report.stopped_early);
    assert_eq!(report.best_epoch, 1);
    assert_eq!(report.epochs.len(), 3, "epochs 2 and 3 did not improve");
}

#[test]
fn a_non_finite_loss_stops_training_and_keeps_the_last_good_state() {
    let dir = scratch_dir("non-finite");
    let mut train = dataset(48, 4);
    run(settings(1), Some(&dir), false, &train).unwrap();
    let best_before = std::fs::read(RunDir(dir.clone()).best_weights()).unwrap();
    train.examples[5].features.image.as_mut().unwrap()[3] = f32::NAN;
    let error = run(settings(3), Some(&dir), true, &train)
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(error, Error::NonFiniteLoss { epoch: 2, .. }),
        "{error}"
    );
    let state = std::fs::read_to_string(dir.join("training").join("state.json")).unwrap();
    let state: serde_json::Value = serde_json::from_str(&state).unwrap();
    assert_eq!(state["epoch"], 1, "{state}");
    assert_eq!(
        std::fs::read(RunDir(dir.clone()).best_weights()).unwrap(),
        best_before
    );
    // The kept model still loads and predicts.
    let device = Device::flex();
    let model = load_checkpoint(Tiny::new(&device), &RunDir(dir).best_weights()).unwrap();
    let batcher = Batcher::new(vec![Modality::Image], features(), None).unwrap();
    let evaluation = evaluate(&model, &dataset(30, 9), &batcher, &device).unwrap();
    assert!(evaluation.loss.is_finite());
}

#[test]
fn multi_label_training_learns_independent_classes() {
    let train = multi_label_dataset(96, 11);
    let valid = multi_label_dataset(48, 12);
    let test = multi_label_dataset(64, 13);
    let batcher = Batcher::new(vec![Modality::Image], features(), None).unwrap();
    let device = Device::flex();
    let untrained = evaluate(&Tiny::new(&device), &test, &batcher, &device).unwrap();
    let autodiff = device.clone().autodiff();
    let trainer = Trainer {
        batcher: &batcher,
        config: settings(15),
        device: autodiff.clone(),
        output: None,
        resume: false,
    };
    let (model, report) = trainer
        .train(Tiny::new(&autodiff), &train, &valid, &mut |_| {})
        .unwrap();
    assert!(report.epochs.last().unwrap().train_loss < report.epochs[0].train_loss);
    let evaluation = evaluate(&model, &test, &batcher, &device).unwrap();
    let metrics = evaluation.multi_label.clone().expect("multi-label metrics");
    // Exact set right for most samples (chance is 1/8), far above the start.
    assert!(evaluation.accuracy > 0.9, "{evaluation:?}");
    assert!(evaluation.accuracy > untrained.accuracy + 0.5);
    assert!(metrics.mean_average_precision() > 0.95, "{metrics:?}");
    assert!(evaluation.loss < untrained.loss);
    // Independent sigmoids: sample 7 has all three classes, sample 0 none.
    let p = evaluation
        .probabilities
        .clone()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert!(p[21..24].iter().all(|&x| x > 0.5), "{:?}", &p[21..24]);
    assert!(p[0..3].iter().all(|&x| x < 0.5), "{:?}", &p[0..3]);
    // A batch mixing single- and multi-label samples is refused.
    let mut mixed = test.examples[..2].to_vec();
    mixed[1].label = Label::Single(0);
    let refs: Vec<&Example> = mixed.iter().collect();
    assert!(batcher.batch(&refs, &device).is_err());
}
