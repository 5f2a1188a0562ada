"""Encoder parity fixtures: tiny randomly initialised Hugging Face models
(built from configs, seeded) with their inputs and outputs, and
sentence-transformers embeddings of the pretrained all-MiniLM-L6-v2 in
../shared.

Run by hand (not in CI), from the repository root, with torch installed:
    ../pyref/bin/pip install -r scripts/parity/requirements-torch.txt
    ../pyref/bin/python scripts/parity/encoders.py [SHARED_DIR]
Writes tests/fixtures/parity/encoders/<model>/{config.json,model.safetensors,
io.safetensors} and tests/fixtures/parity/minilm.{json,safetensors}, read by
tests/tests/parity_encoders.rs.
"""
import json
import pathlib
import sys

import numpy as np
import torch
from safetensors.numpy import save_file
from safetensors.torch import save_model

shared = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "../shared")
out_dir = pathlib.Path("tests/fixtures/parity")
torch.manual_seed(0)
torch.set_grad_enabled(False)


def save(name, model, config, io):
    """The model folder (HF layout) and its inputs/outputs as float32/int64."""
    folder = out_dir / "encoders" / name
    folder.mkdir(parents=True, exist_ok=True)
    config.to_json_file(folder / "config.json")
    save_model(model, str(folder / "model.safetensors"))
    arrays = {}
    for key, value in io.items():
        value = value.detach().cpu().numpy()
        arrays[key] = value.astype(np.int64 if value.dtype.kind in "iub" else np.float32)
    save_file(arrays, str(folder / "io.safetensors"))


def bert():
    from transformers import BertConfig, BertModel

    config = BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=64,
        type_vocab_size=2,
        hidden_act="gelu",
    )
    model = BertModel(config).eval()
    ids = torch.randint(1, 99, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0  # padding at the end of the second sample
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    types = torch.zeros(3, 9, dtype=torch.long)
    types[0, 5:] = 1  # a sentence pair in the first sample
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=types)
    save("bert", model, config, {
        "input_ids": ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "last_hidden_state": out.last_hidden_state,
        "pooler_output": out.pooler_output,
    })


def vit():
    from transformers import ViTConfig, ViTModel

    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=16,
        patch_size=4,
        num_channels=3,
    )
    model = ViTModel(config).eval()
    pixels = torch.randn(2, 3, 16, 16)
    out = model(pixel_values=pixels)
    save("vit", model, config, {
        "pixel_values": pixels,
        "last_hidden_state": out.last_hidden_state,
        "pooler_output": out.pooler_output,
    })


def clip():
    """Two tiny CLIPs: the legacy config (eos_token_id 2: the pooled token is
    the highest id) and one with a real end-of-text id."""
    from transformers import CLIPConfig, CLIPModel

    for name, eos in [("clip", 2), ("clip-eos", 97)]:
        config = CLIPConfig(
            text_config=dict(vocab_size=99, hidden_size=32, intermediate_size=37,
                             num_hidden_layers=2, num_attention_heads=4,
                             max_position_embeddings=16, eos_token_id=eos,
                             bos_token_id=0, pad_token_id=1),
            vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                               num_attention_heads=4, image_size=16, patch_size=4),
            projection_dim=24,
        )
        model = CLIPModel(config).eval()
        with torch.no_grad():
            model.logit_scale.fill_(2.0)
        ids = torch.randint(3, 90, (3, 8))
        mask = torch.ones(3, 8, dtype=torch.long)
        lengths = [8, 5, 3]
        for row, n in enumerate(lengths):
            ids[row, n - 1] = 98 if eos == 2 else eos  # end of text
            ids[row, n:] = 1  # padding
            mask[row, n:] = 0
        if eos != 2:
            ids[0, 2] = 98  # a high id that is not the end of text
        pixels = torch.randn(2, 3, 16, 16)
        out = model(input_ids=ids, attention_mask=mask, pixel_values=pixels)
        save(name, model, config, {
            "input_ids": ids,
            "attention_mask": mask,
            "pixel_values": pixels,
            "logits_per_text": out.logits_per_text,
            "text_embeds": out.text_embeds,
            "image_embeds": out.image_embeds,
        })


def ast():
    from transformers import ASTConfig, ASTModel

    config = ASTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=37, patch_size=4, frequency_stride=3, time_stride=2,
                       max_length=12, num_mel_bins=10)
    model = ASTModel(config).eval()
    values = torch.randn(2, 12, 10)
    out = model(input_values=values)
    save("ast", model, config, {
        "input_values": values,
        "last_hidden_state": out.last_hidden_state,
        "pooler_output": out.pooler_output,
    })


