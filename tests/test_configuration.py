import json
from importlib import resources

import pytest
import transformers

from encodec_hf import (
    EncodecConfig,
)
from encodec_hf.configuration_encodec import PRESETS
from encodec_hf.testing import tiny_config


@pytest.mark.parametrize("name", PRESETS)
def test_presets_are_transformers_configs(name, tmp_path):
    """Each preset file loads in transformers' EncodecConfig with the same field values, and back."""
    ours = EncodecConfig.from_preset(name)
    ours.save_pretrained(tmp_path)
    theirs = transformers.EncodecConfig.from_pretrained(tmp_path)
    data = json.loads(resources.files("encodec_hf").joinpath("configs", f"{name}.json").read_text())
    for key, value in data.items():
        if key in ("architectures", "model_type"):
            continue
        assert getattr(theirs, key) == getattr(ours, key) == (list(value) if isinstance(value, list) else value), key
    theirs.save_pretrained(tmp_path / "back")
    again = EncodecConfig.from_pretrained(tmp_path / "back")
    assert again.to_dict()["upsampling_ratios"] == ours.to_dict()["upsampling_ratios"]
    for prop in ("chunk_length", "chunk_stride", "hop_length", "frame_rate", "num_quantizers"):
        assert getattr(again, prop) == getattr(ours, prop) == getattr(theirs, prop), prop


@pytest.mark.parametrize(
    "name, frame_rate, quantizers, chunk_length, chunk_stride",
    [
        ("encodec_24khz", 75, 32, None, None),
        ("encodec_32khz", 50, 4, None, None),
        ("encodec_48khz", 150, 16, 48_000, 47_520),
    ],
)
def test_derived_values(name, frame_rate, quantizers, chunk_length, chunk_stride):
    config = EncodecConfig.from_preset(name)
    assert (config.frame_rate, config.num_quantizers) == (frame_rate, quantizers)
    assert (config.chunk_length, config.chunk_stride) == (chunk_length, chunk_stride)


@pytest.mark.parametrize(
    "name, bandwidths, codebooks",
    [
        ("encodec_24khz", [1.5, 3, 6, 12, 24], [2, 4, 8, 16, 32]),
        ("encodec_48khz", [3, 6, 12, 24], [2, 4, 8, 16]),
        ("encodec_32khz", [2.2], [4]),
    ],
)
def test_codebooks_per_bandwidth(name, bandwidths, codebooks):
    config = EncodecConfig.from_preset(name)
    assert [config.num_quantizers_for_bandwidth(b) for b in bandwidths] == codebooks


def test_properties_follow_edits():
    config = EncodecConfig.from_preset("encodec_48khz")
    config.chunk_length_s = 2.0
    assert (config.chunk_length, config.chunk_stride) == (96_000, 95_040)


def test_check_bandwidth_lists_options():
    config = EncodecConfig.from_preset("encodec_48khz")
    assert config.check_bandwidth(6) == 6.0
    with pytest.raises(ValueError, match=r"bandwidth 1.5 is not one of this model's bandwidths: 3, 6, 12, 24"):
        config.check_bandwidth(1.5)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"sampling_rat": 24000}, "unknown setting 'sampling_rat'; did you mean 'sampling_rate'"),
        ({"codebok_size": 512}, "unknown setting 'codebok_size'; did you mean 'codebook_size'"),
        ({"normalize": "yes"}, "normalize must be true or false, got 'yes'"),
        ({"norm_type": "batch_norm"}, "norm_type"),
        ({"audio_channels": 3}, "audio_channels"),
        ({"sampling_rate": 0}, "sampling_rate"),
        ({"sampling_rate": "24k"}, "sampling_rate"),
        ({"codebook_size": 1000}, "power of 2"),
        ({"target_bandwidths": []}, "target_bandwidths"),
        ({"target_bandwidths": [6.0, 3.0]}, "increasing"),
        ({"chunk_length_s": 1.0}, "together"),
        ({"chunk_length_s": 1.0, "overlap": 1.5}, "overlap"),
        ({"norm_type": "time_group_norm", "use_causal_conv": True}, "causal"),
        ({"use_causal_conv": False, "trim_right_ratio": 0.5}, "trim_right_ratio"),
        ({"upsampling_ratios": [8, 0]}, "upsampling_ratios"),
        ({"model_type": "wav2vec2"}, "model_type"),
    ],
)
def test_invalid_settings_raise_value_error(settings, message):
    with pytest.raises(ValueError, match=message):
        EncodecConfig(**settings)


def test_unknown_preset():
    with pytest.raises(ValueError, match="encodec_24khz, encodec_32khz, encodec_48khz"):
        EncodecConfig.from_preset("encodec_16khz")


def test_unknown_key_in_config_file(tmp_path):
    data = EncodecConfig().to_dict()
    data["hiden_size"] = 64
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="hiden_size"):
        EncodecConfig.from_pretrained(tmp_path)


NON_CAUSAL = dict(use_causal_conv=False, norm_type="time_group_norm", audio_channels=2, normalize=True)


@pytest.mark.parametrize(
    "settings, field",
    [
        (dict(sampling_rate=1), "sampling_rate"),
        (dict(sampling_rate=10**7), "sampling_rate"),
        (dict(chunk_length_s=1.0, overlap=0.9999, **NON_CAUSAL), "overlap"),
        (dict(chunk_length_s=float("nan"), overlap=0.01, **NON_CAUSAL), "chunk_length_s"),
        (dict(chunk_length_s=1.0, overlap=float("inf"), **NON_CAUSAL), "overlap"),
        (dict(chunk_length_s=0.001, overlap=0.01, **NON_CAUSAL), "chunk_length_s"),  # 24 samples: under a frame
        (dict(target_bandwidths=[1e8]), "target_bandwidths"),
        (dict(target_bandwidths=[float("nan")]), "target_bandwidths"),
        (dict(num_residual_layers=100_000), "num_residual_layers"),
        (dict(num_lstm_layers=100_000), "num_lstm_layers"),
        (dict(upsampling_ratios=[2] * 1000), "upsampling_ratios"),
        (dict(codebook_size=1 << 30), "codebook_size"),
    ],
)
def test_values_are_bounded_with_the_field_named(settings, field):
    with pytest.raises(ValueError, match=field):
        EncodecConfig(**settings)


def test_language_model_config_is_bounded():
    from encodec_hf import EncodecLanguageModelConfig

    with pytest.raises(ValueError, match="num_layers must be at most 64"):
        EncodecLanguageModelConfig(num_layers=100_000)
    with pytest.raises(ValueError, match="hidden_scale must be"):
        EncodecLanguageModelConfig(hidden_scale=float("nan"))
    for name in ("encodec_24khz", "encodec_48khz"):
        EncodecLanguageModelConfig.for_model(EncodecConfig.from_preset(name))  # the original's fit


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


@pytest.mark.parametrize(
    "settings, field",
    [
        (dict(sampling_rate=1), "sampling_rate"),
        (dict(overlap=0.9999), "overlap"),
        (dict(target_bandwidths=[float("nan")]), "target_bandwidths"),
        (dict(num_lstm_layers=100_000), "num_lstm_layers"),
    ],
)
def test_config_values_are_bounded_with_the_field_named(settings, field):
    """sampling_rate 1, overlap 0.9999, 1e5 layers hung the loader or ran out of memory; NaN raised without the field's
    name."""
    with pytest.raises(ValueError, match=field):
        tiny_config(**settings)
