"""Silent mistakes made loud (issue: what a new user trips over): implausible rates, integer PCM stored as float,
rate-less arrays, decode without a padding mask, non-finite scales from finite input, damaged model folders."""

import logging

import datasets
import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)
from safetensors.torch import load_file, save_file

from encodec_hf import EncodecConfig, EncodecFeatureExtractor, EncodecModel, decompress, tokenize_dataset
from encodec_hf.convert_encodec import convert_state_dict
from encodec_hf.testing import save_tiny_folder, tiny_model


@pytest.fixture(scope="module")
def chunked():
    return tiny_model(chunked=True)


@pytest.fixture(scope="module")
def extractor(chunked):
    return EncodecFeatureExtractor.from_model_config(chunked.config)


@pytest.mark.parametrize(
    "rate, message",
    [
        (16, r"16 Hz is outside 1,000 to 384,000 Hz \(did you mean 16,000 Hz\?\)"),
        (500_000, "outside"),
        (True, "must be an integer"),
        (16_000.0, "must be an integer"),
    ],
)
def test_implausible_rates_are_refused_before_any_allocation(rate, message):
    extractor = EncodecFeatureExtractor.from_model_config(EncodecConfig.from_preset("encodec_48khz"))
    with pytest.raises(ValueError, match=message):
        extractor(np.zeros(48_000, dtype=np.float32), sampling_rate=rate)


def test_test_models_below_1_khz_take_their_own_rate(extractor):
    """The lower bound is min(1,000 Hz, the model's rate): a 400 Hz test model takes 400 Hz and more."""
    assert extractor(np.zeros(400, dtype=np.float32), sampling_rate=400)["input_values"].shape == (1, 2, 400)
    with pytest.raises(ValueError, match="outside 400 to 384,000 Hz"):
        extractor(np.zeros(400, dtype=np.float32), sampling_rate=399)


def test_integer_pcm_stored_as_float_is_refused(extractor):
    loud = (np.sin(np.arange(4_000) / 10) * 29_797).astype(np.float32)
    with pytest.raises(ValueError, match="peaks at 29,797.*divide by 32768"):
        extractor(loud, sampling_rate=400)
    as_int16 = extractor(loud.astype(np.int16), sampling_rate=400)["input_values"]  # the integer array itself
    assert float(np.abs(as_int16).max()) < 1


def test_the_missing_rate_warning_is_true(extractor, caplog):
    clips = [{"array": np.zeros(400, dtype=np.float32), "sampling_rate": 800}]
    with caplog.at_level(logging.WARNING):
        extractor(clips)  # every clip carries its rate: nothing is assumed
    assert "No sampling_rate" not in caplog.text
    with caplog.at_level(logging.WARNING):
        extractor(np.zeros(400, dtype=np.float32))
    assert "No sampling_rate passed" in caplog.text


def test_rate_less_arrays_are_refused_by_tokenize_dataset(chunked, extractor):
    dataset = datasets.Dataset.from_dict({"audio": [np.zeros(300, dtype=np.float32)]})
    with pytest.raises(ValueError, match="plain array with no rate: pass sampling_rate_column"):
        tokenize_dataset(dataset, chunked, extractor, 0.8)


def test_decode_without_padding_mask_warns_on_chunked_models(chunked, caplog):
    logging.Logger.warning_once.cache_clear()  # transformers' once-only warnings: forget earlier tests' calls
    x = torch.randn(1, 2, 1000) * 0.3
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        enc = chunked.encode(x, bandwidth=0.8)
        audio = chunked.decode(enc.audio_codes, enc.audio_scales).audio_values
    assert "decode without padding_mask returns (num_chunks - 1) x chunk_stride" in caplog.text
    assert audio.shape[-1] > 1000  # what the warning says: more than was encoded


def test_finite_input_gives_finite_scales_and_audio(chunked):
    x = torch.randn(1, 2, 1000) * 0.3
    x[0, 0, 123] = 1e20
    mask = torch.ones(1, 1000)
    with torch.no_grad():
        enc = chunked.encode(x, mask, bandwidth=0.8)
        audio = chunked.decode(enc.audio_codes, enc.audio_scales, mask).audio_values
    assert all(torch.isfinite(s).all() for s in enc.audio_scales)
    assert float(enc.audio_scales[0].max()) == pytest.approx(1e6)  # clamped at MAX_SCALE
    assert torch.isfinite(audio).all()
    normal = torch.randn(1, 2, 1000) * 0.3  # ordinary audio: scales unchanged by the clamp
    with torch.no_grad():
        scales = chunked.encode(normal, bandwidth=0.8).audio_scales
    expected = normal[..., :400].mean(dim=1).pow(2).mean().sqrt() + 1e-8
    assert torch.equal(scales[0].reshape(()), expected)


