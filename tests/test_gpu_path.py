"""The batched encoding path meant for GPUs (`pad_chunks`), the 32-bit index cap, and the GPU check script's CPU mode.

The GPU numbers themselves come from `benchmarks/gpu.py` on a GPU (docs/gpu.md); CI has none, so these tests hold
what a CPU can show: which codes the padded batches may change (only each clip's last frame, by construction),
that batches are really formed, and that the check script runs end to end and reports identical codes when the
"device" is the CPU itself.
"""

import datasets
import numpy as np
import pytest
import torch

from encodec_hf import EncodecFeatureExtractor, chunking, tokenization_metadata, tokenize_dataset
from encodec_hf.chunking import bucket_jobs, cap_batches, chunks_per_call
from encodec_hf.cli import main
from encodec_hf.testing import save_tiny_folder, tiny_model


def test_bucket_jobs_worked_example():
    jobs = [(300, "a"), (1000, "b"), (320, "c"), (990, "d"), (10, "e")]
    assert list(bucket_jobs(jobs, 2)) == [(1000, ["b", "d"]), (320, ["c", "a"]), (10, ["e"])]
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        list(bucket_jobs(jobs, 0))


def test_chunks_per_call_worked_example():
    assert chunks_per_call(48_000, 32) == 1396
    assert 32 * (48_000 + 64) * 1396 <= 2**31 - 1 < 32 * (48_000 + 64) * 1397
    assert chunks_per_call(10**9, 64) == 1  # never zero
    assert list(cap_batches([(48000, ["a", "b", "c"]), (10, ["d"])], lambda key: 2)) == [
        (48000, ["a", "b"]),
        (48000, ["c"]),
        (10, ["d"]),
    ]


def encode_calls(model, monkeypatch) -> list:
    """Record the number of chunks of each encode_chunks call."""
    calls = []
    real = model.encode_chunks

    def spy(chunks, *args, **kwargs):
        calls.append(chunks.shape[0])
        return real(chunks, *args, **kwargs)

    monkeypatch.setattr(model, "encode_chunks", spy)
    return calls


def ragged(lengths, channels=1, seed=0):
    generator = torch.Generator().manual_seed(seed)
    values = torch.zeros(len(lengths), channels, max(lengths))
    mask = torch.zeros(len(lengths), max(lengths), dtype=torch.bool)
    for k, n in enumerate(lengths):
        values[k, :, :n] = 0.5 * torch.randn(channels, n, generator=generator)
        mask[k, :n] = True
    return values, mask


