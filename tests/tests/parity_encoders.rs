//! Encoders with Hugging Face weights against the reference outputs of
//! transformers / sentence-transformers. Fixtures: `scripts/parity/encoders.py`
//! (tiny random models built from configs; the pretrained all-MiniLM-L6-v2 of
//! the shared folder).

use std::path::PathBuf;

use burn::prelude::*;
use polymodal::text::{Bert, BertPooling, SentenceEncoder};
use polymodal_tests::{Fixture, max_abs_diff, shared_dir};

/// Tolerance of the tiny random models (issue 5: 1e-4).
const TINY: f32 = 1e-4;
/// Tolerance of the sentence embeddings (issue 5: 1e-5).
const SENTENCE: f32 = 1e-5;

fn model_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/parity/encoders/{name}"))
}

fn io(name: &str) -> Fixture {
    Fixture::load(&format!("encoders/{name}/io.safetensors"))
}

fn int_tensor(fixture: &Fixture, name: &str, shape: [usize; 2], device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(fixture.i64(name), shape), device)
}

#[test]
fn bert_matches_transformers() {
    let device = Device::flex();
    let (model, report) = Bert::load(model_dir("bert"), BertPooling::Pooler, &device).unwrap();
    assert!(report.unexpected.is_empty(), "{report:?}");
    let io = io("bert");
    let (expected, shape) = io.f32("last_hidden_state");
    let dims = [shape[0], shape[1]];
    let ids = int_tensor(&io, "input_ids", dims, &device);
    let types = int_tensor(&io, "token_type_ids", dims, &device);
    let mask = int_tensor(&io, "attention_mask", dims, &device).equal_elem(1);
    let out = model.forward(ids, Some(types), mask).unwrap();
    // Every position, padding included (its queries still see the real keys).
    let ours = out.last_hidden_state.try_into_vec_as::<f32>().unwrap();
    let diff = max_abs_diff(&ours, &expected);
    eprintln!("BERT last_hidden_state: {diff:e}");
    assert!(diff < TINY, "last_hidden_state differs by {diff}");
    let pooled = out.pooler_output.unwrap().try_into_vec_as::<f32>().unwrap();
    let diff = max_abs_diff(&pooled, &io.f32("pooler_output").0);
    assert!(diff < TINY, "pooler_output differs by {diff}");
}

#[test]
fn a_transposed_or_missing_tensor_is_caught() {
    use polymodal::Weights;
    let dir = model_dir("bert");
    let config = polymodal::text::BertConfig::from_file(dir.join("config.json")).unwrap();
    // Reading the file under the wrong hidden size names the first bad shape.
    let mut wrong = config.clone();
    wrong.transformer.intermediate_size += 1;
    let weights = Weights::open(dir.join("model.safetensors")).unwrap();
    let error = Bert::from_weights(&wrong, weights, BertPooling::Mean, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("intermediate.dense.weight"), "{error}");
    // One layer more than the file has: all of its tensors are named.
    let mut deeper = config;
    deeper.transformer.num_hidden_layers += 1;
    let weights = Weights::open(dir.join("model.safetensors")).unwrap();
    let error = Bert::from_weights(&deeper, weights, BertPooling::Mean, &Device::flex())
        .err()
        .unwrap()
        .to_string();
    assert!(
        error.contains("16 tensor(s)")
            && error.contains("encoder.layer.2.attention.self.query.weight"),
        "{error}"
    );
}

