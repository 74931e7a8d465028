"""Conversion from original checkpoints: strict in both directions, no pickled code."""

import pickle

import pytest
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)

from encodec_hf import (
    EncodecConfig,
    EncodecModel,
)
from encodec_hf.convert_encodec import convert_checkpoint, convert_state_dict, rename_key
from encodec_hf.testing import original_layout, requires_original, tiny_model


def test_rename_key_examples():
    assert (
        rename_key("encoder.model.1.block.1.conv.conv.weight_g")
        == "encoder.layers.1.block.1.conv.parametrizations.weight.original0"
    )
    assert (
        rename_key("decoder.model.3.convtr.convtr.weight_v")
        == "decoder.layers.3.conv.parametrizations.weight.original1"
    )
    assert rename_key("decoder.model.3.convtr.norm.bias") == "decoder.layers.3.norm.bias"
    assert rename_key("encoder.model.0.conv.norm.weight") == "encoder.layers.0.norm.weight"
    assert rename_key("encoder.model.13.lstm.weight_ih_l1") == "encoder.layers.13.lstm.weight_ih_l1"
    assert rename_key("quantizer.vq.layers.7._codebook.embed_avg") == "quantizer.layers.7.codebook.embed_avg"


@pytest.mark.slow
def test_audiocraft_32khz_checkpoint(tmp_path):
    """audiocraft's compression_state_dict.bin: {'best_state': state dict, 'xp.cfg': yaml text, ...}."""
    torch.manual_seed(0)
    source = EncodecModel(EncodecConfig.from_preset("encodec_32khz")).eval()
    package = {
        "best_state": original_layout(source),
        "xp.cfg": "sample_rate: 32000\n",
        "version": "1.0.0",
        "exported": True,
    }
    torch.save(package, tmp_path / "compression_state_dict.bin")
    model = convert_checkpoint(tmp_path / "compression_state_dict.bin", "encodec_32khz", tmp_path / "hf")
    for key, value in source.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    loaded = EncodecModel.from_pretrained(tmp_path / "hf")
    assert loaded.config.sampling_rate == 32_000 and loaded.config.codebook_size == 2048
    assert sorted(p.name for p in (tmp_path / "hf").iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]


@requires_original()
def test_original_24khz_checkpoint_round_trip(converted):
    original, folder = converted["encodec_24khz"]
    model = EncodecModel.from_pretrained(folder)
    # every original tensor landed, unchanged, under its Hub name
    for key, value in original.state_dict().items():
        assert torch.equal(model.state_dict()[rename_key(key)], value), key


@pytest.mark.slow  # builds a full-size model
def test_strict_failures(tmp_path):
    config = EncodecConfig.from_preset("encodec_24khz")
    good = original_layout(EncodecModel(config))
    extra = dict(good, **{"encoder.model.99.conv.conv.bias": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"unused tensor 'encoder.model.99.conv.conv.bias'"):
        convert_state_dict(extra, config)
    missing = {k: v for k, v in good.items() if k != "decoder.model.15.conv.conv.bias"}
    with pytest.raises(ValueError, match=r"missing tensor 'decoder.layers.15.conv.bias'"):
        convert_state_dict(missing, config)
    wrong = dict(good, **{"quantizer.vq.layers.0._codebook.embed": torch.zeros(512, 128)})
    with pytest.raises(ValueError, match=r"shape mismatch for 'quantizer.vq.layers.0._codebook.embed'"):
        convert_state_dict(wrong, config)
    # a 24 kHz checkpoint is not a 48 kHz model
    torch.save(good, tmp_path / "e24.th")
    with pytest.raises(ValueError, match="is --model right"):
        convert_checkpoint(tmp_path / "e24.th", "encodec_48khz", tmp_path / "out")


class Exploit:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_refuses_pickled_code_and_foreign_files(tmp_path, capsys):
    with open(tmp_path / "evil.th", "wb") as handle:
        pickle.dump({"encoder.model.0.conv.conv.bias": Exploit()}, handle)
    with pytest.raises(ValueError, match="cannot read") as refused:
        convert_checkpoint(tmp_path / "evil.th", "encodec_24khz", tmp_path / "out")
    assert "pickled code ran" not in capsys.readouterr().out
    assert "weights_only=False" not in str(refused.value) and "never runs code" in str(refused.value)
    (tmp_path / "text.th").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        convert_checkpoint(tmp_path / "text.th", "encodec_24khz", tmp_path / "out")
    torch.save([1, 2, 3], tmp_path / "list.th")
    with pytest.raises(ValueError, match="no state dict"):
        convert_checkpoint(tmp_path / "list.th", "encodec_24khz", tmp_path / "out")
    with pytest.raises(ValueError, match="does not exist"):
        convert_checkpoint(tmp_path / "nope.th", "encodec_24khz", tmp_path / "out")
    with pytest.raises(ValueError, match="must be one of"):
        convert_checkpoint(tmp_path / "list.th", "encodec_16khz", tmp_path / "out")


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


@pytest.mark.slow  # builds a full-size model
def test_convert_writes_files_with_the_usual_permissions(tmp_path):
    import os

    from encodec_hf.convert_encodec import convert_checkpoint
    from encodec_hf.testing import original_layout

    model = EncodecModel(EncodecConfig.from_preset("encodec_32khz"))
    torch.save(original_layout(model), tmp_path / "checkpoint.th")
    umask = os.umask(0o022)
    try:
        convert_checkpoint(tmp_path / "checkpoint.th", "encodec_32khz", tmp_path / "out")
    finally:
        os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_convert_refuses_non_finite_weights():
    from encodec_hf.testing import original_layout

    model = tiny_model()
    source = original_layout(model)
    first = sorted(source)[0]
    source[first] = torch.full_like(source[first], float("inf"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        convert_state_dict(source, model.config)