def whisper():
    from transformers import WhisperConfig, WhisperModel

    config = WhisperConfig(vocab_size=99, d_model=32, encoder_layers=2, encoder_attention_heads=4,
                           encoder_ffn_dim=37, decoder_layers=1, decoder_attention_heads=4,
                           decoder_ffn_dim=37, num_mel_bins=8, max_source_positions=16,
                           max_target_positions=16, pad_token_id=1, bos_token_id=2,
                           eos_token_id=3, decoder_start_token_id=2)
    model = WhisperModel(config).eval()
    features = torch.randn(2, 8, 32)
    out = model.encoder(input_features=features)
    save("whisper", model, config, {
        "input_features": features,
        "last_hidden_state": out.last_hidden_state,
    })


def resnet():
    """torchvision's ResNet code (its BasicBlock / Bottleneck and
    _make_layer) at a base width of 4 instead of 64, one block per stage,
    so the fixture stays small; batch norm statistics are randomised so
    that inference-mode normalisation is exercised."""
    from safetensors.torch import save_file as save_torch
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    folder = out_dir / "encoders" / "resnet"
    folder.mkdir(parents=True, exist_ok=True)
    images = torch.randn(2, 3, 64, 64)
    io = {"images": images}
    for name, block in [("basic", BasicBlock), ("bottleneck", Bottleneck)]:
        model = ResNet(block, [1, 1, 1, 1])
        model.inplanes = 4
        model.conv1 = torch.nn.Conv2d(3, 4, kernel_size=7, stride=2, padding=3, bias=False)
        model.bn1 = torch.nn.BatchNorm2d(4)
        model.layer1 = model._make_layer(block, 4, 1)
        model.layer2 = model._make_layer(block, 8, 1, stride=2)
        model.layer3 = model._make_layer(block, 16, 1, stride=2)
        model.layer4 = model._make_layer(block, 32, 1, stride=2)
        model.fc = torch.nn.Linear(32 * block.expansion, 10)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.uniform_(-0.2, 0.2)
        model.eval()
        trunk = torch.nn.Sequential(*list(model.children())[:-2])
        features = trunk(images)
        io[f"{name}.features"] = features
        io[f"{name}.pooled"] = features.mean(dim=(2, 3))
        save_torch({k: v.contiguous() for k, v in model.state_dict().items()},
                   str(folder / f"{name}.safetensors"))
    save_file({k: v.detach().numpy().astype(np.float32) for k, v in io.items()},
              str(folder / "io.safetensors"))


def rnn():
    """nn.LSTM and nn.GRU (2 layers, bidirectional, batch_first) on a packed
    batch of lengths 7, 4, 1; outputs padded with zeros, and h_n."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    lengths = torch.tensor([7, 4, 1])
    x = torch.randn(3, 7, 5)
    mask = torch.arange(7)[None, :] < lengths[:, None]
    x[~mask] = 0.0
    folder = out_dir / "encoders" / "rnn"
    folder.mkdir(parents=True, exist_ok=True)
    weights, io = {}, {"input": x, "mask": mask.long()}
    for name, cls in [("lstm", torch.nn.LSTM), ("gru", torch.nn.GRU)]:
        module = cls(5, 6, num_layers=2, bidirectional=True, batch_first=True).eval()
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        output, state = module(packed)
        output, _ = pad_packed_sequence(output, batch_first=True, total_length=7)
        h_n = state[0] if name == "lstm" else state
        io[f"{name}.output"] = output
        # The last layer's forward and backward states, concatenated.
        io[f"{name}.last"] = torch.cat([h_n[-2], h_n[-1]], dim=1)
        for key, value in module.state_dict().items():
            weights[f"{name}.{key}"] = value.contiguous()
    from safetensors.torch import save_file as save_torch

    save_torch(weights, str(folder / "model.safetensors"))
    save_file({k: v.detach().numpy().astype(np.int64 if v.dtype == torch.long else np.float32)
               for k, v in io.items()}, str(folder / "io.safetensors"))


SENTENCES = [
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Two dogs play in the snow.",
    "The quick brown fox jumps over the lazy dog",
    "Crème brûlée, naïve café and Ångström units: déjà vu!",
    "東京は日本の首都です。",
    "Visit https://example.com/path?q=1&lang=en or mail someone@example.org",
    "I love this 😀 and that",
    "",
    "polymodal is a Rust framework for multimodal machine learning " * 12,
]


def minilm():
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(shared / "models/all-MiniLM-L6-v2"), device="cpu")
    batched = model.encode(SENTENCES, batch_size=len(SENTENCES), convert_to_numpy=True)
    single = np.stack([model.encode([s], convert_to_numpy=True)[0] for s in SENTENCES])
    save_file(
        {"batched": batched.astype(np.float32), "single": single.astype(np.float32)},
        str(out_dir / "minilm.safetensors"),
    )
    (out_dir / "minilm.json").write_text(json.dumps({"sentences": SENTENCES}, ensure_ascii=False, indent=1))


bert()
vit()
clip()
ast()
whisper()
resnet()
rnn()
minilm()
