"""Side-by-side speed of .ecdc compression with the language model: encodec-hf against EnCodec 0.1.1.

Same random weights (an EnCodec 0.1.1 model and language model, converted with encodec-hf), same inputs, one run:

    .venv/bin/python benchmarks/compression.py [--seconds 5 30] [--model encodec_48khz] [--threads 2] [--repeats 1]

Rows: "original" is EnCodec 0.1.1's `compress(..., use_lm=True)` and `decompress`; "encodec-hf v0" writes the same
bytes (checked) frame by frame as the original does; "encodec-hf v1 deterministic" writes a version-1 file in the
language model's deterministic mode (`container_version=1`), teacher-forced when compressing and stepping all
chunks together when decompressing. Each is timed after a warm-up on 1 s (best of --repeats); "same codes"
checks that the file decodes to the codes the model encoded (its audio equals the audio decoded from a file
without the language model). Random weights: the language model predicts nothing, so the files are not smaller
than without it; the speed is what trained weights give, since the computation is the same.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
BANDWIDTH = 6.0


def build(model_name: str, folder: Path):
    """The original model with a random language model attached, and our converted folder."""
    from encodec_hf.convert_encodec import convert_checkpoint
    from encodec_hf.testing import import_original_encodec, original_language_model, original_model

    encodec = import_original_encodec()
    if encodec is None:
        raise SystemExit("EnCodec 0.1.1 is not installed (pip install --no-deps encodec==0.1.1)")
    original = original_model(model_name)
    original.name = model_name  # random-weight models are named "unset"; the format records the name
    lm = original_language_model(original)
    torch.save(original.state_dict(), folder / "model.th")
    torch.save(lm.state_dict(), folder / "lm.th")
    convert_checkpoint(folder / "model.th", model_name, folder / "hf", lm_checkpoint=folder / "lm.th")
    compress_module = sys.modules["encodec.compress"]
    original.get_lm_model = lambda: lm  # the original downloads its LM and builds its model by name
    compress_module.MODELS[model_name] = lambda: original
    original.set_target_bandwidth(BANDWIDTH)
    return original, compress_module, folder / "hf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 30.0])
    parser.add_argument("--model", default="encodec_48khz", choices=["encodec_48khz", "encodec_24khz"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="best of this many runs of each")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ["HF_HUB_OFFLINE"] = "1"

    from encodec_hf import EncodecModel
    from encodec_hf.ecdc import compress, decompress

    rows = []
    with tempfile.TemporaryDirectory(prefix="encodec-bench-") as tmp:
        original, original_compress, folder = build(args.model, Path(tmp))
        model = EncodecModel.from_pretrained(folder).eval()
        rate, channels = original.sample_rate, original.channels
        implementations = {
            "original": (
                lambda audio: original_compress.compress(original, torch.from_numpy(audio), use_lm=True),
                lambda data: original_compress.decompress(data)[0].numpy(),
            ),
            "encodec-hf v0": (
                lambda audio: compress(model, audio, rate, BANDWIDTH, use_lm=True),
                lambda data: decompress(data, model)[0],
            ),
            "encodec-hf v1 deterministic": (
                lambda audio: compress(model, audio, rate, BANDWIDTH, use_lm=True, container_version=1),
                lambda data: decompress(data, model)[0],
            ),
        }
        warm = (0.1 * np.random.default_rng(1).standard_normal((channels, rate))).astype(np.float32)
        with torch.no_grad():
            for encode, decode in implementations.values():
                decode(encode(warm))
        for seconds in args.seconds:
            clip = (0.1 * np.random.default_rng(0).standard_normal((channels, int(rate * seconds)))).astype(np.float32)
            reference, _ = decompress(compress(model, clip, rate, BANDWIDTH), model)  # the codes without the LM
            files = {}
            for name, (encode, decode) in implementations.items():
                best = (float("inf"), float("inf"))
                for _ in range(args.repeats):
                    with torch.no_grad():
                        start = time.perf_counter()
                        data = encode(clip)
                        middle = time.perf_counter()
                        audio = decode(data)
                        end = time.perf_counter()
                    best = min(best, (middle - start, end - middle), key=sum)
                files[name] = data
                same = None if name == "original" else bool(np.array_equal(audio, reference))
                rows.append((seconds, name, *best, 8 * len(data) / seconds / 1000, same))
                print(f"{seconds:g} s {name}: {best[0]:.2f} s + {best[1]:.2f} s", file=sys.stderr)
            if files["encodec-hf v0"] != files["original"]:
                raise SystemExit("encodec-hf's version-0 file differs from the original's")

    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.threads} threads; {args.model} at {BANDWIDTH:g} kbps, random weights, "
        f"best of {args.repeats}; "
        f"encodec-hf v0 bytes identical to the original's (checked).\n"
    )
    print("| audio | implementation | compress | decompress | total | vs original | file kbps | same codes |")
    print("|---|---|---|---|---|---|---|---|")
    base = {seconds: c + d for seconds, name, c, d, _, _ in rows if name == "original"}
    for seconds, name, c, d, kbps, same in rows:
        same_text = "-" if same is None else ("yes" if same else "NO")
        print(
            f"| {seconds:g} s | {name} | {c:.2f} s | {d:.2f} s | {c + d:.2f} s | {base[seconds] / (c + d):.2f}x | "
            f"{kbps:.2f} | {same_text} |"
        )


if __name__ == "__main__":
    main()