def test_a_file_of_huge_samples_reads_back(chunked):
    audio = (np.random.default_rng(0).standard_normal((2, 900)) * 0.2).astype(np.float32)
    audio[1, 10] = 1e20
    x = torch.from_numpy(audio)[None]
    mask = torch.ones(1, 900)
    with torch.no_grad():
        enc = chunked.encode(x, mask, bandwidth=0.8)
    from encodec_hf.ecdc import compress_codes

    data = compress_codes(chunked, enc.audio_codes, enc.audio_scales, 900)
    decoded, _ = decompress(data, chunked)
    assert np.isfinite(decoded).all()


@pytest.mark.parametrize("damage", ["missing", "extra", "nan"])
def test_damaged_folders_fail_the_load(tmp_path, damage):
    folder = save_tiny_folder(tmp_path / "model", tiny_model())
    tensors = load_file(folder / "model.safetensors")
    name = sorted(k for k in tensors if k.startswith("decoder."))[0]
    if damage == "missing":
        del tensors[name]
    elif damage == "extra":
        tensors["decoder.extra.weight"] = torch.zeros(3)
    else:
        tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    message = {"missing": "1 missing keys", "extra": "1 unexpected keys", "nan": "NaN or Inf"}[damage]
    with pytest.raises(ValueError, match=message):
        EncodecModel.from_pretrained(folder)


def test_convert_refuses_non_finite_weights():
    from encodec_hf.testing import original_layout

    model = tiny_model()
    source = original_layout(model)
    first = sorted(source)[0]
    source[first] = torch.full_like(source[first], float("inf"))
    with pytest.raises(ValueError, match="NaN or Inf"):
        convert_state_dict(source, model.config)


# -- the command line -----------------------------------------------------------------------------------------------


def cli(*args):
    from encodec_hf.cli import main

    return main([str(a) for a in args])


def test_decompress_takes_the_model_the_file_names(tmp_path, capsys, monkeypatch):
    """Without --model, decompress asks for facebook/<the file's model> (offline here: the one-line Hub error names
    it), not the default 48 kHz model."""
    model = tiny_model()
    data = bytearray(compress_tiny(model))
    data = data.replace(b'"encodec_400hz"', b'"encodec_24khz"')  # a 24 kHz file's header (same length)
    (tmp_path / "a.ecdc").write_bytes(bytes(data))
    assert cli("decompress", tmp_path / "a.ecdc", tmp_path / "a.wav") == 2
    assert "'facebook/encodec_24khz'" in capsys.readouterr().err


def compress_tiny(model):
    from encodec_hf import compress

    return compress(model, np.zeros(300, dtype=np.float32), 400, bandwidth=0.8)


def test_a_missing_local_model_fails_at_once(tmp_path, capsys, monkeypatch):
    import soundfile as sf

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    sf.write(tmp_path / "in.wav", np.zeros(100, dtype=np.float32), 400)
    assert cli("roundtrip", "in.wav", "out.wav", "--model", "models/nonexistent") == 2
    assert "does not exist (a local path" in capsys.readouterr().err


def test_tokenize_needs_force_keeps_or_drops_audio_and_speaks_in_options(tmp_path, capsys):
    import soundfile as sf

    folder = save_tiny_folder(tmp_path / "model")
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.zeros((300, 2), dtype=np.float32) + 0.1, 400)
    (tmp_path / "audio" / "b.wav").write_bytes(b"not audio")
    command = ("tokenize", tmp_path / "audio", "--model", folder, "--output", tmp_path / "out", "-b", "0.8")
    assert cli(*command) == 2
    assert "--on-error skip" in capsys.readouterr().err  # not on_error='skip'
    assert cli(*command, "--on-error", "skip", "--drop-audio", "--threads", "1") == 0
    assert "audio" not in datasets.load_from_disk(str(tmp_path / "out")).column_names
    assert cli(*command, "--on-error", "skip") == 2
    assert "pass -f" in capsys.readouterr().err
    assert cli(*command, "--on-error", "skip", "-f") == 0
    assert "audio" in datasets.load_from_disk(str(tmp_path / "out")).column_names


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


