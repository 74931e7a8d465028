"""Does torch.compile help the encoder? Times eager and compiled encoding of the same clip, same random weights.

    .venv/bin/python benchmarks/compile.py [--model encodec_24khz] [--seconds 5] [--threads 2]

Prints the eager time, the first (compiling) call, the compiled time (each the second call after a warm-up) and
the share of codes that differ between eager and compiled.
"""

from __future__ import annotations

import argparse
import time

import torch

from encodec_hf import EncodecConfig, EncodecModel


def timed(function):
    start = time.perf_counter()
    out = function()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="encodec_24khz", choices=["encodec_24khz", "encodec_48khz"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig.from_preset(args.model)).eval()
    config = model.config
    audio = torch.randn(1, config.audio_channels, int(args.seconds * config.sampling_rate)) * 0.1
    encode = lambda: model.encode(audio, bandwidth=6.0).audio_codes  # noqa: E731
    with torch.inference_mode():
        timed(encode)
        eager, eager_seconds = timed(encode)
        model.encoder = torch.compile(model.encoder)
        _, first_seconds = timed(encode)
        compiled, compiled_seconds = timed(encode)
    print(f"{args.model}, {args.seconds:g} s, {args.threads} threads: eager {eager_seconds:.3f} s, first compiled "
          f"call {first_seconds:.1f} s, compiled {compiled_seconds:.3f} s; codes differing "
          f"{(eager != compiled).float().mean().item():.4%}")


if __name__ == "__main__":
    main()
