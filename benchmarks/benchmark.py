"""Side-by-side speed of encodec-hf, transformers' EncodecModel and the original EnCodec 0.1.1.

Same random weights (an EnCodec 0.1.1 model converted with encodec-hf), same inputs, one run:

    .venv/bin/python benchmarks/benchmark.py [--seconds 5 30] [--models encodec_48khz encodec_24khz] [--threads 2]

Each (implementation, model, length) runs in a fresh subprocess, so that the peak-memory column (growth of the
process's peak resident memory over its state after loading the model and the input) is its own. Rows:
"encodec-hf" is the default (exact encoding, channels_last decoding), "fast" adds `fast_encoding=True`, "fast
compiled" also runs `model.encoder.compile()` and `model.decoder.compile()` (the warm-up call compiles; its time,
"first call", is reported apart; "encodec-hf compiled", only when named in `--impls`, compiles the exact layout),
"bf16" loads the model with `dtype=torch.bfloat16`.
"onnxruntime", "onnxruntime fp16", "openvino" and "openvino bf16" (present when their runtime is installed) run
the model exported by `encodec_hf.export` at 6 kbps through the package's runners (`OnnxEncodecModel`,
`OpenVINOEncodecModel`, each with `--threads` threads); "openvino bf16" is the float32 export compiled with
OpenVINO's bfloat16 inference precision (its default on CPUs with bfloat16 units). Times are the best of
`--repeats` runs of encode + decode at 6 kbps after one warm-up. "error" is the decoded audio's relative L2
error against the original's output, and "codes" the share of codes that differ from the original's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def _installed(format: str) -> bool:
    import importlib.util

    return importlib.util.find_spec("onnxruntime" if format == "onnx" else "openvino") is not None


IMPLEMENTATIONS = (
    "encodec-hf",
    "encodec-hf fast",
    "encodec-hf fast compiled",
    "encodec-hf bf16",
    "transformers",
    "original",
)
OPTIONAL_IMPLEMENTATIONS = ("encodec-hf compiled",)  # only with --impls: the exact layout, compiled
# exported models (encodec-hf export, at 6 kbps) run by their runtimes, when installed: pip install 'encodec-hf[onnx]'
EXPORTED = {
    "onnxruntime": ("onnx", "float32"),
    "onnxruntime fp16": ("onnx", "float16"),
    "openvino": ("openvino", "float32"),
    "openvino bf16": ("openvino", "float32"),
}
IMPLEMENTATIONS += tuple(name for name in EXPORTED if _installed(EXPORTED[name][0]))
BANDWIDTH = 6.0


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM). Not getrusage's ru_maxrss: on Linux it carries the parent's
    peak across exec, and this script's parent builds full-size models, so small runs read as 0 MB."""
    try:
        return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
    except (OSError, IndexError):  # not Linux
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / (1024 if sys.platform == "darwin" else 1)


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    audio = torch.from_numpy(np.load(args.input))[None]  # (1, C, T)
    length = audio.shape[-1]
    if args.impl == "original":
        from encodec_hf.testing import import_original_encodec

        encodec = import_original_encodec()
        factory = {
            "encodec_24khz": encodec.EncodecModel.encodec_model_24khz,
            "encodec_48khz": encodec.EncodecModel.encodec_model_48khz,
        }[args.model]
        model = factory(pretrained=False)
        model.load_state_dict(torch.load(args.checkpoint, weights_only=True))
        model.eval().set_target_bandwidth(BANDWIDTH)

        def run():
            frames = model.encode(audio)
            return torch.cat([codes for codes, _ in frames], dim=-1), model.decode(frames)[..., :length]
    elif args.impl == "transformers":
        import transformers

        transformers.logging.set_verbosity_error()
        model = transformers.EncodecModel.from_pretrained(args.folder).eval()
        extractor = transformers.EncodecFeatureExtractor.from_pretrained(args.folder)
        clip = audio[0].numpy()
        inputs = extractor(
            clip[0] if clip.shape[0] == 1 else clip, sampling_rate=extractor.sampling_rate, return_tensors="pt"
        )

        def run():
            out = model(inputs["input_values"], inputs["padding_mask"], bandwidth=BANDWIDTH)
            codes = out.audio_codes.permute(1, 2, 0, 3).reshape(1, out.audio_codes.shape[2], -1)
            return codes, out.audio_values[..., :length]
    else:
        if args.impl in EXPORTED:  # the package's runners: encode and decode as EncodecModel's, graphs in between
            from encodec_hf import OnnxEncodecModel, OpenVINOEncodecModel

            if args.impl.startswith("onnxruntime"):
                model = OnnxEncodecModel.from_pretrained(args.export, num_threads=args.threads)
            else:
                precision = "bf16" if args.impl.endswith("bf16") else "f32"
                model = OpenVINOEncodecModel.from_pretrained(args.export, precision=precision, num_threads=args.threads)
        else:
            from encodec_hf import EncodecModel

            dtype = torch.bfloat16 if args.impl.endswith("bf16") else torch.float32
            model = EncodecModel.from_pretrained(args.folder, dtype=dtype).eval()
        fast_encoding = "fast" in args.impl
        if args.impl.endswith("compiled"):
            model.encoder.compile()
            model.decoder.compile()
        mask = torch.ones(1, length, dtype=torch.bool)

        def run():
            enc = model.encode(audio, mask, bandwidth=BANDWIDTH, fast_encoding=fast_encoding)
            audio_values = model.decode(enc.audio_codes, enc.audio_scales, mask).audio_values
            # the original's frames, concatenated: each chunk's real frames only
            from encodec_hf.chunking import num_frames, plan_chunks

            plan = plan_chunks(length, model.config.chunk_length, model.config.chunk_stride)
            codes = torch.cat(
                [
                    enc.audio_codes[i, :, :, : num_frames(size, model.config.hop_length)]
                    for i, (_, size) in enumerate(plan)
                ],
                dim=-1,
            )
            return codes, audio_values

    with torch.inference_mode():
        base = peak_rss_mb()  # model and input loaded; what the run adds on top is its own
        start = time.perf_counter()
        run()  # warm-up (and compilation, for the compiled row)
        first = time.perf_counter() - start
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            codes, audio_values = run()
            best = min(best, time.perf_counter() - start)
        grown = peak_rss_mb() - base
    np.save(args.output + ".codes.npy", codes.numpy())
    np.save(args.output + ".audio.npy", audio_values.float().numpy())
    print(json.dumps({"seconds": best, "peak_mb": grown, "first_seconds": first}))


