"""The GPU check: correctness on CUDA against the CPU exact path, and throughput in hours of audio per second.

    python benchmarks/gpu.py [--device cuda] [--output DIR] [--budget SECONDS] [--models encodec_24khz encodec_48khz]
    python benchmarks/gpu.py --device cpu --quick        # the same code on tiny inputs (tests/test_gpu_check.py)

Writes DIR/gpu.json (every number, the device, torch and CUDA versions) and DIR/gpu.md (the tables), rewritten
after each section, so that a run stopped at its time limit still leaves what it measured. Sections that run out of
`--budget` are marked "skipped (budget)"; an error in one section is recorded there and the others still run.

Models are the presets with random weights and fitted codebooks (`encodec_hf.testing.random_model`; the machines that
run this cannot reach the Hub), the same weights on CPU and GPU. Inputs are `synthetic_music` at the model's rate.

Correctness (per model, 6 kbps): codes differing from the CPU exact path (in %, over real frames; also the first
codebook alone), and the decoded audio's relative L2 error (the CPU codes decoded on the device against the CPU
decode), for float32 with TF32 off ("fp32"), TF32 on ("tf32", PyTorch's default for convolutions on CUDA) and
bfloat16 weights ("bf16"), each on the exact path (each chunk alone) and the batched path (`fast_encoding`,
`pad_chunks`, all chunks in one call); streaming against offline; .ecdc files made on the device with the language
model's deterministic mode, decoded on the CPU; `tokenize_dataset` rows made on the device against CPU rows.

Throughput: encode (batched path), decode and round trip of `--clip-seconds` clips at batch sizes 1 to 256, per dtype,
eager, then `torch.compile` at one batch size; hours of audio per second of wall time (best of a few runs after a
warm-up, synchronised) and peak device memory. Where the time goes: one batched encode at batch 256 (24 kHz; 64
at 48 kHz) under torch.profiler (the top operators and kernels, kernel launches, the device's busy share), and the
encode rate with cuDNN's benchmark mode against without. Then `tokenize_dataset` end to end on WAV files (reading and
resampling included) with 0 and 8 reader processes (`--workers`), against the encode rate alone: is the GPU starved?
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run from a checkout without installing (the GPU machine)
    sys.path.insert(0, str(ROOT))

from encodec_hf import EncodecFeatureExtractor, EncodecModel  # noqa: E402
from encodec_hf.testing import random_model, synthetic_music  # noqa: E402

BANDWIDTH = 6.0
DTYPES = ("fp32", "tf32", "bf16")
SECTIONS = ("correctness", "throughput", "profile", "tokenize", "compiled")


# -- settings --------------------------------------------------------------------------------------------------------


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matrix products and convolutions, on or off (the convolution default is on)."""
    precision = "tf32" if enabled else "ieee"
    try:
        torch.backends.cuda.matmul.fp32_precision = precision
        torch.backends.cudnn.conv.fp32_precision = precision
    except AttributeError:  # torch before 2.9
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


def on_device(model: EncodecModel, device: str, dtype: str) -> EncodecModel:
    """A copy of `model` on `device` in `dtype` ("fp32", "tf32": float32; "bf16": bfloat16), TF32 set to match."""
    if device.startswith("cuda"):
        set_tf32(dtype == "tf32")
    moved = copy.deepcopy(model).to(device)
    if model.language_model is not None:
        moved.language_model = copy.deepcopy(model.language_model).to(device)
    return moved.to(torch.bfloat16) if dtype == "bf16" else moved


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_gb(device: str) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else None


