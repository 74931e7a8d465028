"""`encodec-hf compress`: an audio file to EnCodec's .ecdc format (`ecdc.compress_file`)."""

from __future__ import annotations

import time

from .common import Commands, check_output, check_regular_file, default_bandwidth, load_model, progress_bar


def add_parser(commands: Commands) -> None:
    compress = commands.file_command(
        "compress",
        "compress an audio file to EnCodec's .ecdc format",
        "audio file to read (any format soundfile reads)",
        ".ecdc file to write",
        compress_command,
    )
    compress.add_argument(
        "--lm",
        action="store_true",
        help="entropy-code with the model's language model (converted with --lm-checkpoint)",
    )
    compress.add_argument(
        "--container",
        type=int,
        choices=(0, 1),
        default=0,
        help="0: EnCodec 0.1.1's format (default); 1: chunks framed with a CRC32, so that a damaged "
        "byte loses one chunk, and with --lm the language model's deterministic mode (files "
        "that decode on any machine, coded several times faster)",
    )


def compress_command(args) -> int:
    from ..audio_io import audio_seconds
    from ..ecdc import compress_file

    output = check_output(args.output, args.force)
    check_regular_file(args.input)
    seconds = audio_seconds(args.input)  # a file soundfile cannot read fails here, before the model loads
    model, extractor = load_model(args.model)
    bar, progress = progress_bar(seconds, ("encode",))
    start = time.perf_counter()
    size = compress_file(
        model,
        args.input,
        output,
        bandwidth=default_bandwidth(model, args.bandwidth),
        use_lm=args.lm,
        feature_extractor=extractor,
        container_version=args.container,
        progress=progress,
    )
    elapsed = time.perf_counter() - start
    bar.close()
    print(
        f"{args.input} -> {output}: {size:,} bytes for {seconds:.2f} s, "
        f"{8 * size / seconds / 1000:.2f} kbps, {seconds / elapsed:.1f}x real time"
    )
    return 0