def build_weights(model_name: str, folder: Path) -> tuple[Path, Path]:
    """An EnCodec 0.1.1 checkpoint with random weights and fitted codebooks, and its converted folder."""
    import torch

    from encodec_hf.convert_encodec import convert_checkpoint
    from encodec_hf.testing import original_model

    checkpoint = folder / f"{model_name}-random.th"
    torch.save(original_model(model_name).state_dict(), checkpoint)
    convert_checkpoint(checkpoint, model_name, folder / model_name)
    return checkpoint, folder / model_name


def build_exports(folder: Path, kinds: set, tmp: Path) -> dict:
    """{(format, dtype): folder} of the converted model exported at 6 kbps (the encoder computes the 8 codebooks
    the rows use, as the PyTorch rows do)."""
    from encodec_hf import EncodecModel, export

    model = EncodecModel.from_pretrained(folder)
    exports = {}
    for format, dtype in sorted(kinds):
        exports[format, dtype] = tmp / f"{folder.name}-{format}-{dtype}"
        export(model, exports[format, dtype], format=format, dtype=dtype, bandwidth=BANDWIDTH)
    return exports


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[5.0, 30.0])
    parser.add_argument("--models", nargs="+", default=["encodec_48khz", "encodec_24khz"])
    parser.add_argument(
        "--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=IMPLEMENTATIONS + OPTIONAL_IMPLEMENTATIONS
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for name in ("impl", "model", "input", "checkpoint", "folder", "output", "export"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    rows = []
    with tempfile.TemporaryDirectory(prefix="encodec-bench-") as tmp:
        tmp = Path(tmp)
        for model_name in args.models:
            checkpoint, folder = build_weights(model_name, tmp)
            exports = build_exports(folder, {EXPORTED[impl] for impl in args.impls if impl in EXPORTED}, tmp)
            rate, channels = (48_000, 2) if model_name == "encodec_48khz" else (24_000, 1)
            for seconds in args.seconds:
                rng = np.random.default_rng(0)
                clip = (0.1 * rng.standard_normal((channels, int(rate * seconds)))).astype(np.float32)
                np.save(tmp / "input.npy", clip)
                results = {}
                for impl in args.impls:
                    out = tmp / f"{model_name}-{seconds}-{impl.replace(' ', '_')}"
                    command = [
                        sys.executable,
                        __file__,
                        "--worker",
                        "--impl",
                        impl,
                        "--model",
                        model_name,
                        "--input",
                        str(tmp / "input.npy"),
                        "--checkpoint",
                        str(checkpoint),
                        "--folder",
                        str(folder),
                        "--output",
                        str(out),
                        "--threads",
                        str(args.threads),
                        "--repeats",
                        str(args.repeats),
                    ]
                    if impl in EXPORTED:
                        command += ["--export", str(exports[EXPORTED[impl]])]
                    done = subprocess.run(
                        command, capture_output=True, text=True, env=dict(os.environ, HF_HUB_OFFLINE="1")
                    )
                    if done.returncode != 0:
                        print(done.stderr[-2000:], file=sys.stderr)
                        raise SystemExit(f"{impl} failed on {model_name} {seconds} s")
                    stats = json.loads(done.stdout.strip().splitlines()[-1])
                    stats["codes"] = np.load(str(out) + ".codes.npy")
                    stats["audio"] = np.load(str(out) + ".audio.npy")
                    results[impl] = stats
                reference = results.get("original")
                base = results.get("transformers")
                for impl, stats in results.items():
                    row = {
                        "model": model_name,
                        "seconds": seconds,
                        "impl": impl,
                        "rtf": seconds / stats["seconds"],
                        "peak_mb": stats["peak_mb"],
                        "first": stats["first_seconds"],
                    }
                    row["vs_transformers"] = base["seconds"] / stats["seconds"] if base else None
                    if reference is not None and impl != "original":
                        ref_audio = reference["audio"]
                        row["error"] = float(np.linalg.norm(stats["audio"] - ref_audio) / np.linalg.norm(ref_audio))
                        codes, ref_codes = stats["codes"], reference["codes"]
                        row["codes"] = (
                            float((codes[..., : ref_codes.shape[-1]] != ref_codes).mean())
                            if codes.shape[:2] == ref_codes.shape[:2] and codes.shape[-1] >= ref_codes.shape[-1]
                            else None
                        )
                    rows.append(row)
                    print(f"{model_name} {seconds:g} s {impl}: {row['rtf']:.1f}x real time", file=sys.stderr)

    import torch

    print(
        f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.threads} threads; encode + decode at {BANDWIDTH:g} kbps, best of "
        f"{args.repeats}.\n"
    )
    print(
        "| model | audio | implementation | x real time | vs transformers | peak memory | error vs original | "
        "codes differing | first call |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        ratio = f"{row['vs_transformers']:.2f}x" if row.get("vs_transformers") else "-"
        error = f"{row['error']:.1e}" if row.get("error") is not None else "-"
        codes = (
            f"{100 * row['codes']:.3f} %"
            if row.get("codes") is not None
            else ("-" if row["impl"] == "original" else "n/a")
        )
        print(
            f"| {row['model']} | {row['seconds']:g} s | {row['impl']} | {row['rtf']:.1f} | {ratio} | "
            f"{row['peak_mb']:.0f} MB | {error} | {codes} | {row['first']:.1f} s |"
        )


if __name__ == "__main__":
    main()