def reset_peak(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


class Budget:
    """Seconds left for the whole run, and a deadline per section."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def section(self, share: float) -> float:
        """A deadline `share` of the time left from now."""
        return time.monotonic() + share * max(0.0, self.left())


# -- inputs ----------------------------------------------------------------------------------------------------------


def clips_for(model: EncodecModel, seconds: list[float], seed: int = 0) -> list[torch.Tensor]:
    """Music-like clips (channels, samples) at the model's rate, one per length."""
    config = model.config
    return [
        torch.from_numpy(
            synthetic_music(seed + k, seconds=s, rate=config.sampling_rate, channels=config.audio_channels)[0]
        )
        for k, s in enumerate(seconds)
    ]


def batch_of(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (B, C, T) audio and its (B, T) padding mask."""
    longest = max(c.shape[-1] for c in clips)
    values = torch.zeros(len(clips), clips[0].shape[0], longest)
    mask = torch.zeros(len(clips), longest, dtype=torch.bool)
    for k, clip in enumerate(clips):
        values[k, :, : clip.shape[-1]] = clip
        mask[k, : clip.shape[-1]] = True
    return values, mask


def real_frames(model: EncodecModel, length: int) -> list[int]:
    from encodec_hf.tokenization import chunk_frames

    return chunk_frames(length, model.config)


def code_difference(model, reference, other, lengths) -> dict:
    """Share of codes (%) that differ over each clip's real frames; all codebooks and the first alone."""
    differ = first = total = total_first = 0
    for item, length in enumerate(lengths):
        for chunk, frames in enumerate(real_frames(model, length)):
            a = reference[chunk, item, :, :frames].cpu()
            b = other[chunk, item, :, :frames].cpu()
            differ += int((a != b).sum())
            first += int((a[0] != b[0]).sum())
            total += a.numel()
            total_first += frames
    return {"codes_differing_pct": 100 * differ / total, "first_codebook_differing_pct": 100 * first / total_first}


def relative_error(reference: torch.Tensor, other: torch.Tensor) -> float:
    reference, other = reference.double().cpu(), other.double().cpu()
    return float((other - reference).norm() / reference.norm().clamp(min=1e-30))


# -- correctness -----------------------------------------------------------------------------------------------------


def check_model(name: str, device: str, quick: bool, deadline: float, dtypes=DTYPES) -> dict:
    model = random_model(name, seed=0, language_model=True)
    config = model.config
    seconds = [1.3, 0.7] if quick else [10.0, 7.3, 3.1, 1.0]
    clips = clips_for(model, seconds)
    values, mask = batch_of(clips)
    lengths = [c.shape[-1] for c in clips]
    out: dict = {"clips_seconds": seconds}

    with torch.inference_mode():
        reference = model.encode(values, mask, bandwidth=BANDWIDTH)  # CPU exact: EnCodec 0.1.1's codes
        reference_audio = model.decode(reference.audio_codes, reference.audio_scales, mask).audio_values
    paths = {
        "exact": dict(fast_encoding=False),
        "batched": dict(fast_encoding=True, pad_chunks=True, chunk_batch_size=1024),
    }
    rows = []
    for dtype in dtypes:
        if time.monotonic() > deadline:
            rows.append({"dtype": dtype, "skipped": "budget"})
            continue
        moved = on_device(model, device, dtype)
        with torch.inference_mode():
            scales = [s.to(device) if s is not None else None for s in reference.audio_scales]
            decoded = moved.decode(reference.audio_codes.to(device), scales, mask.to(device)).audio_values
            audio_error = relative_error(reference_audio, decoded)
            for path, options in paths.items():
                encoded = moved.encode(values.to(device), mask.to(device), bandwidth=BANDWIDTH, **options)
                row = {"dtype": dtype, "path": path, "audio_relative_error": audio_error}
                row.update(code_difference(model, reference.audio_codes, encoded.audio_codes, lengths))
                if config.normalize:
                    row["scale_relative_error"] = relative_error(
                        torch.stack(reference.audio_scales), torch.stack([s.float() for s in encoded.audio_scales])
                    )
                rows.append(row)
        del moved
    out["paths"] = rows

    device_model = on_device(model, device, "fp32")
    with torch.inference_mode():
        offline = device_model.encode(values[:1, :, : lengths[0]].to(device), bandwidth=BANDWIDTH)
    checks = {
        "streaming": lambda: check_streaming(device_model, clips[0], offline, device),
        "ecdc": lambda: check_ecdc(model, device_model, clips[0], device),
        "tokenize": lambda: check_tokenize(model, device_model, clips, device),
    }
    if config.chunk_length:
        del checks["streaming"]  # chunk streams run encode_chunks, the offline path itself
    for key, check in checks.items():
        try:
            out[key] = check()
        except Exception:  # recorded: one broken check must not hide the others
            out[key] = {"error": traceback.format_exc()}
            print(out[key]["error"], file=sys.stderr, flush=True)
    return out


def check_streaming(model, clip, offline, device) -> dict:
    """Encode and decode in 0.25 s pieces on the device; against the device's offline codes and audio."""
    piece = model.config.sampling_rate // 4
    encoder, pieces = model.stream_encoder(bandwidth=BANDWIDTH), []
    for start in range(0, clip.shape[-1], piece):
        pieces.append(encoder.push(clip[None, :, start : start + piece].to(device)))
    pieces.append(encoder.flush())
    codes = torch.cat(pieces, dim=-1)  # (1, Q, F)
    decoder = model.stream_decoder(audio_length=clip.shape[-1])
    step = max(1, piece // model.config.hop_length)
    audio = [decoder.push(codes[..., k : k + step]) for k in range(0, codes.shape[-1], step)]
    audio = torch.cat([*audio, decoder.flush()], dim=-1)
    with torch.inference_mode():
        mask = torch.ones(1, clip.shape[-1], dtype=torch.bool, device=device)
        offline_audio = model.decode(offline.audio_codes, offline.audio_scales, mask).audio_values
    return {
        "codes_differing_pct": 100 * float((codes != offline.audio_codes[0]).float().mean()),
        "audio_relative_error": relative_error(offline_audio, audio),
    }


def check_ecdc(cpu_model, device_model, clip, device) -> dict:
    """A version-1 file with the language model's deterministic mode, made on the device, read on the CPU."""
    from encodec_hf.ecdc.api import compress, compress_codes, decompress

    rate = cpu_model.config.sampling_rate
    data = compress(device_model, clip.numpy(), rate, bandwidth=BANDWIDTH, use_lm=True, container_version=1)
    with torch.inference_mode():
        codes = device_model.encode(clip[None].to(device), bandwidth=BANDWIDTH)
    again = compress_codes(
        cpu_model, codes.audio_codes.cpu(), [s.cpu() if s is not None else None for s in codes.audio_scales],
        clip.shape[-1], use_lm=True, container_version=1,
    )  # fmt: skip
    audio, _ = decompress(data, cpu_model, on_damage="raise")
    device_audio, _ = decompress(data, device_model, on_damage="raise")
    with torch.inference_mode():
        mask = torch.ones(1, clip.shape[-1], dtype=torch.bool)
        scales = [s.cpu() if s is not None else None for s in codes.audio_scales]
        expected = cpu_model.decode(codes.audio_codes.cpu(), scales, mask).audio_values[0]
    return {
        "bytes": len(data),
        "same_bytes_as_cpu_coding_of_the_same_codes": data == again,
        "decodes_on_cpu_to_the_device_codes": bool(torch.equal(torch.from_numpy(audio), expected)),
        "device_decompress_relative_error": relative_error(torch.from_numpy(audio), torch.from_numpy(device_audio)),
    }


def check_tokenize(cpu_model, device_model, clips, device) -> dict:
    """`tokenize_dataset` rows (arrays with a rate column) on the device against the CPU's exact rows."""
    import datasets

    from encodec_hf.tokenization import tokenization_metadata, tokenize_dataset

    rate = cpu_model.config.sampling_rate
    dataset = datasets.Dataset.from_dict({"audio": [c.numpy() for c in clips], "rate": [rate] * len(clips)})
    extractor = EncodecFeatureExtractor.from_model_config(cpu_model.config)
    cpu_rows = tokenize_dataset(dataset, cpu_model, extractor, BANDWIDTH, sampling_rate_column="rate")
    out = {}
    for path, options in {"exact": {}, "batched": dict(fast_encoding=True, pad_chunks=True)}.items():
        rows = tokenize_dataset(dataset, device_model, extractor, BANDWIDTH, sampling_rate_column="rate", **options)
        differ = total = 0
        for a, b in zip(cpu_rows["audio_codes"], rows["audio_codes"]):
            a, b = np.asarray(a), np.asarray(b)
            differ += int((a != b).sum())
            total += a.size
        out[path] = {"codes_differing_pct": 100 * differ / total, "encoding": tokenization_metadata(rows)["encoding"]}
    return out


# -- throughput ------------------------------------------------------------------------------------------------------


def timed(function, device: str, min_seconds: float, repeats: int = 3) -> float:
    """Best wall time of `function()` after one warm-up, over `repeats` runs or `min_seconds`, whichever is more."""
    if repeats == 0:  # one call, no warm-up: the first call's time (compilation included)
        start = time.perf_counter()
        function()
        synchronize(device)
        return time.perf_counter() - start
    function()
    synchronize(device)
    best, spent, runs = float("inf"), 0.0, 0
    while runs < repeats or spent < min_seconds:
        start = time.perf_counter()
        function()
        synchronize(device)
        elapsed = time.perf_counter() - start
        best, spent, runs = min(best, elapsed), spent + elapsed, runs + 1
        if runs >= 20:
            break
    return best


def measure(model, device, batch, clip_seconds, min_seconds, repeats: int = 3) -> dict:
    """Encode (batched path), decode and round trip of `batch` clips of `clip_seconds`: hours of audio per second."""
    config = model.config
    length = int(clip_seconds * config.sampling_rate)
    generator = torch.Generator().manual_seed(batch)
    audio = (0.1 * torch.randn(batch, config.audio_channels, length, generator=generator)).to(device)
    chunks = batch * max(1, -(-length // (config.chunk_stride or length)))
    options = dict(fast_encoding=True, pad_chunks=True, chunk_batch_size=chunks)
    hours = batch * clip_seconds / 3600
    row: dict = {"batch": batch}
    with torch.inference_mode():
        reset_peak(device)
        encode_time = timed(lambda: model.encode(audio, bandwidth=BANDWIDTH, **options), device, min_seconds, repeats)
        row["encode_h_per_s"], row["encode_peak_gb"] = hours / encode_time, peak_memory_gb(device)
        encoded = model.encode(audio, bandwidth=BANDWIDTH, **options)
        reset_peak(device)
        decode = lambda: model.decode(  # noqa: E731
            encoded.audio_codes, encoded.audio_scales, fast_decoding=True, chunk_batch_size=chunks
        )
        decode_time = timed(decode, device, min_seconds, repeats)
        row["decode_h_per_s"], row["decode_peak_gb"] = hours / decode_time, peak_memory_gb(device)
        row["roundtrip_h_per_s"] = hours / (encode_time + decode_time)
        if batch <= 16 and repeats:  # the exact path, each chunk alone: what batching buys
            exact = timed(lambda: model.encode(audio, bandwidth=BANDWIDTH, fast_encoding=False), device, min_seconds, 1)
            row["exact_encode_h_per_s"] = hours / exact
    return row


def throughput(name, device, dtypes, batches, clip_seconds, min_seconds, deadline) -> list[dict]:
    base = random_model(name, seed=0)
    rows = []
    for dtype in dtypes:
        model = on_device(base, device, dtype)
        for batch in batches:
            if time.monotonic() > deadline:
                rows.append({"dtype": dtype, "batch": batch, "skipped": "budget"})
                continue
            try:
                rows.append(
                    {"dtype": dtype, "compiled": False, **measure(model, device, batch, clip_seconds, min_seconds)}
                )
            except torch.OutOfMemoryError:
                rows.append({"dtype": dtype, "batch": batch, "skipped": "out of memory"})
                reset_peak(device)
                break
            print(f"  {name} {dtype} batch {batch}: {rows[-1]}", flush=True)
        del model
        reset_peak(device)
    return rows


def compiled_row(name, device, dtype, batch, clip_seconds, min_seconds) -> dict:
    """One compiled measurement (run in a child process by `compiled_throughput`)."""
    model = on_device(random_model(name, seed=0), device, dtype)
    model.encoder.compile()
    model.decoder.compile()
    start = time.perf_counter()
    first = measure(model, device, batch, clip_seconds, 0.0, repeats=0)  # the first call compiles
    compile_seconds = time.perf_counter() - start
    row = measure(model, device, batch, clip_seconds, min_seconds)
    row.update(first_call_seconds=compile_seconds, first_call_encode_h_per_s=first["encode_h_per_s"])
    return row


def compiled_throughput(name, device, dtypes, batch, clip_seconds, min_seconds, deadline) -> list[dict]:
    """`model.encoder.compile()` and `model.decoder.compile()` at one batch size, each dtype in a child process that
    is stopped at the deadline (compilation can take minutes: a stopped one is reported as such)."""
    import subprocess

    rows = []
    for dtype in dtypes:
        left = deadline - time.monotonic()
        if left < 10:
            rows.append({"dtype": dtype, "batch": batch, "compiled": True, "skipped": "budget"})
            continue
        command = [sys.executable, __file__, "--compile-worker", name, dtype, str(batch)]
        command += ["--device", device, "--clip-seconds", str(clip_seconds), "--min-seconds", str(min_seconds)]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=left)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode == 0 and lines:
                row = json.loads(lines[-1])
            else:
                message = (done.stderr.strip().splitlines() or ["no output"])[-1]
                row = {"batch": batch, "skipped": f"failed: {message[:200]}"}
        except subprocess.TimeoutExpired:
            row = {"batch": batch, "skipped": f"stopped after {left:.0f} s (still compiling or measuring)"}
        row.update(dtype=dtype, compiled=True, total_seconds=time.perf_counter() - start)
        rows.append(row)
        print(f"  {name} {dtype} compiled: {row}", flush=True)
    return rows


def tokenize_end_to_end(device, clips: int, clip_seconds: float, batch_size: int, workers: list[int]) -> dict:
    """`tokenize_dataset` on WAV files at 44.1 kHz (read, resampled to 24 kHz, encoded on the device, rows written)
    with each count of reader processes in `workers`, against the batched encode alone on the same audio."""
    import datasets
    import soundfile

    from encodec_hf.tokenization import tokenization_metadata, tokenize_dataset

    model = on_device(random_model("encodec_24khz", seed=0), device, "bf16" if device.startswith("cuda") else "fp32")
    extractor = EncodecFeatureExtractor.from_model_config(model.config)
    hours = clips * clip_seconds / 3600
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for k in range(clips):
            audio, rate = synthetic_music(k, seconds=clip_seconds, rate=44_100, channels=1)
            paths.append(os.path.join(folder, f"{k}.wav"))
            soundfile.write(paths[-1], audio.T, rate)
        dataset = datasets.Dataset.from_dict({"audio": paths}).cast_column("audio", datasets.Audio(decode=False))
        for count in workers:
            start = time.perf_counter()
            rows = tokenize_dataset(
                dataset, model, extractor, BANDWIDTH, batch_size=batch_size, fast_encoding=True, pad_chunks=True,
                chunk_batch_size=batch_size, num_workers=count,
            )  # fmt: skip
            synchronize(device)
            total = time.perf_counter() - start
            busy = tokenization_metadata(rows)["model_busy"]
            runs.append({"workers": count, "end_to_end_h_per_s": hours / total, "model_busy": busy})
            print(f"  tokenize, {count} workers: {runs[-1]}", flush=True)
    encode_only = measure(model, device, batch_size, clip_seconds, 0.2)["encode_h_per_s"]
    return {
        "clips": clips,
        "clip_seconds": clip_seconds,
        "rows": len(rows),
        "batch_size": batch_size,
        "encode_only_h_per_s": encode_only,
        "runs": runs,
    }


# -- where the time goes ---------------------------------------------------------------------------------------------


def profile_encode(name, device, dtype, batch, clip_seconds, top: int = 15) -> dict:
    """One batched encode of `batch` clips under torch.profiler: the operators and kernels that take the most
    device time (CPU time on a CPU), how many kernels were launched, and the share of the call's wall time the device
    spent in kernels (the rest: launch gaps, the host's Python, synchronisations). Then the encode rate with cuDNN's
    benchmark mode (an algorithm search per shape) against without."""
    model = on_device(random_model(name, seed=0), device, dtype)
    config = model.config
    length = int(clip_seconds * config.sampling_rate)
    audio = (0.1 * torch.randn(batch, config.audio_channels, length, generator=torch.Generator().manual_seed(0))).to(
        device
    )
    chunks = batch * max(1, -(-length // (config.chunk_stride or length)))
    options = dict(fast_encoding=True, pad_chunks=True, chunk_batch_size=chunks)
    on_cuda = device.startswith("cuda")
    activities = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if on_cuda else [])
    with torch.inference_mode():
        model.encode(audio, bandwidth=BANDWIDTH, **options)  # warm-up: cuDNN and the allocator meet the shapes
        synchronize(device)
        with torch.profiler.profile(activities=activities) as profiler:
            start = time.perf_counter()
            model.encode(audio, bandwidth=BANDWIDTH, **options)
            synchronize(device)
            wall = time.perf_counter() - start
    totals: dict = {}  # name -> [calls, microseconds]
    if on_cuda:  # the kernels (and copies) themselves, timed on the device
        for event in profiler.events():
            if event.device_type == torch.autograd.DeviceType.CUDA:
                entry = totals.setdefault(event.name, [0, 0.0])
                entry[0], entry[1] = entry[0] + 1, entry[1] + event.time_range.elapsed_us()
    else:  # the operators' own CPU time
        for event in profiler.key_averages():
            if event.self_cpu_time_total > 0:
                totals[event.key] = [event.count, event.self_cpu_time_total]
    ranked = sorted(totals.items(), key=lambda item: -item[1][1])
    busy_us = sum(us for _, us in totals.values())
    row = {
        "model": name,
        "dtype": dtype,
        "batch": batch,
        "clip_seconds": clip_seconds,
        "wall_ms": wall * 1000,
        "time_in_ops_ms": busy_us / 1000,
        "kernel_launches": sum(calls for calls, _ in totals.values()) if on_cuda else None,
        "top": [
            {"name": key[:80], "calls": calls, "ms": us / 1000, "share": us / busy_us}
            for key, (calls, us) in ranked[:top]
        ],
    }
    if on_cuda:  # device busy share: kernel time over wall (kernels of one stream do not overlap)
        row["device_busy_share"] = min(1.0, busy_us / 1e6 / wall)
    hours = batch * clip_seconds / 3600
    for benchmark_mode in (False, True):
        torch.backends.cudnn.benchmark = benchmark_mode
        with torch.inference_mode():
            seconds = timed(lambda: model.encode(audio, bandwidth=BANDWIDTH, **options), device, 0.3)
        row[f"encode_h_per_s_cudnn_benchmark_{str(benchmark_mode).lower()}"] = hours / seconds
    torch.backends.cudnn.benchmark = False
    return row


# -- report ----------------------------------------------------------------------------------------------------------


def environment(device: str) -> dict:
    import transformers

    info = {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda"):
        properties = torch.cuda.get_device_properties(device)
        info.update(
            device_name=properties.name,
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            device_memory_gb=round(properties.total_memory / 2**30, 1),
            multiprocessors=properties.multi_processor_count,
        )
    return info


def markdown(results: dict) -> str:
    lines = ["# GPU check", "", "```", json.dumps(results.get("environment", {}), indent=1), "```", ""]
    for name, section in results.get("correctness", {}).items():
        lines += [f"## Correctness, {name} (6 kbps, against the CPU exact path)", ""]
        if "error" in section:
            lines += [f"error: {section['error'].splitlines()[-1]}", ""]
            continue
        lines += [
            "| dtype | path | codes differing | first codebook | audio rel. error (decode) |",
            "|---|---|---|---|---|",
        ]
        for row in section.get("paths", []):
            if "skipped" in row:
                lines.append(f"| {row['dtype']} | skipped ({row['skipped']}) | | | |")
                continue
            lines.append(
                f"| {row['dtype']} | {row['path']} | {row['codes_differing_pct']:.3f} % | "
                f"{row['first_codebook_differing_pct']:.3f} % | {row['audio_relative_error']:.2e} |"
            )
        for key in ("streaming", "ecdc", "tokenize"):
            if key in section:
                lines += ["", f"{key}: `{json.dumps(section[key])}`"]
        lines.append("")
    tables = [(name, rows, "") for name, rows in results.get("throughput", {}).items()]
    tables += [(name, rows, ", torch.compile") for name, rows in results.get("compiled", {}).items()]
    for name, rows, kind in tables:
        if isinstance(rows, dict):
            lines += [f"## Throughput, {name}{kind}: error", "", f"{rows.get('error', '').splitlines()[-1:]}", ""]
            continue
        lines += [
            f"## Throughput, {name}{kind} (hours of audio per second)",
            "",
            "| dtype | compiled | batch | encode | decode | round trip | peak GB (enc/dec) | exact encode |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            if "skipped" in row:
                lines.append(
                    f"| {row['dtype']} | {row.get('compiled', False)} | {row['batch']} | {row['skipped']} | | | |"
                )
                continue
            peak = (
                f"{row['encode_peak_gb']:.1f} / {row['decode_peak_gb']:.1f}"
                if row["encode_peak_gb"] is not None
                else ""
            )
            lines.append(
                f"| {row['dtype']} | {row['compiled']} | {row['batch']} | {row['encode_h_per_s']:.3f} | "
                f"{row['decode_h_per_s']:.3f} | {row['roundtrip_h_per_s']:.3f} | {peak} | "
                + (f"{row['exact_encode_h_per_s']:.3f} |" if "exact_encode_h_per_s" in row else "|")
            )
        lines.append("")
    for name, row in results.get("profile", {}).items():
        lines += [f"## Where the time goes, {name}", ""]
        if "error" in row or "skipped" in row:
            lines += [f"`{json.dumps(row)[-400:]}`", ""]
            continue
        lines += [
            f"{row['dtype']}, batch {row['batch']} of {row['clip_seconds']} s, one encode: {row['wall_ms']:.1f} ms "
            f"wall, {row['time_in_ops_ms']:.1f} ms in operators, device busy {row.get('device_busy_share')}, "
            f"{row['kernel_launches']} kernel launches; encode h/s without / with cuDNN benchmark mode: "
            f"{row['encode_h_per_s_cudnn_benchmark_false']:.3f} / {row['encode_h_per_s_cudnn_benchmark_true']:.3f}",
            "",
            "| operator or kernel | calls | ms | share |",
            "|---|---|---|---|",
        ]
        lines += [f"| `{e['name']}` | {e['calls']} | {e['ms']:.2f} | {e['share']:.1%} |" for e in row["top"]]
        lines.append("")
    if "tokenize" in results:
        lines += ["## tokenize_dataset end to end", "", f"`{json.dumps(results['tokenize'])}`", ""]
    return "\n".join(lines)


def save(results: dict, output: Path) -> None:
    output.mkdir(parents=True, exist_ok=True)
    (output / "gpu.json").write_text(json.dumps(results, indent=1, default=str))
    (output / "gpu.md").write_text(markdown(results))


@contextlib.contextmanager
def section(results: dict, keys: tuple, output: Path):
    """Run one section; an exception is recorded under `keys` and the run goes on. Saves either way."""
    started = time.monotonic()
    try:
        yield
    except Exception:
        target = results
        for key in keys[:-1]:
            target = target.setdefault(key, {})
        target[keys[-1]] = {"error": traceback.format_exc()}
        print(traceback.format_exc(), file=sys.stderr, flush=True)
    print(f"[{'/'.join(keys)}] {time.monotonic() - started:.1f} s", flush=True)
    save(results, output)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny inputs, batch sizes 1-2, no compilation")
    parser.add_argument("--output", default="gpu-check")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds for the whole run")
    parser.add_argument("--models", nargs="+", default=["encodec_24khz", "encodec_48khz"])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--dtypes", nargs="+", default=None, choices=DTYPES, help="default: all three on CUDA")
    parser.add_argument("--batches", nargs="+", type=int, default=None, help="default 1 4 16 64 256 (quick: 1 2)")
    parser.add_argument("--compile-batch", type=int, default=None, help="default 64 at 24 kHz, 16 at 48 kHz")
    parser.add_argument("--clip-seconds", type=float, default=None, help="throughput clips (default 10; quick 0.5)")
    parser.add_argument("--profile-batch", type=int, default=None, help="default 256 (quick: 2)")
    parser.add_argument("--workers", nargs="+", type=int, default=None, help="tokenize's readers (default 0 8)")
    parser.add_argument("--compile-worker", nargs=3, metavar=("MODEL", "DTYPE", "BATCH"), help=argparse.SUPPRESS)
    parser.add_argument("--min-seconds", type=float, default=0.3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.compile_worker:
        name, dtype, batch = args.compile_worker
        row = compiled_row(name, args.device, dtype, int(batch), args.clip_seconds, args.min_seconds)
        print(json.dumps(row), flush=True)
        return row
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    output, budget, quick = Path(args.output), Budget(args.budget), args.quick
    clip_seconds = args.clip_seconds or (0.5 if quick else 10.0)
    batches = args.batches or ([1, 2] if quick else [1, 4, 16, 64, 256])
    dtypes = args.dtypes or (DTYPES if args.device.startswith("cuda") else ("fp32",))
    models = args.models
    results: dict = {"environment": environment(args.device), "bandwidth_kbps": BANDWIDTH, "quick": quick}
    save(results, output)

    if "correctness" in args.sections:
        for index, name in enumerate(models):
            with section(results, ("correctness", name), output):
                deadline = budget.section(0.25 / (len(models) - index))
                check_dtypes = args.dtypes or DTYPES
                results.setdefault("correctness", {})[name] = check_model(
                    name, args.device, quick, deadline, check_dtypes
                )
    if "throughput" in args.sections:
        for index, name in enumerate(models):
            with section(results, ("throughput", name), output):
                deadline = budget.section(0.45 / (len(models) - index))
                rows = throughput(name, args.device, dtypes, batches, clip_seconds, 0.05 if quick else 0.3, deadline)
                results.setdefault("throughput", {})[name] = rows
    if "profile" in args.sections:
        for name in models:
            with section(results, ("profile", name), output):
                if budget.left() < 30 and not quick:
                    results.setdefault("profile", {})[name] = {"skipped": "budget"}
                    continue
                dtype = "bf16" if args.device.startswith("cuda") else "fp32"
                batch = args.profile_batch or (2 if quick else 256 if name == "encodec_24khz" else 64)
                row = profile_encode(name, args.device, dtype, batch, clip_seconds)
                results.setdefault("profile", {})[name] = row
    if "tokenize" in args.sections:
        with section(results, ("tokenize",), output):
            if budget.left() < 20 and not quick:
                results["tokenize"] = {"skipped": "budget"}
            else:
                clips, batch = (4, 2) if quick else (128, 64)
                workers = args.workers or ([0, 1] if quick else [0, 8])
                results["tokenize"] = tokenize_end_to_end(args.device, clips, clip_seconds, batch, workers)
    if "compiled" in args.sections and not quick:
        for index, name in enumerate(models):
            with section(results, ("compiled", name), output):
                deadline = budget.section(0.6 / (len(models) - index))
                batch = args.compile_batch or (64 if name == "encodec_24khz" else 16)
                rows = compiled_throughput(name, args.device, dtypes, batch, clip_seconds, 0.3, deadline)
                results.setdefault("compiled", {})[name] = rows
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()
