"""`encodec-hf evaluate`: quality, bit rate and speed tables and figures (`evaluate`)."""

from __future__ import annotations

from pathlib import Path

from .common import (
    DEFAULT_MODEL,
    OPEN_BARS,
    Commands,
    check_output_folder,
    close_bars,
    load_input_dataset,
    load_model,
    read_audio,
    threads_option,
)


def add_parser(commands: Commands) -> None:
    ev = commands.add_parser(
        "evaluate", help="SI-SNR, mel distance, PESQ, real bit rates and speed; tables and figures (docs/evaluation.md)"
    )
    ev.add_argument("input", help="an audio file, or what tokenize takes (dataset folder, audio folder, Hub name)")
    ev.add_argument(
        "--model", action="append", default=None, help=f"Hub id or folder; repeat to compare (default {DEFAULT_MODEL})"
    )
    threads_option(ev)
    ev.add_argument("-b", "--bandwidth", type=float, action="append", help="kbps; repeat (default: all)")
    ev.add_argument("--lm", action="store_true", help="also the bit rate with the model's language model")
    ev.add_argument("--metrics", nargs="+", default=None, help="default: si_snr si_sdr mel_distance ... pesq stoi")
    ev.add_argument(
        "--output", default=None, help="folder for results.json/.csv/.md, rate_distortion.png, spectrograms"
    )
    ev.add_argument("--max-clips", type=int, default=None, help="evaluate at most this many clips (default: all)")
    ev.add_argument("--figures", type=int, default=4, help="clips per model drawn as spectrograms")
    ev.add_argument("--audio-column", default="audio", help="column holding the audio")
    ev.add_argument("--split", default=None, help="split of a DatasetDict or Hub dataset (default train)")
    ev.add_argument(
        "--on-error",
        choices=("raise", "skip"),
        default="raise",
        help="clips that cannot be read, are empty or hold NaN: stop, or skip them and say so in the notes",
    )
    ev.add_argument("-f", "--force", action="store_true", help="write into a non-empty --output")
    ev.set_defaults(func=evaluate_command)


def evaluate_command(args) -> int:
    from ..evaluation import evaluate

    check_output_folder(args.output, args.force)
    models = [load_model(name)[0] for name in (args.model or [DEFAULT_MODEL])]
    source = args.input
    if Path(source).is_file():  # one audio file
        source = [read_audio(source)]
    else:
        source = load_input_dataset(source, args.split, args.audio_column)
    result = evaluate(
        models,
        source,
        bandwidths=args.bandwidth,
        use_lm=args.lm,
        metrics=args.metrics,
        audio_column=args.audio_column,
        max_clips=args.max_clips,
        output=args.output,
        figures=args.figures,
        progress=_evaluation_bar(),
        on_error=args.on_error,
    )
    close_bars()
    print(result.markdown(result.environment["metrics"]))
    for note in result.notes:
        print(f"note: {note}")
    if args.output:
        print(f"wrote {args.output}: results.json, results.csv, results.md and figures")
    return 0


def _evaluation_bar():
    """A tqdm bar over (model, clip) pairs for evaluate's `progress`, drawn from the first report on."""
    from tqdm.auto import tqdm

    state = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc="evaluate", unit="clip")
            OPEN_BARS.append(state["bar"])
        state["bar"].update(done - state["bar"].n)

    return progress