@pytest.mark.parametrize("form", [None, "numpy", "torch"])
def test_decode_tokens_takes_rows_and_batches_in_every_format(chunked, extractor, form):
    clips = [np.random.default_rng(i).standard_normal(300 * (i + 1)).astype(np.float32) * 0.2 for i in range(3)]
    dataset = datasets.Dataset.from_dict({"audio": clips, "rate": [400] * 3})
    tokenized = tokenize_dataset(dataset, chunked, extractor, 0.8, sampling_rate_column="rate")
    from encodec_hf import decode_tokens

    expected = [decode_tokens(chunked, tokenized[i]) for i in range(3)]
    shaped = tokenized.with_format(form) if form else tokenized
    for i in range(3):
        np.testing.assert_array_equal(decode_tokens(chunked, shaped[i]), expected[i])
    batch = decode_tokens(chunked, shaped[0:3])
    assert len(batch) == 3 and all(np.array_equal(a, b) for a, b in zip(batch, expected, strict=True))


def test_hostile_inputs_end_in_one_line(tmp_path, capsys):
    """A FIFO as input (reading it would block), a damaged weights file, metadata nested 30,000 deep: exit 2, one
    line, no traceback."""
    import os
    import struct

    import soundfile as sf

    folder = save_tiny_folder(tmp_path / "model")
    sf.write(tmp_path / "in.wav", np.zeros(100, dtype=np.float32), 400)
    os.mkfifo(tmp_path / "fifo.wav")
    broken = save_tiny_folder(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    nested = b"[" * 30_000 + b"]" * 30_000
    (tmp_path / "nested.ecdc").write_bytes(b"ECDC\x00" + struct.pack("!I", len(nested)) + nested)
    cases = [
        (("roundtrip", tmp_path / "fifo.wav", tmp_path / "o.wav", "--model", folder), "not a regular file"),
        (("decompress", tmp_path / "fifo.wav", tmp_path / "o.wav", "--model", folder), "not a regular file"),
        (("roundtrip", tmp_path / "in.wav", tmp_path / "o.wav", "--model", broken), ""),
        (("decompress", tmp_path / "nested.ecdc", tmp_path / "o.wav", "--model", folder), "nested too deeply"),
    ]
    capsys.readouterr()  # the set-up's own output
    for args, message in cases:
        assert cli(*args) == 2, args
        stderr = capsys.readouterr().err.strip()
        assert stderr.startswith("encodec-hf: error:") and "\n" not in stderr, stderr
        assert message in stderr, (args, stderr)


def test_decompress_iter_refuses_trailing_bytes_as_decompress_does(chunked):
    import io

    from encodec_hf.ecdc import compress, decompress_iter

    data = compress(chunked, np.zeros((2, 500), dtype=np.float32), 400, bandwidth=0.8) + b"\x00"
    with pytest.raises(ValueError, match="more than its metadata"):
        decompress(data, chunked)
    with pytest.raises(ValueError, match="beyond what its metadata accounts for"):
        list(decompress_iter(io.BytesIO(data), chunked))


LYING_FILE_SCRIPT = r"""
import io, sys, numpy as np
from encodec_hf import decompress
from encodec_hf.ecdc.container import EcdcHeader, model_name
from encodec_hf.language_model import EncodecLanguageModel
from encodec_hf.testing import tiny_model

model = tiny_model(target_bandwidths=[0.4, 0.8, 12.8])  # 32 codebooks
model.language_model = EncodecLanguageModel(32, 16, 7, dim=10, num_heads=2).eval()
length = 24 * 3600 * model.config.sampling_rate  # a day: 8.64 million frames, 276 million codes claimed
stream = io.BytesIO()
EcdcHeader(0, model_name(model), length, 32, True, False).write(stream)
stream.write(np.random.default_rng(0).integers(0, 256, 350_000, dtype=np.uint8).tobytes())  # 2.8 Mbit: plausible


import torch

largest = [0]  # bytes of the largest zero-filled buffer asked for (calloc'd pages would not show in the RSS)
real_zeros = torch.zeros


def zeros(*shape, **kwargs):
    tensor = real_zeros(*shape, **kwargs)
    largest[0] = max(largest[0], tensor.numel() * tensor.element_size())
    return tensor


torch.zeros = zeros
try:
    decompress(stream.getvalue(), model)
except (EOFError, ValueError) as error:
    print("refused:", type(error).__name__, str(error).splitlines()[0])
print("largest_mb", largest[0] / 2**20)
"""


@pytest.mark.slow  # decodes 350 KB of arithmetic-coded noise with a language model
def test_a_language_model_file_claiming_a_day_allocates_only_what_it_decodes(tmp_path):
    """Issue 18: 260 KB of random bytes claiming 24 h allocated 3.1 GB before being rejected. The codes buffer now
    grows with the frames decoded (the same file's claim would have taken 276 M x 8 bytes = 2.2 GB, 2,109 MB in this
    test before the change)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LYING_FILE_SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: " in done.stdout  # noise: "no symbol matches it", or the bits end first
    largest = float(done.stdout.split("largest_mb")[1])
    assert largest < 10, done.stdout
