"""Proof that training learns (issue 14), on this machine's CPU in about 15 minutes:

1. From scratch: the `tiny` preset trained on espeak-ng speech and synthetic music (written by
   `encodec_hf.testing.write_training_data`), held-out SI-SNR and mel distance at every bandwidth before and after,
   and a loss-curve plot.
2. Fine-tuning a converted 24 kHz model (EnCodec 0.1.1's architecture, random weights: the Hub is not reachable
   here) in `decoder` mode on the same data: the codes of the held-out clips unchanged, their mel distance lower.

    python examples/train_proof.py OUT [--steps 2000] [--batch-size 5] [--finetune-steps 30] [--eval-clips 8]
        [--eval-seconds 5]

Writes OUT/results.json, OUT/results.md and OUT/loss_curve.png (scripts/train_proof.sh installs espeak-ng first).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from encodec_hf import EncodecModel
from encodec_hf.training.trainer import Trainer, TrainingSettings, evaluate_clips, train


def read_log(path: Path) -> tuple[list[dict], list[dict]]:
    steps, evals = [], []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        (evals if "eval" in record else steps).append(record)
    return steps, evals


def plot(steps: list[dict], evals: list[dict], target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (losses, held_out, si_snr) = plt.subplots(1, 3, figsize=(15, 4))
    for name in ("l1", "mel", "feat", "adv"):
        values = [r[name] for r in steps if name in r]
        if values:
            window = 10
            smooth = [
                sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
                for i in range(len(values))
            ]
            losses.plot([r["step"] for r in steps if name in r], smooth, label=name)
    losses.set_yscale("log")
    losses.set_xlabel("step")
    losses.set_title("training losses (10-step mean)")
    losses.legend()
    for axis, metric, title in (
        (held_out, "mel_distance", "held-out mel distance (lower is better)"),
        (si_snr, "si_snr", "held-out SI-SNR, dB (higher is better)"),
    ):
        for bandwidth in evals[0]["eval"]:
            values = [e["eval"][bandwidth][metric] for e in evals]
            axis.plot([e["step"] for e in evals], values, "o-", label=f"{bandwidth} kbps")
        axis.set_xlabel("step")
        axis.set_title(title)
        axis.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=5)
    parser.add_argument("--finetune-steps", type=int, default=30)
    parser.add_argument("--eval-clips", type=int, default=8, help="held-out clips evaluated")
    parser.add_argument("--eval-seconds", type=float, default=5.0, help="each cut to at most this long")
    args = parser.parse_args()
    out = Path(args.output)
    from encodec_hf.testing import write_training_data

    train_dir, eval_dir = write_training_data(out / "data")
    results = {
        "machine": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }

    # 1. from scratch
    started = time.perf_counter()
    train(
        "tiny",
        str(train_dir),
        out / "scratch",
        eval_data=str(eval_dir),
        recipe="tiny",
        steps=args.steps,
        batch_size=args.batch_size,
        segment_seconds=1.0,
        eval_every=max(1, args.steps // 5),
        save_every=args.steps,
        eval_clips=args.eval_clips,
        eval_seconds=args.eval_seconds,
        progress=False,
    )
    steps, evals = read_log(out / "scratch" / "log.jsonl")
    results["scratch"] = {
        "command": f"encodec_hf.train('tiny', ..., recipe='tiny', steps={args.steps}, "
        f"batch_size={args.batch_size}, segment_seconds=1.0)",
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "before": evals[0]["eval"],
        "after": evals[-1]["eval"],
        "first_losses": {k: steps[0][k] for k in ("l1", "mel")},
        "last_losses": {k: sum(r[k] for r in steps[-10:]) / 10 for k in ("l1", "mel")},
        "last_perplexity": steps[-1]["perplexity"],
    }
    plot(steps, evals, out / "loss_curve.png")

    # 2. fine-tuning a converted 24 kHz model, decoder only
    from encodec_hf.convert_encodec import convert_state_dict
    from encodec_hf.testing import original_model

    start_folder = out / "converted_24khz"
    if not (start_folder / "config.json").exists():
        from encodec_hf.configuration_encodec import EncodecConfig

        config = EncodecConfig.from_preset("encodec_24khz")
        model = EncodecModel(config)
        model.load_state_dict(convert_state_dict(original_model("encodec_24khz").state_dict(), config))
        model.save_pretrained(start_folder)
    started = time.perf_counter()
    trainer = Trainer(
        str(start_folder),
        str(train_dir),
        out / "finetune",
        TrainingSettings(
            steps=args.finetune_steps,
            batch_size=2,
            segment_seconds=1.0,
            mode="decoder",
            recipe="tiny",
            save_every=args.finetune_steps,
            eval_clips=args.eval_clips,
            eval_seconds=args.eval_seconds,
            progress=False,
        ),
        eval_data=str(eval_dir),
    )
    clips = trainer.eval_clips
    before_model = EncodecModel.from_pretrained(start_folder).eval()
    before_codes = [before_model.encode(c[None], bandwidth=6.0).audio_codes for c in clips]
    before = evaluate_clips(before_model, clips, [1.5, 6.0, 24.0])
    final = trainer.train()
    after_model = EncodecModel.from_pretrained(final).eval()
    after_codes = [after_model.encode(c[None], bandwidth=6.0).audio_codes for c in clips]
    results["finetune"] = {
        "command": f"Trainer(converted 24 kHz, mode='decoder', recipe='tiny', steps={args.finetune_steps}, "
        "batch_size=2)",
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "codes_unchanged": all(torch.equal(a, b) for a, b in zip(before_codes, after_codes)),
        "before": before,
        "after": evaluate_clips(after_model, clips, [1.5, 6.0, 24.0]),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    lines = ["| run | kbps | SI-SNR before (dB) | after | mel distance before | after |", "|---|---|---|---|---|---|"]
    for run in ("scratch", "finetune"):
        for bandwidth, after in results[run]["after"].items():
            before = results[run]["before"][bandwidth]
            lines.append(
                f"| {run} | {bandwidth} | {before['si_snr']:.1f} | {after['si_snr']:.1f} | "
                f"{before['mel_distance']:.2f} | {after['mel_distance']:.2f} |"
            )
    lines.append("")
    lines.append(
        f"from scratch: {results['scratch']['minutes']} min; fine-tuning: {results['finetune']['minutes']} min, "
        f"codes unchanged: {results['finetune']['codes_unchanged']}; {results['machine']}, "
        f"{results['threads']} threads, torch {results['torch']}"
    )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
