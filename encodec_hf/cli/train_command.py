"""`encodec-hf train`: train or fine-tune (`training.train`)."""

from __future__ import annotations

import os

from .common import (
    CommandError,
    Commands,
    load_input_dataset,
    load_model,
    looks_like_a_preset_or_config,
    preset_names,
    rate_column_option,
    threads_option,
)


def add_parser(commands: Commands) -> None:
    tr = commands.add_parser("train", help="train EnCodec from scratch or fine-tune a model (docs/training.md)")
    tr.add_argument(
        "--model",
        required=True,
        help=f"a model folder or Hub id (fine-tune), a preset ({', '.join(preset_names(training=True))}) or a "
        "config.json (from scratch)",
    )
    tr.add_argument(
        "--data", required=True, help="what tokenize takes: a save_to_disk folder, audio folder or Hub name"
    )
    tr.add_argument("--output", required=True, help="checkpoints, log.jsonl and final/; rerun to resume")
    threads_option(tr)
    tr.add_argument("--steps", type=int, default=1000, help="optimiser steps in all (a resumed run may raise it)")
    tr.add_argument("--batch-size", type=int, default=8, help="segments per step (per process)")
    tr.add_argument("--segment-seconds", type=float, default=1.0, help="length of each training segment")
    tr.add_argument(
        "--lr", type=float, default=None, help="learning rate (default: the recipe's: paper 3e-4, tiny 1e-3)"
    )
    tr.add_argument(
        "--recipe",
        choices=("paper", "audiocraft", "tiny"),
        default=None,
        help="loss weights, schedule and optimiser (default: tiny for --model tiny, else paper)",
    )
    tr.add_argument(
        "--mode",
        choices=("full", "decoder", "frozen-codebooks"),
        default="full",
        help="what trains: everything; the decoder alone (every code stays); all but the codebooks",
    )
    tr.add_argument("--eval-data", default=None, help="held-out audio, evaluated at each bandwidth")
    tr.add_argument("--eval-every", type=int, default=0, help="steps between evaluations (0: start and end)")
    tr.add_argument("--save-every", type=int, default=500, help="steps between checkpoints (0: the end only)")
    tr.add_argument("--seed", type=int, default=0, help="seed of every random draw (weights, segments, GAN steps)")
    tr.add_argument("--gradient-checkpointing", action="store_true", help="less memory, about a third slower")
    tr.add_argument("--discriminator-filters", type=int, default=None, help="the recipe's is 32")
    tr.add_argument(
        "--adversarial-start",
        type=int,
        default=None,
        help="steps on the reconstruction losses alone before the GAN (default: the recipe's; paper: 0)",
    )
    tr.add_argument("--bf16", action="store_true", help="bfloat16 autocast (for GPUs)")
    tr.add_argument("--audio-column", default="audio", help="column holding the audio")
    rate_column_option(tr)
    tr.add_argument("--split", default=None, help="split of a DatasetDict or Hub dataset (default train)")
    tr.set_defaults(func=train_command)


def train_command(args) -> int:
    from ..training.trainer import TrainingError, train

    settings = dict(
        steps=args.steps,
        batch_size=args.batch_size,
        segment_seconds=args.segment_seconds,
        recipe=args.recipe,
        lr=args.lr,
        mode=args.mode,
        eval_every=args.eval_every,
        save_every=args.save_every,
        seed=args.seed,
        gradient_checkpointing=args.gradient_checkpointing,
        discriminator_filters=args.discriminator_filters,
        adversarial_start=args.adversarial_start,
        bf16=args.bf16,
        audio_column=args.audio_column,
        sampling_rate_column=args.sampling_rate_column,
    )
    data = load_input_dataset(args.data, args.split, args.audio_column)
    eval_data = load_input_dataset(args.eval_data, None, args.audio_column) if args.eval_data else None
    # a folder or Hub id is loaded once, here, so that a missing one fails in one line; presets are built by train
    model = args.model if looks_like_a_preset_or_config(args.model) else load_model(args.model)[0]
    try:
        final = train(model, data, args.output, eval_data=eval_data, **settings)
    except TrainingError as error:
        raise CommandError(str(error)) from error
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one line, not one per process
        print(f"trained to step {args.steps}; the model folder is {final}")
    return 0
