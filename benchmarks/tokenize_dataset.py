"""Dataset tokenization end to end against encoding alone, on the same clips, for several reader counts.

    .venv/bin/python benchmarks/tokenize_dataset.py [--models tiny encodec_24khz] [--workers 0 1 2 4] [--files 48]
                                            [--threads 1] [--batch-size 8]

The clips: FLAC and WAV files at 16 and 44.1 kHz, mono and stereo, 1 to 30 s of noise (seeded), in a temporary
folder, read as `encodec-hf tokenize` reads a folder (`load_audio_dataset`: paths, `Audio(decode=False)`).
"encode only" encodes the same clips, already read and resampled, in the same batches: what the model costs.
Each `tokenize_dataset` row is a fresh run over every file with `num_workers` readers; its "model busy" is the
share of the wall time spent encoding (the rest the model waited for data) and its "x encode only" the speed
against encoding alone (1.0: reading costs nothing). Models have random weights: `cheap` (the `tiny` preset cut
down until reading costs more than encoding: the reading-bound case), `tiny` (the training preset) and the official
architectures.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from encodec_hf import EncodecConfig, EncodecFeatureExtractor, EncodecModel, tokenization_metadata, tokenize_dataset
from encodec_hf.testing import random_model
from encodec_hf.tokenization import load_audio_dataset


def write_clips(folder: Path, count: int) -> float:
    """`count` files cycling through FLAC/WAV, 16/44.1 kHz, mono/stereo, 1 to 30 s; returns their seconds."""
    rng = np.random.default_rng(0)
    total = 0.0
    for index in range(count):
        rate = (16_000, 44_100)[index % 2]
        channels = 1 + (index // 2) % 2
        seconds = float(rng.uniform(1, 30))
        audio = (rng.standard_normal((int(seconds * rate), channels)) * 0.1).astype(np.float32)
        kind = ("flac", "wav")[(index // 4) % 2]
        sf.write(folder / f"clip{index:04d}.{kind}", audio, rate, subtype="PCM_16")
        total += seconds
    return total


def cheap_model():
    """The `tiny` preset cut down until reading costs more than encoding: 1 filter, no residual layers, no LSTM
    (random weights; its codes mean nothing)."""
    torch.manual_seed(0)
    config = EncodecConfig.from_preset("tiny", num_filters=1, num_residual_layers=0, num_lstm_layers=0)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cheap", "tiny", "encodec_24khz"])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--files", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process (the encoder)")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        seconds = write_clips(folder, args.files)
        dataset = load_audio_dataset(folder)
        print(
            f"{len(dataset)} files, {seconds / 3600:.3f} h of audio; {platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}, {args.threads} thread(s) for the model"
        )
        print("\n| model | run | seconds | h of audio / s | model busy | x encode only |\n|---|---|---|---|---|---|")
        for name in args.models:
            model = cheap_model() if name == "cheap" else random_model(name, seed=0).eval()
            extractor = EncodecFeatureExtractor.from_model_config(model.config)
            alone = encode_only(model, extractor, dataset, args.batch_size)
            print(f"| {name} | encode only | {alone:.1f} | {seconds / 3600 / alone:.4f} | 100 % | 1.00 |", flush=True)
            for workers in args.workers:
                start = time.perf_counter()
                result = tokenize_dataset(
                    dataset,
                    model,
                    extractor,
                    model.config.target_bandwidths[0],
                    batch_size=args.batch_size,
                    num_workers=workers,
                )
                wall = time.perf_counter() - start
                busy = tokenization_metadata(result)["model_busy"]
                print(
                    f"| {name} | tokenize, {workers} workers | {wall:.1f} | {seconds / 3600 / wall:.4f} | "
                    f"{busy:.0%} | {alone / wall:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
