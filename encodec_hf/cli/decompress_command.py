"""`encodec-hf decompress`: an .ecdc file to audio."""

from __future__ import annotations

import time
from pathlib import Path

from .common import CommandError, Commands, check_output, check_regular_file, load_model, progress_bar, write_audio


def add_parser(commands: Commands) -> None:
    decompress = commands.file_command(
        "decompress",
        "decode an .ecdc file to audio",
        ".ecdc file to read",
        "audio file to write, at the model's sample rate",
        decompress_command,
        bandwidth=False,
        model_help="Hub id or local folder (default: the model the file names, facebook/encodec_24khz or _48khz)",
    )
    decompress.set_defaults(model=None)
    decompress.add_argument(
        "-r", "--rescale", action="store_true", help="scale down to avoid clipping instead of clipping"
    )


def _model_named_in(data: bytes, source: str) -> str:
    """The Hub id of the model an .ecdc file names in its header (facebook/encodec_24khz, ...)."""
    import io

    from ..ecdc import read_header

    try:
        _, metadata = read_header(io.BytesIO(data))
    except (ValueError, EOFError) as error:
        raise CommandError(f"{source}: {error}") from error
    name = metadata.get("m")
    if name not in ("encodec_24khz", "encodec_48khz", "encodec_32khz"):
        raise CommandError(f"{source} was made with model {name!r}, which has no Hub id here; pass --model DIR")
    return f"facebook/{name}"


def decompress_command(args) -> int:
    import numpy as np

    from ..ecdc import decompress

    output = check_output(args.output, args.force)
    check_regular_file(args.input)
    try:
        data = Path(args.input).read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {args.input!r}: {error}") from error
    model, _ = load_model(args.model or _model_named_in(data, args.input))
    bar, progress = progress_bar(len(data) / 1000, ("decode",))  # ~ seconds at 6-8 kbps
    start = time.perf_counter()
    try:
        audio, rate = decompress(data, model, progress=progress)
    except EOFError as error:
        raise CommandError(f"{args.input}: {error}") from error
    elapsed = time.perf_counter() - start
    bar.close()
    if args.rescale:
        audio = audio * min(0.99 / max(float(np.abs(audio).max()), 1e-12), 1.0)
    write_audio(output, audio, rate)
    seconds = audio.shape[-1] / rate
    print(
        f"{args.input} -> {output}: {seconds:.2f} s from {len(data):,} bytes, "
        f"{8 * len(data) / seconds / 1000:.2f} kbps, {seconds / elapsed:.1f}x real time"
    )
    return 0