#[test]
fn minilm_sentence_embeddings_match_sentence_transformers() {
    let Some(shared) = shared_dir() else {
        return;
    };
    let device = Device::flex();
    let (model, report) =
        SentenceEncoder::load(shared.join("models/all-MiniLM-L6-v2"), &device).unwrap();
    // The checkpoint's pooler is loaded (and unused by mean pooling).
    assert!(report.unexpected.is_empty(), "{report:?}");
    let text = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/parity/minilm.json"),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let sentences: Vec<String> = json["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect();
    let fixture = Fixture::load("minilm.safetensors");
    let (batched, shape) = fixture.f32("batched");
    assert_eq!(shape, [sentences.len(), 384]);
    let ours = model
        .embed(&sentences, &device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let diff = max_abs_diff(&ours, &batched);
    eprintln!("MiniLM batched: max |ours - sentence-transformers| = {diff:e}");
    assert!(diff <= SENTENCE, "batched embeddings differ by {diff}");
    let (single, _) = fixture.f32("single");
    for (i, sentence) in sentences.iter().enumerate() {
        let one = model
            .embed(&[sentence], &device)
            .unwrap()
            .try_into_vec_as::<f32>()
            .unwrap();
        let diff = max_abs_diff(&one, &single[i * 384..(i + 1) * 384]);
        eprintln!("MiniLM sentence {i} alone: {diff:e}");
        assert!(diff <= SENTENCE, "sentence {i} alone differs by {diff}");
    }
}

#[test]
fn lstm_and_gru_match_pytorch_on_packed_sequences() {
    use polymodal::core::weights::Init;
    use polymodal::core::{RecurrentConfig, RnnKind, Weights};
    let device = Device::flex();
    let io = io("rnn");
    let (x, shape) = io.f32("input");
    let input = Tensor::<3>::from_data(TensorData::new(x, [shape[0], shape[1], shape[2]]), &device);
    let mask = int_tensor(&io, "mask", [shape[0], shape[1]], &device).equal_elem(1);
    for (name, kind) in [("lstm", RnnKind::Lstm), ("gru", RnnKind::Gru)] {
        let weights = Weights::open(model_dir("rnn").join("model.safetensors")).unwrap();
        let rnn = RecurrentConfig::new(5, 6)
            .with_kind(kind)
            .with_layers(2)
            .with_bidirectional(true)
            .build(&Init::from(&weights).pp(name), &device)
            .unwrap();
        let out = rnn.forward(input.clone(), mask.clone());
        let sequence = out.sequence.try_into_vec_as::<f32>().unwrap();
        let diff = max_abs_diff(&sequence, &io.f32(&format!("{name}.output")).0);
        assert!(diff < TINY, "{name} outputs differ by {diff}");
        let last = out.last.try_into_vec_as::<f32>().unwrap();
        let diff = max_abs_diff(&last, &io.f32(&format!("{name}.last")).0);
        assert!(diff < TINY, "{name} final states differ by {diff}");
        let leftover = weights.finish().unwrap().unexpected;
        assert!(
            leftover.iter().all(|n| !n.starts_with(name)),
            "{leftover:?}"
        );
    }
}

fn float_tensor<const D: usize>(fixture: &Fixture, name: &str, device: &Device) -> Tensor<D> {
    let (values, shape) = fixture.f32(name);
    let shape: [usize; D] = shape.try_into().expect("fixture rank");
    Tensor::from_data(TensorData::new(values, shape), device)
}

#[test]
fn vit_matches_transformers() {
    use polymodal::image::Vit;
    let device = Device::flex();
    let (model, report) = Vit::load(model_dir("vit"), &device).unwrap();
    assert!(report.unexpected.is_empty(), "{report:?}");
    let io = io("vit");
    let out = model
        .forward(float_tensor(&io, "pixel_values", &device))
        .unwrap();
    let ours = out.last_hidden_state.try_into_vec_as::<f32>().unwrap();
    let diff = max_abs_diff(&ours, &io.f32("last_hidden_state").0);
    assert!(diff < TINY, "last_hidden_state differs by {diff}");
    let pooled = out.pooler_output.unwrap().try_into_vec_as::<f32>().unwrap();
    let diff = max_abs_diff(&pooled, &io.f32("pooler_output").0);
    assert!(diff < TINY, "pooler_output differs by {diff}");
    let wrong = Tensor::<4>::zeros([1, 3, 32, 32], &device);
    assert!(model.forward(wrong).is_err());
}

#[test]
fn resnet_matches_torchvision() {
    use polymodal::Encoder;
    use polymodal::image::{ResNet, ResNetConfig};
    let device = Device::flex();
    let io = io("resnet");
    let images = float_tensor::<4>(&io, "images", &device);
    for (name, bottleneck) in [("basic", false), ("bottleneck", true)] {
        let config = ResNetConfig {
            blocks: [1, 1, 1, 1],
            bottleneck,
            base_width: 4,
        };
        let path = model_dir("resnet").join(format!("{name}.safetensors"));
        let (model, report) = ResNet::load(&config, path, &device).unwrap();
        assert_eq!(report.unexpected, vec!["fc.bias", "fc.weight"], "{name}");
        let features = model
            .features(images.clone())
            .try_into_vec_as::<f32>()
            .unwrap();
        let diff = max_abs_diff(&features, &io.f32(&format!("{name}.features")).0);
        assert!(diff < TINY, "{name} features differ by {diff}");
        let pooled = model
            .encode(&images)
            .unwrap()
            .pooled
            .try_into_vec_as::<f32>()
            .unwrap();
        let diff = max_abs_diff(&pooled, &io.f32(&format!("{name}.pooled")).0);
        assert!(diff < TINY, "{name} pooled differs by {diff}");
    }
}

#[test]
fn clip_matches_transformers_with_legacy_and_real_eos() {
    use polymodal::text::Clip;
    let device = Device::flex();
    for name in ["clip", "clip-eos"] {
        let (model, report) = Clip::load(model_dir(name), &device).unwrap();
        assert!(report.unexpected.is_empty(), "{name}: {report:?}");
        let io = io(name);
        let dims = [3, 8];
        let ids = int_tensor(&io, "input_ids", dims, &device);
        let mask = int_tensor(&io, "attention_mask", dims, &device).equal_elem(1);
        let out = model
            .forward(ids, mask, float_tensor(&io, "pixel_values", &device))
            .unwrap();
        for (key, ours) in [
            ("logits_per_text", out.logits_per_text),
            ("text_embeds", out.text_embeds),
            ("image_embeds", out.image_embeds),
        ] {
            let diff = max_abs_diff(&ours.try_into_vec_as::<f32>().unwrap(), &io.f32(key).0);
            assert!(diff < TINY, "{name}: {key} differs by {diff}");
        }
    }
}

#[test]
fn ast_matches_transformers() {
    use polymodal::Encoder;
    use polymodal::audio::Ast;
    let device = Device::flex();
    let (model, report) = Ast::load(model_dir("ast"), &device).unwrap();
    assert!(report.unexpected.is_empty(), "{report:?}");
    let io = io("ast");
    let input = float_tensor::<3>(&io, "input_values", &device);
    let embeddings = model.encode(&input).unwrap();
    let ours = embeddings.sequence.try_into_vec_as::<f32>().unwrap();
    let diff = max_abs_diff(&ours, &io.f32("last_hidden_state").0);
    assert!(diff < TINY, "last_hidden_state differs by {diff}");
    let pooled = embeddings.pooled.try_into_vec_as::<f32>().unwrap();
    let diff = max_abs_diff(&pooled, &io.f32("pooler_output").0);
    assert!(diff < TINY, "pooler_output differs by {diff}");
    assert!(
        model
            .encode(&Tensor::<3>::zeros([1, 11, 10], &device))
            .is_err()
    );
}

#[test]
fn whisper_encoder_matches_transformers() {
    use polymodal::audio::WhisperEncoder;
    let device = Device::flex();
    let (model, report) = WhisperEncoder::load(model_dir("whisper"), &device).unwrap();
    // Only the decoder is left over.
    assert!(
        !report.unexpected.is_empty()
            && report.unexpected.iter().all(|n| n.starts_with("decoder.")),
        "{report:?}"
    );
    let io = io("whisper");
    let out = model
        .forward(float_tensor(&io, "input_features", &device))
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let diff = max_abs_diff(&out, &io.f32("last_hidden_state").0);
    assert!(diff < TINY, "last_hidden_state differs by {diff}");
}

/// The pretrained encoders' embeddings (different widths and sequence
/// lengths) go into every feature-level and joint fusion method.
#[test]
fn pretrained_encoders_plug_into_every_fusion_method() {
    use polymodal::audio::{Ast, WhisperEncoder};
    use polymodal::image::{ResNet, ResNetConfig, Vit};
    use polymodal::{Encoder, FusionKind, Modality, ModalityEmbeddings};
    let device = Device::flex();
    let present = || Tensor::<1>::ones([2], &device).equal_elem(1.0);
    let part = |modality, embeddings| ModalityEmbeddings {
        modality,
        embeddings,
        present: present(),
    };
    let (vit, _) = Vit::load(model_dir("vit"), &device).unwrap();
    let config = ResNetConfig {
        blocks: [1, 1, 1, 1],
        bottleneck: true,
        base_width: 4,
    };
    let (resnet, _) = ResNet::load(
        &config,
        model_dir("resnet").join("bottleneck.safetensors"),
        &device,
    )
    .unwrap();
    let (ast, _) = Ast::load(model_dir("ast"), &device).unwrap();
    let (whisper, _) = WhisperEncoder::load(model_dir("whisper"), &device).unwrap();
    // The modality tags only name the inputs: fusion reads the embeddings.
    let inputs = [
        part(
            Modality::Image,
            vit.encode(&float_tensor(&io("vit"), "pixel_values", &device))
                .unwrap(),
        ),
        part(
            Modality::Video,
            resnet
                .encode(&float_tensor(&io("resnet"), "images", &device))
                .unwrap(),
        ),
        part(
            Modality::Audio,
            ast.encode(&float_tensor(&io("ast"), "input_values", &device))
                .unwrap(),
        ),
        part(
            Modality::Text,
            whisper
                .encode(&float_tensor(&io("whisper"), "input_features", &device))
                .unwrap(),
        ),
    ];
    let dims: Vec<usize> = inputs
        .iter()
        .map(|p| p.embeddings.pooled.dims()[1])
        .collect();
    assert_eq!(dims, vec![32, 128, 32, 32]);
    for kind in FusionKind::ALL.into_iter().skip(1) {
        // Tensor fusion multiplies the widths: keep it to two modalities.
        let n = if kind == FusionKind::Tensor { 2 } else { 4 };
        let layer = kind
            .layer(dims[..n].to_vec(), 16, &device)
            .unwrap()
            .unwrap();
        let fused = layer.fusion().fuse(&inputs[..n]).unwrap();
        assert_eq!(fused.dims(), [2, layer.fusion().output_dim()], "{kind}");
        let values = fused.try_into_vec_as::<f32>().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{kind}");
    }
}

/// Most ViT checkpoints on the Hub predate transformers 5 and name the
/// layers `encoder.layer.{i}.attention.attention.query`, …: the fixture's
/// tensors renamed to that layout load to the same outputs.
#[test]
fn vit_loads_the_pre_transformers_5_layout_too() {
    use polymodal::image::Vit;
    let source = model_dir("vit");
    let bytes = std::fs::read(source.join("model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let classic = |name: &str| -> String {
        let Some(rest) = name.strip_prefix("layers.") else {
            return name.to_string();
        };
        let (index, part) = rest.split_once('.').unwrap();
        let part = match part.rsplit_once('.').unwrap() {
            ("attention.q_proj", p) => format!("attention.attention.query.{p}"),
            ("attention.k_proj", p) => format!("attention.attention.key.{p}"),
            ("attention.v_proj", p) => format!("attention.attention.value.{p}"),
            ("attention.o_proj", p) => format!("attention.output.dense.{p}"),
            ("mlp.fc1", p) => format!("intermediate.dense.{p}"),
            ("mlp.fc2", p) => format!("output.dense.{p}"),
            (norm, p) => format!("{norm}.{p}"),
        };
        format!("encoder.layer.{index}.{part}")
    };
    let renamed: Vec<(String, safetensors::tensor::TensorView)> = file
        .tensors()
        .into_iter()
        .map(|(name, view)| (classic(&name), view))
        .collect();
    assert!(
        renamed
            .iter()
            .any(|(n, _)| n == "encoder.layer.1.attention.attention.query.weight")
    );
    let dir = polymodal_tests::scratch_dir("vit-classic");
    std::fs::write(
        dir.join("model.safetensors"),
        safetensors::serialize(renamed, None).unwrap(),
    )
    .unwrap();
    std::fs::copy(source.join("config.json"), dir.join("config.json")).unwrap();
    let device = Device::flex();
    let (model, report) = Vit::load(&dir, &device).unwrap();
    assert!(report.unexpected.is_empty(), "{report:?}");
    let io = io("vit");
    let out = model
        .forward(float_tensor(&io, "pixel_values", &device))
        .unwrap()
        .last_hidden_state
        .try_into_vec_as::<f32>()
        .unwrap();
    let diff = max_abs_diff(&out, &io.f32("last_hidden_state").0);
    assert!(diff < TINY, "classic layout differs by {diff}");
}

/// The presets have torchvision's structure: their parameter counts equal
/// torchvision's `resnet18/34/50` without the 1000-class `fc`
/// (11,689,512 − 513,000; 21,797,672 − 513,000; 25,557,032 − 2,049,000), plus
/// the batch norms' running mean and variance, which Burn counts and PyTorch
/// keeps as buffers (4,800 / 8,512 / 26,560 channels of batch norm).
#[test]
fn resnet_presets_have_torchvision_parameter_counts() {
    use burn::module::Module;
    use polymodal::image::ResNetConfig;
    let device = Device::flex();
    for (config, torchvision, norm_channels) in [
        (ResNetConfig::resnet18(), 11_176_512, 4_800),
        (ResNetConfig::resnet34(), 21_284_672, 8_512),
        (ResNetConfig::resnet50(), 23_508_032, 26_560),
    ] {
        let model = config.init(&device).unwrap();
        assert_eq!(
            model.num_params(),
            torchvision + 2 * norm_channels,
            "{config:?}"
        );
        assert_eq!(config.dim(), if config.bottleneck { 2048 } else { 512 });
    }
}
