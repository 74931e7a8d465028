"""Peak-memory growth of encoding one long 24 kHz clip, in pieces (the exact path's default past 60 s) or whole.

    .venv/bin/python benchmarks/long_clip_memory.py SECONDS [--whole]

Builds the 24 kHz architecture with random weights (no download) and prints how much `model.encode` raised this
process's peak resident memory (VmHWM). Run one size per process: the peak only grows.
"""

import argparse
import tempfile

import torch

import encodec_hf.modeling_encodec as modeling
from encodec_hf import EncodecConfig, EncodecModel


def peak_mb() -> float:
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", type=int)
    parser.add_argument("--whole", action="store_true", help="encode the clip whole (the behaviour before pieces)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        EncodecModel(EncodecConfig.from_preset("encodec_24khz")).save_pretrained(folder)
        model = EncodecModel.from_pretrained(folder).eval()
    if args.whole:
        modeling.LONG_ENCODE_FRAMES = 10**9
    audio = torch.randn(1, 1, args.seconds * 24_000, generator=torch.Generator().manual_seed(0)) * 0.2
    base = peak_mb()
    with torch.inference_mode():
        model.encode(audio, bandwidth=1.5)
    print(f"{args.seconds} s {'whole' if args.whole else 'in pieces'}: peak memory +{peak_mb() - base:.0f} MB")


if __name__ == "__main__":
    main()
