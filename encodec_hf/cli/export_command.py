"""`encodec-hf export`: ONNX or OpenVINO graphs (`exporting.export`)."""

from __future__ import annotations

import sys

from .common import CommandError, Commands, check_output_folder, load_model, threads_option


def add_parser(commands: Commands) -> None:
    ex = commands.add_parser(
        "export", help="ONNX or OpenVINO encoder and decoder, weight norm folded, any length (docs/export.md)"
    )
    ex.add_argument("model", help="Hub id or model folder")
    ex.add_argument("--format", choices=("onnx", "openvino"), default="onnx", help="graph format")
    ex.add_argument("--output", required=True, help="folder to write (DIR/onnx/encodec_encode.onnx, ...)")
    ex.add_argument("--opset", type=int, default=18, help="ONNX opset, 18 to 23 (default 18)")
    ex.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="weights (ONNX only)")
    ex.add_argument(
        "-b", "--bandwidth", type=float, default=None, help="encode this many kbps only (default: every bandwidth)"
    )
    ex.add_argument(
        "--streaming", action="store_true", help="also the step models of frame streams (causal models: 24 kHz)"
    )
    threads_option(ex)
    ex.add_argument("-f", "--force", action="store_true", help="write into a non-empty --output")
    ex.set_defaults(func=export_command)


def export_command(args) -> int:
    from ..exporting import export

    check_output_folder(args.output, args.force)
    try:
        from ..exporting import require_runtime

        require_runtime(args.format)
    except ImportError as error:
        raise CommandError(str(error)) from error
    from ..modeling_onnx import exported_model_class

    if exported_model_class(args.model) is not None:
        raise CommandError(
            f"{args.model!r} is an exported folder (its graphs hold no trainable model); export from the model folder "
            f"it was made from"
        )
    model, _ = load_model(args.model)
    folder = export(
        model,
        args.output,
        format=args.format,
        opset=args.opset,
        dtype=args.dtype,
        bandwidth=args.bandwidth,
        streaming=args.streaming,
        progress=lambda line: print(f"encodec-hf export: {line}", file=sys.stderr, flush=True),
    )
    files = ", ".join(sorted(p.name for p in folder.iterdir()))
    print(f"wrote {folder} ({files}) and {args.output}/config.json, preprocessor_config.json")
    return 0