def test_padded_batches_change_only_each_clips_last_frame(monkeypatch):
    model = tiny_model()  # causal, hop 4
    lengths = [400, 123, 57, 399, 8, 250, 31]
    values, mask = ragged(lengths)
    exact = model.encode(values, mask, bandwidth=0.8).audio_codes
    calls = encode_calls(model, monkeypatch)
    padded = model.encode(values, mask, bandwidth=0.8, fast_encoding=True, chunk_batch_size=4, pad_chunks=True)
    assert calls == [4, 3]  # seven clips of seven lengths in two calls (without padding: seven)
    assert padded.audio_codes.shape == exact.shape
    changed_last = 0
    for item, n in enumerate(lengths):
        frames = -(-n // 4)
        if frames <= 7:
            # A clip no longer than the last convolution's padding (6 frames): the exact path reflects the zeros
            # it appends there, the padded batch its continuation, so any frame can differ (the 8-sample clip).
            continue
        torch.testing.assert_close(padded.audio_codes[0, item, :, : frames - 1], exact[0, item, :, : frames - 1])
        changed_last += int(not torch.equal(padded.audio_codes[0, item, :, frames - 1], exact[0, item, :, frames - 1]))
        assert (padded.audio_codes[0, item, :, frames:] == 0).all()  # past the end: as the exact path leaves it
    assert changed_last < len(lengths)  # most last frames agree as well; the check above is what is promised


def test_pad_chunks_needs_fast_encoding_and_a_causal_model(monkeypatch):
    model = tiny_model()
    values, mask = ragged([100, 60])
    calls = encode_calls(model, monkeypatch)
    model.encode(values, mask, bandwidth=0.8, pad_chunks=True)  # exact path: each chunk alone, as always
    assert calls == [1, 1]
    chunked = tiny_model(chunked=True)  # not causal: padding would change every frame near the end
    values, mask = ragged([900, 500, 700], channels=2)
    plain = chunked.encode(values, mask, bandwidth=0.8, fast_encoding=True, chunk_batch_size=8).audio_codes
    calls = encode_calls(chunked, monkeypatch)
    padded = chunked.encode(values, mask, bandwidth=0.8, fast_encoding=True, chunk_batch_size=8, pad_chunks=True)
    assert torch.equal(plain, padded.audio_codes)
    assert all(n <= 8 for n in calls) and len(calls) > 1  # chunks of equal length only
    with pytest.raises(ValueError, match="pad_chunks must be True or False"):
        model.encode(values[:, :1], bandwidth=0.8, pad_chunks="yes")


def test_batches_are_capped_for_32_bit_index_math(monkeypatch):
    model = tiny_model(chunked=True)
    values, mask = ragged([1500, 1500, 900], channels=2)
    expected = model.encode(values, mask, bandwidth=0.8, fast_encoding=True, chunk_batch_size=64)
    decoded = model.decode(expected.audio_codes, expected.audio_scales, mask, chunk_batch_size=64).audio_values
    monkeypatch.setattr(chunking, "chunks_per_call", lambda samples, channels: 2)
    calls = encode_calls(model, monkeypatch)
    capped = model.encode(values, mask, bandwidth=0.8, fast_encoding=True, chunk_batch_size=64)
    assert max(calls) == 2 and sum(calls) == 13  # 5 + 5 + 3 chunks
    assert torch.equal(capped.audio_codes, expected.audio_codes)
    again = model.decode(capped.audio_codes, capped.audio_scales, mask, chunk_batch_size=64).audio_values
    torch.testing.assert_close(again, decoded, rtol=1e-5, atol=1e-6)


def test_tokenize_records_the_padded_path(tmp_path):
    model = tiny_model()
    extractor = EncodecFeatureExtractor.from_model_config(model.config)
    generator = np.random.default_rng(0)
    clips = [0.3 * generator.standard_normal(n).astype(np.float32) for n in (400, 123, 250)]
    dataset = datasets.Dataset.from_dict({"audio": clips, "rate": [400] * 3})
    exact = tokenize_dataset(dataset, model, extractor, 0.8, sampling_rate_column="rate")
    fast = tokenize_dataset(
        dataset, model, extractor, 0.8, sampling_rate_column="rate", fast_encoding=True, pad_chunks=True
    )
    assert tokenization_metadata(exact)["encoding"] == "exact"
    assert tokenization_metadata(fast)["encoding"] == "fast, padded batches"
    assert tokenization_metadata(fast)["device"] == "cpu"
    for a, b in zip(exact["audio_codes"], fast["audio_codes"]):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_array_equal(a[..., :-1], b[..., :-1])  # all but the last frame, as promised


def test_tokenize_command_fast_and_device(tmp_path, capsys):
    folder = save_tiny_folder(tmp_path / "model", tiny_model())
    data = tmp_path / "data"
    datasets.Dataset.from_dict(
        {"audio": [{"array": np.zeros(300, np.float32) + 0.1, "sampling_rate": 400}]}
    ).save_to_disk(str(data))
    out = tmp_path / "out"
    assert main(["tokenize", str(data), "--model", str(folder), "--output", str(out), "--fast", "--device", "cpu"]) == 0
    written = datasets.load_from_disk(str(out))
    assert tokenization_metadata(written)["encoding"] == "fast, padded batches"
    capsys.readouterr()
    code = main(["tokenize", str(data), "--model", str(folder), "--output", str(tmp_path / "o2"), "--device", "nope"])
    assert code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "--device nope" in error[0]


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu(tmp_path):
    """benchmarks/gpu.py --device cpu --quick: every section runs; with the CPU as the device, the exact path's
    codes are identical and the batched path differs only in last frames."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu.py"
    spec = importlib.util.spec_from_file_location("gpu_check", script)
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    results = gpu_check.main(
        ["--device", "cpu", "--quick", "--output", str(tmp_path), "--models", "encodec_24khz", "encodec_48khz"]
    )
    for name in ("encodec_24khz", "encodec_48khz"):
        section = results["correctness"][name]
        rows = {(row["dtype"], row["path"]): row for row in section["paths"]}
        assert rows[("fp32", "exact")]["codes_differing_pct"] == 0
        assert rows[("fp32", "exact")]["audio_relative_error"] == 0
        assert section["ecdc"]["same_bytes_as_cpu_coding_of_the_same_codes"] is True
        assert section["ecdc"]["decodes_on_cpu_to_the_device_codes"] is True
        assert section["tokenize"]["exact"]["codes_differing_pct"] == 0
    # 24 kHz batched: at most the last frame of each of the two clips, in every codebook (8 at 6 kbps)
    frames = sum(-(-int(s * 24_000) // 320) for s in (1.3, 0.7))
    batched = {row["path"]: row for row in results["correctness"]["encodec_24khz"]["paths"] if row["dtype"] == "fp32"}
    assert batched["batched"]["codes_differing_pct"] <= 100 * 2 / frames
    assert results["correctness"]["encodec_24khz"]["streaming"]["codes_differing_pct"] == 0
    for name in ("encodec_24khz", "encodec_48khz"):
        for row in results["throughput"][name]:
            assert row["encode_h_per_s"] > 0 and row["decode_h_per_s"] > 0
    assert results["tokenize"]["rows"] == 4
    assert [run["workers"] for run in results["tokenize"]["runs"]] == [0, 1]
    assert all(0 < run["model_busy"] <= 1 for run in results["tokenize"]["runs"])
    for name in ("encodec_24khz", "encodec_48khz"):
        profile = results["profile"][name]
        assert profile["time_in_ops_ms"] > 0 and any("conv" in op["name"] for op in profile["top"])
        assert sum(op["share"] for op in profile["top"]) <= 1 + 1e-9
        assert profile["encode_h_per_s_cudnn_benchmark_true"] > 0
    report = (tmp_path / "gpu.md").read_text()
    assert "## Throughput, encodec_48khz" in report and "| fp32 | exact | 0.000 % |" in report
    assert "## Where the time goes, encodec_24khz" in report
