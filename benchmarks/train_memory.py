"""Peak memory and time of training steps of the 24 kHz model (batch 8 x 1 s, the paper recipe: MS-STFT
discriminator with 32 filters), with and without gradient checkpointing, each setting in a fresh process.

    python benchmarks/train_memory.py [--batch-size 8] [--steps 2] [--threads 2]

Prints a Markdown table: peak resident memory (VmHWM, the whole process: model, optimiser states, activations) and
seconds per step after the first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def worker(args) -> None:
    import datasets
    import numpy as np
    import torch

    from encodec_hf.training.trainer import Trainer, TrainingSettings

    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    rows = [{"array": (0.2 * rng.standard_normal(36000)).astype(np.float32), "sampling_rate": 24000} for _ in range(8)]
    data = datasets.Dataset.from_dict({"audio": rows})
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        settings = TrainingSettings(
            steps=args.steps,
            batch_size=args.batch_size,
            segment_seconds=1.0,
            gradient_checkpointing=args.checkpointing,
            save_every=0,
            progress=False,
        )
        trainer = Trainer("encodec_24khz", data, folder, settings)
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            trainer.step()
            times.append(time.perf_counter() - start)
    peak = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
    print(json.dumps({"peak_mb": peak, "seconds_per_step": sum(times[1:]) / max(1, len(times) - 1)}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpointing", action="store_true")
    parser.add_argument("--worker", action="store_true")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"| 24 kHz model, batch {args.batch_size} x 1 s | peak memory | seconds per step |")
    print("|---|---|---|")
    for checkpointing in (False, True):
        command = [sys.executable, __file__, "--worker", "--batch-size", str(args.batch_size)]
        command += ["--steps", str(args.steps), "--threads", str(args.threads)]
        command += ["--checkpointing"] if checkpointing else []
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        numbers = json.loads(result.stdout.strip().splitlines()[-1])
        label = "gradient checkpointing" if checkpointing else "plain"
        print(f"| {label} | {numbers['peak_mb'] / 1024:.1f} GB | {numbers['seconds_per_step']:.1f} |")


if __name__ == "__main__":
    main()
