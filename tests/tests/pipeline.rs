//! The whole slice on a small generated dataset: real files written and
//! decoded, models trained, a checkpoint saved, reloaded and evaluated.

use burn::prelude::*;
use polymodal::demo::demo_features;
use polymodal::demo::synthetic::{self, DatasetSize};
use polymodal::train::{
    Batcher, RngGuard, TrainConfig, Trainer, evaluate, load_dataset, read_manifest,
};
use polymodal::{ClassifierConfig, FusionKind, Modality};
use polymodal::{ModelCard, ModelDir};
use polymodal_tests::scratch_dir;

#[test]
fn fused_model_trains_saves_and_reloads() {
    let dir = scratch_dir("pipeline");
    let data = synthetic::generate(
        &dir.join("data"),
        DatasetSize {
            train: 12,
            valid: 4,
            test: 6,
        },
        3,
    )
    .unwrap();
    let features = demo_features();
    let train_set = load_dataset(&read_manifest(&data.train).unwrap(), &features, None).unwrap();
    let valid_set = load_dataset(
        &read_manifest(&data.valid).unwrap(),
        &features,
        Some(&train_set.classes),
    )
    .unwrap();
    assert_eq!(train_set.examples.len(), 72);
    assert_eq!(train_set.classes.len(), 6);

    let modalities = vec![Modality::Image, Modality::Audio];
    let config = ClassifierConfig::new(modalities.clone(), FusionKind::Concat, 6).with_dim(16);
    let batcher = Batcher::new(modalities, features.clone(), None).unwrap();
    let model_dir = ModelDir(dir.join("model"));
    let card = ModelCard {
        classifier: config.clone(),
        features,
        classes: train_set.classes.clone(),
    };
    model_dir.write_metadata(&card, None).unwrap();
    let device = Device::flex();
    let train_device = device.clone().autodiff();
    let _rng = RngGuard::seeded(&train_device, 1);
    let trainer = Trainer {
        batcher: &batcher,
        config: TrainConfig {
            epochs: 3,
            batch_size: 16,
            learning_rate: 3e-3,
            seed: 1,
            ..TrainConfig::default()
        },
        device: train_device.clone(),
        output: Some(model_dir.0.clone()),
        resume: false,
    };
    let (model, report) = trainer
        .train(
            config.init(&train_device).unwrap(),
            &train_set,
            &valid_set,
            &mut |_| {},
        )
        .unwrap();
    assert_eq!(report.epochs.len(), 3);
    assert!(report.epochs.iter().all(|e| e.train_loss.is_finite()));
    assert!(
        report.epochs.last().unwrap().train_loss < report.epochs[0].train_loss,
        "loss did not fall: {:?}",
        report.epochs
    );
    assert!(model_dir.weights().is_file());

    // The checkpoint on disk is the best epoch's model: reloading it gives the same predictions.
    let best = evaluate(&model, &valid_set, &batcher, &device).unwrap();
    let (reloaded, _, reloaded_batcher) = model_dir.load(&device).unwrap();
    let again = evaluate(&reloaded, &valid_set, &reloaded_batcher, &device).unwrap();
    assert_eq!(best.accuracy, again.accuracy);
    let diff = (best.probabilities - again.probabilities)
        .abs()
        .max()
        .into_scalar::<f32>();
    assert!(diff < 1e-6, "reloaded model differs by {diff}");
    let _ = std::fs::remove_dir_all(dir);
}
