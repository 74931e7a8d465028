"""The `encodec-hf` command line: one module per command (`NAME_command.py`: its parser beside its handler), over
library functions; errors as one readable line.

encodec-hf roundtrip IN OUT [--model ID_OR_DIR] [--bandwidth BW] [-f]
encodec-hf convert CHECKPOINT --model {encodec_24khz,encodec_32khz,encodec_48khz} --output DIR [--lm-checkpoint LM]
encodec-hf compress IN OUT.ecdc [--model ID_OR_DIR] [-b BW] [--lm] [-f]
encodec-hf decompress IN.ecdc OUT.wav [--model ID_OR_DIR] [-f] [-r]   (default model: the one the file names)
encodec-hf tokenize INPUT --model ID_OR_DIR --output DIR [--bandwidth BW] [--audio-column NAME]
                    [--batch-size N] [--split NAME] [--on-error {raise,skip}] [--id-column NAME]
encodec-hf train --model ID_OR_DIR_OR_PRESET --data INPUT --output DIR [--steps N] [--batch-size B]
                 [--segment-seconds S] [--lr LR] [--recipe {paper,audiocraft,tiny}]
                 [--mode {full,decoder,frozen-codebooks}]
                 [--eval-data INPUT] [--eval-every K] [--save-every K] [--seed S] [--gradient-checkpointing] ...
encodec-hf export MODEL --output DIR [--format {onnx,openvino}] [--opset N] [--dtype {float32,float16}] [-b BW]
                  [--streaming]
encodec-hf upload SOURCE --repo-id OWNER/NAME [--model NAME] [--local-dir DIR] [--dry-run] [--private]
                  [--revision REV] [--create-pr] [--commit-message MSG] [--license ID] [--base-model ID]
"""

from __future__ import annotations

import argparse
import os
import sys

from . import (
    compress_command,
    convert_command,
    decompress_command,
    demo_command,
    evaluate_command,
    export_command,
    roundtrip_command,
    tokenize_command,
    train_command,
    upload_command,
)
from .common import CommandError, Commands, close_bars

# in the order `encodec-hf --help` lists them
COMMANDS = (
    roundtrip_command,
    compress_command,
    decompress_command,
    convert_command,
    tokenize_command,
    train_command,
    evaluate_command,
    demo_command,
    export_command,
    upload_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="encodec-hf", description="EnCodec neural audio codec, Hugging Face style.")
    commands = Commands(parser.add_subparsers(dest="command", required=True))
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # per-tensor loading bars would bury our one-line reports
    if getattr(args, "threads", None) is not None:
        if args.threads < 1:
            print(f"encodec-hf: error: --threads must be at least 1, got {args.threads}", file=sys.stderr)
            return 2
        import torch

        torch.set_num_threads(args.threads)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        close_bars()
        print("encodec-hf: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # One line whatever failed (a damaged safetensors file, an allocation too large, a type deep inside): the
        # message, or the error's name when it has none. ENCODEC_HF_TRACEBACK=1 shows the traceback instead.
        close_bars()
        if os.environ.get("ENCODEC_HF_TRACEBACK"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not isinstance(error, (CommandError, ValueError, EOFError, OSError)):
            message = f"{type(error).__name__}: {message}"
        if isinstance(error, MemoryError) or "can't allocate memory" in message or "not enough memory" in message:
            message = f"out of memory ({message}); try a shorter file or fewer --threads"
        print(f"encodec-hf: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
