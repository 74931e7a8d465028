"""Dataset tokenization end to end against encoding alone, on the same clips, for several reader counts.

    .venv/bin/python benchmarks/tokenize_dataset.py [--models cheap tiny encodec_24khz] [--workers 0 1 2 4]
        [--clips mixed flac-44k] [--files 48] [--repeats 1] [--threads 1] [--batch-size 8]

The clips, 1 to 30 s of noise (seeded) in a temporary folder, read as `encodec-hf tokenize` reads a folder
(`load_audio_dataset`: paths, `Audio(decode=False)`): `mixed` cycles through FLAC and WAV, 16 and 44.1 kHz, mono and
stereo; `flac-44k` is 44.1 kHz FLAC only, mono and stereo (the costliest to read).
"encode only" encodes the same clips, already read and resampled, in the same batches: what the model costs.
Each `tokenize_dataset` row is a run over every file with `num_workers` readers; its "model busy" is the share of the
wall time spent encoding (the rest the model waited for data), "x encode only" the speed against encoding alone
(1.0: reading costs nothing) and "x 0 workers" against the same model with no readers. With `--repeats N` the
worker counts take turns N times and each row shows the fastest run (the others in brackets): on a shared machine
the fastest is the least disturbed. Models have random weights: `cheap` (cut down until reading costs more than
encoding: the reading-bound case, a stand-in for a fast accelerator), `tiny` (the training preset) and the official
architectures.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import soundfile as sf
import torch

from encodec_hf import EncodecConfig, EncodecFeatureExtractor, EncodecModel, tokenization_metadata, tokenize_dataset
from encodec_hf.testing import random_model
from encodec_hf.tokenization import load_audio_dataset


def write_clips(folder: Path, count: int, clips: str) -> float:
    """`count` files of 1 to 30 s: `mixed` cycles through FLAC/WAV, 16/44.1 kHz, mono/stereo, `flac-44k` is 44.1 kHz
    FLAC, mono and stereo in turn; returns their seconds."""
    rng = np.random.default_rng(0)
    total = 0.0
    for index in range(count):
        rate = (16_000, 44_100)[index % 2] if clips == "mixed" else 44_100
        channels = 1 + (index // 2) % 2 if clips == "mixed" else 1 + index % 2
        kind = ("flac", "wav")[(index // 4) % 2] if clips == "mixed" else "flac"
        seconds = float(rng.uniform(1, 30))
        audio = (rng.standard_normal((int(seconds * rate), channels)) * 0.1).astype(np.float32)
        sf.write(folder / f"clip{index:04d}.{kind}", audio, rate, subtype="PCM_16")
        total += seconds
    return total


def cheap_model():
    """The `tiny` preset cut down until reading costs more than encoding: 1 filter, no residual layers, no LSTM,
    kernels of 1 and the encoder's strides reversed so that the first one is 16: past the first layer everything
    runs at a sixteenth of the rate (random weights; its codes mean nothing)."""
    torch.manual_seed(0)
    config = EncodecConfig.from_preset(
        "tiny",
        num_filters=1,
        num_residual_layers=0,
        num_lstm_layers=0,
        kernel_size=1,
        last_kernel_size=1,
        upsampling_ratios=[2, 4, 10, 16],  # the decoder's strides; the encoder takes them reversed
    )
    return EncodecModel(config).eval()


def encode_only(model, extractor, dataset, batch_size: int) -> float:
    """Seconds in `model.encode` for the clips, read, resampled and padded into batches of `batch_size` rows
    beforehand."""
    arrays = [extractor.prepare(cell) for cell in dataset["audio"]]
    batches = [
        extractor(arrays[first : first + batch_size], sampling_rate=extractor.sampling_rate, return_tensors="pt")
        for first in range(0, len(arrays), batch_size)
    ]
    times = []
    for _ in range(2):  # the best of two: the first meets each length first (oneDNN prepares a kernel per shape)
        start = time.perf_counter()
        for inputs in batches:
            with torch.inference_mode():
                model.encode(
                    inputs["input_values"], inputs["padding_mask"], bandwidth=model.config.target_bandwidths[0]
                )
        times.append(time.perf_counter() - start)
    return min(times)


def tokenize_seconds(model, extractor, dataset, batch_size: int, workers: int) -> tuple[float, float]:
    """Wall seconds of one `tokenize_dataset` run with `workers` readers, and its `model_busy`."""
    start = time.perf_counter()
    result = tokenize_dataset(
        dataset, model, extractor, model.config.target_bandwidths[0], batch_size=batch_size, num_workers=workers
    )
    return time.perf_counter() - start, tokenization_metadata(result)["model_busy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cheap", "tiny", "encodec_24khz"])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--clips", nargs="+", choices=["mixed", "flac-44k"], default=["mixed"])
    parser.add_argument("--files", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each worker count, taking turns")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process (the encoder)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    datasets.disable_progress_bars()
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} thread(s) for the "
        f"model; {args.files} files a set, batches of {args.batch_size}, {args.repeats} run(s) each"
    )
    print(
        "\n| clips | model | run | seconds | h of audio / s | model busy | x encode only | x 0 workers |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    for clips in args.clips:
        with tempfile.TemporaryDirectory() as scratch:
            seconds = write_clips(Path(scratch), args.files, clips)
            dataset = load_audio_dataset(scratch)
            name_of_set = f"{clips} ({seconds / 3600:.2f} h)"
            for name in args.models:
                model = cheap_model() if name == "cheap" else random_model(name, seed=0).eval()
                extractor = EncodecFeatureExtractor.from_model_config(model.config)
                alone = encode_only(model, extractor, dataset, args.batch_size)
                print(
                    f"| {name_of_set} | {name} | encode only | {alone:.2f} | {seconds / 3600 / alone:.4f} | 100 % | "
                    f"1.00 | |",
                    flush=True,
                )
                tokenize_seconds(model, extractor, dataset, args.batch_size, 0)  # warm-up: oneDNN meets each shape
                runs = {workers: [] for workers in args.workers}
                for _ in range(args.repeats):
                    for workers in args.workers:
                        runs[workers].append(tokenize_seconds(model, extractor, dataset, args.batch_size, workers))
                fastest = {workers: min(times) for workers, times in runs.items()}
                for workers, (wall, busy) in fastest.items():
                    others = sorted(f"{t:.2f}" for t, _ in runs[workers])[1:]
                    spread = f" ({', '.join(others)})" if others else ""
                    against_none = f"{fastest[0][0] / wall:.2f}" if 0 in fastest else ""
                    print(
                        f"| {name_of_set} | {name} | tokenize, {workers} workers | {wall:.2f}{spread} | "
                        f"{seconds / 3600 / wall:.4f} | {busy:.0%} | {alone / wall:.2f} | {against_none} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
