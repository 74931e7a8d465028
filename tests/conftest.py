"""Shared fixtures: tiny configurations for fast unit tests, and full-size models converted from EnCodec 0.1.1
with random weights for parity tests. Nothing here touches the network (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from reference import import_original_encodec, original_model  # noqa: E402

from encodec_hf import EncodecConfig, EncodecModel  # noqa: E402
from encodec_hf.convert_encodec import convert_checkpoint  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))


def tiny_config(**overrides) -> EncodecConfig:
    """A model small enough for many fast tests: hop 4, 16-entry codebooks, 0.4 kbps per codebook.

    With `chunked=True`: 400 Hz, chunks of 400 samples every 360 (10 % overlap), normalised, stereo, like a
    miniature 48 kHz model.
    """
    chunked = overrides.pop("chunked", False)
    values = dict(sampling_rate=400, hidden_size=8, codebook_dim=8, num_filters=4, upsampling_ratios=[2, 2],
                  codebook_size=16, target_bandwidths=[0.4, 0.8], num_lstm_layers=1)
    if chunked:
        values.update(audio_channels=2, normalize=True, chunk_length_s=1.0, overlap=0.1, use_causal_conv=False,
                      norm_type="time_group_norm")
    values.update(overrides)
    return EncodecConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> EncodecModel:
    torch.manual_seed(seed)
    model = EncodecModel(tiny_config(**overrides)).eval()
    with torch.no_grad():  # random GroupNorm affine parameters, so that they matter
        for name, param in model.named_parameters():
            if ".norm." in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def save_tiny_folder(folder, model: EncodecModel | None = None) -> Path:
    """A model folder as `encodec-hf convert` writes it (config, weights, preprocessor config)."""
    from encodec_hf import EncodecFeatureExtractor

    model = model if model is not None else tiny_model(chunked=True)
    model.save_pretrained(folder)
    EncodecFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    return Path(folder)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def requires_original():
    return pytest.mark.skipif(import_original_encodec() is None,
                              reason="EnCodec 0.1.1 is not installed (pip install --no-deps encodec==0.1.1)")


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """{name: (original model, Hub folder converted from its checkpoint)} for the 24 and 48 kHz models."""
    if import_original_encodec() is None:
        pytest.skip("EnCodec 0.1.1 is not installed (pip install --no-deps encodec==0.1.1)")
    out = {}
    for name in ("encodec_24khz", "encodec_48khz"):
        root = tmp_path_factory.mktemp(name)
        original = original_model(name)
        torch.save(original.state_dict(), root / f"{name}-random.th")
        convert_checkpoint(root / f"{name}-random.th", name, root / "hf")
        out[name] = (original, root / "hf")
    return out
