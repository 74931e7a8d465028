"""`encodec-hf tokenize`: EnCodec codes for every row of an audio dataset, resumable (`tokenize_to_disk`)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .common import (
    DEFAULT_MODEL,
    OPEN_BARS,
    CommandError,
    Commands,
    close_bars,
    default_bandwidth,
    load_input_dataset,
    load_model,
    rate_column_option,
    threads_option,
)


def add_parser(commands: Commands) -> None:
    tok = commands.add_parser("tokenize", help="add EnCodec codes to every row of an audio dataset")
    tok.add_argument("input", help="a dataset saved with save_to_disk, a folder of audio files, or a Hub dataset name")
    tok.add_argument("--model", default=DEFAULT_MODEL, help=f"Hub id or local folder (default {DEFAULT_MODEL})")
    threads_option(tok)
    tok.add_argument("--output", required=True, help="folder to write (datasets.load_from_disk reads it)")
    tok.add_argument("-b", "--bandwidth", type=float, default=None, help="kbps (default 6 when offered)")
    tok.add_argument("--audio-column", default="audio", help="column holding the audio (files, bytes or arrays)")
    rate_column_option(tok)
    tok.add_argument("--id-column", default=None, help="column that names rows in error reports")
    tok.add_argument("--batch-size", type=int, default=16, help="rows encoded per call (--fast: chunks per call)")
    tok.add_argument("--split", default=None, help="split of a DatasetDict or Hub dataset (default train)")
    tok.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="rows whose audio cannot be read, is empty or holds NaN: stop, or skip and list them",
    )
    tok.add_argument("--rows-per-part", type=int, default=1000, help="rows per resumable part")
    tok.add_argument(
        "--workers",
        type=int,
        default=0,
        help="processes that read, decode and resample the audio while the model encodes (0: the main process "
        "reads; docs/datasets.md says how many)",
    )
    tok.add_argument(
        "--drop-audio", action="store_true", help="leave the audio column out of the output (it keeps every other)"
    )
    tok.add_argument("-f", "--force", action="store_true", help="overwrite an existing --output")
    tok.add_argument(
        "--device", default=None, help="where the model runs: cpu, cuda, cuda:1, ... (default: cuda when present)"
    )
    tok.add_argument(
        "--fast",
        action="store_true",
        help="the batched path for GPUs: --batch-size chunks per call, clips of different lengths padded together "
        "(codes differ from the exact path's at a measured rate: docs/gpu.md; the output's metadata says which)",
    )
    tok.add_argument(
        "--restart", action="store_true", help="discard the parts of an earlier run instead of resuming from them"
    )
    tok.set_defaults(func=tokenize)


def tokenize(args) -> int:
    from ..tokenization import tokenization_metadata, tokenize_to_disk

    if Path(args.output).exists() and not args.force:
        raise CommandError(f"{args.output!r} exists; pass -f to overwrite it")

    dataset = load_input_dataset(args.input, args.split, args.audio_column)
    model, extractor = load_model(args.model)
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    try:
        model.to(device)
    except (RuntimeError, AssertionError) as error:  # no such device, or a torch built without CUDA
        raise CommandError(f"--device {args.device}: {str(error).splitlines()[0]}") from error
    bandwidth = default_bandwidth(model, args.bandwidth)
    fast = dict(fast_encoding=True, pad_chunks=True, chunk_batch_size=args.batch_size) if args.fast else {}
    world = int(os.environ.get("WORLD_SIZE", "1"))  # torchrun: rank 0's bar, over its shard
    bar = _audio_bar(-(-len(dataset) // world)) if int(os.environ.get("RANK", "0")) == 0 else None
    output = tokenize_to_disk(
        dataset,
        model,
        extractor,
        args.output,
        bandwidth,
        progress=bar,
        rows_per_part=args.rows_per_part,
        audio_column=args.audio_column,
        sampling_rate_column=args.sampling_rate_column,
        batch_size=args.batch_size,
        num_workers=args.workers,
        id_column=args.id_column,
        on_error=args.on_error,
        remove_audio_column=args.drop_audio,
        restart=args.restart,
        **fast,
    )
    close_bars()
    if output is not None:  # rank 0
        import datasets

        written = datasets.load_from_disk(str(output))
        skipped = tokenization_metadata(written)["skipped_rows"]
        print(
            f"wrote {len(written)} rows to {output} at {bandwidth:g} kbps"
            + (f"; skipped {len(skipped)}: " + "; ".join(skipped[:5]) if skipped else "")
        )
    return 0


def _audio_bar(rows: int):
    """tokenize's `progress(rows, seconds, model_busy)` as a tqdm bar over rows that shows the hours of audio done,
    hours of audio per second, and how busy the model was in the last part (the rest of the time it waited for
    data: more --workers helps while it is well below 100 %)."""
    from tqdm.auto import tqdm

    state = {"seconds": 0.0, "start": time.perf_counter()}

    def progress(done: int, seconds: float, busy: float | None = None) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=rows, desc="tokenize", unit="row")
            OPEN_BARS.append(state["bar"])
        state["seconds"] += seconds
        hours, elapsed = state["seconds"] / 3600, max(time.perf_counter() - state["start"], 1e-9)
        shown = f"{hours:.3f} h of audio, {hours / elapsed:.4f} h/s" + (f", model busy {busy:.0%}" if busy else "")
        state["bar"].set_postfix_str(shown, refresh=False)
        state["bar"].update(done)

    return progress
