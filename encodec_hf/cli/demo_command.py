"""`encodec-hf demo`: the Gradio page (`demo.build_demo`)."""

from __future__ import annotations

from .common import DEFAULT_MODEL, CommandError, Commands, load_model, threads_option


def add_parser(commands: Commands) -> None:
    dm = commands.add_parser("demo", help="a browser page to hear, compare and A/B-test the bandwidths (Gradio)")
    dm.add_argument(
        "--model",
        action="append",
        default=None,
        help=f"Hub id or folder; repeat to offer several (default {DEFAULT_MODEL})",
    )
    dm.add_argument("--port", type=int, default=7860, help="port to serve on")
    dm.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: the whole network)")
    dm.add_argument("--votes", default="encodec-votes.csv", help="CSV file the blind A/B votes are appended to")
    dm.add_argument("--max-seconds", type=float, default=60.0, help="longest clip decoded (longer uploads are refused)")
    threads_option(dm)
    dm.set_defaults(func=demo_command)


def demo_command(args) -> int:
    try:
        from ..demo import build_demo
    except ImportError as error:
        raise CommandError(str(error)) from error
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise CommandError('the demo needs Gradio: pip install "encodec-hf[demo]" (or pip install gradio)')
    from ..demo import DemoBackend

    models = {name: load_model(name)[0].eval() for name in (args.model or [DEFAULT_MODEL])}
    backend = DemoBackend(models, args.votes, max_seconds=args.max_seconds)
    demo = build_demo(models, backend=backend)
    print(f"encodec-hf demo: http://{args.host}:{args.port} (votes go to {args.votes}); Ctrl+C stops it")
    try:
        demo.launch(server_name=args.host, server_port=args.port, show_error=False)
    finally:
        backend.close()  # the decoded files of every request
    return 0
