"""What the commands share: errors as one line, reading and writing audio, loading models and datasets, progress
bars, output checks and the options several commands take."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_MODEL = "facebook/encodec_48khz"
DEFAULT_BANDWIDTH = 6.0  # the original command line's default
PROGRESS_MIN_SECONDS = 30.0  # files shorter than this finish before a progress bar would help
OPEN_BARS: list = []  # progress bars drawn so far, closed by `main` however the command ends


class CommandError(Exception):
    """An error to print as one line, without a traceback."""


def read_audio(path: str | Path):
    """`audio_io.read_audio`, its errors as one line: float32 (channels, samples) and the sample rate."""
    from .. import audio_io

    check_regular_file(path)
    try:
        return audio_io.read_audio(Path(path))
    except ValueError as error:
        raise CommandError(str(error)) from error


def check_regular_file(path: str | Path) -> None:
    """Refuse a FIFO, a device or a folder given as an input file: reading one could block forever."""
    import stat

    try:
        mode = Path(path).stat().st_mode
    except OSError:
        return  # missing: the reader says so in its own words
    if not stat.S_ISREG(mode):
        raise CommandError(f"{str(path)!r} is not a regular file (a folder, FIFO or device); pass an audio file")


def write_audio(path: str | Path, audio, sample_rate: int) -> None:
    """`audio_io.write_audio` (16-bit PCM, clipped to +-0.99 as EnCodec 0.1.1 saves it), errors as one line."""
    from .. import audio_io

    try:
        audio_io.write_audio(path, audio, sample_rate)
    except ValueError as error:
        raise CommandError(str(error)) from error


def load_model(name_or_path: str):
    """The model (`modeling_onnx.load_model`: a model folder, a Hub id or an exported folder) and its feature
    extractor."""
    from ..loading import hub_reachable
    from ..modeling_onnx import load_model
    from ..processing import EncodecFeatureExtractor

    try:
        model = load_model(name_or_path)
    except ImportError as error:  # an exported folder whose runtime is not installed: its message says what to install
        raise CommandError(str(error)) from error
    try:
        local = Path(name_or_path).is_dir() or not hub_reachable()
        extractor = EncodecFeatureExtractor.from_pretrained(name_or_path, local_files_only=local)
    except OSError:
        extractor = EncodecFeatureExtractor.from_model_config(model.config)
    return model, extractor


class ProgressBar:
    """A tqdm bar over the chunks of each stage in turn, drawn from the first report on (so a command that fails
    before any work draws none), for files long enough to need one. Pass it as `progress=` to encode / decode."""

    def __init__(self, seconds: float, stages: tuple[str, ...]):
        self.enabled, self.stages, self.bar = seconds >= PROGRESS_MIN_SECONDS, stages, None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            # a share of the work rather than a count: a long 24 kHz clip is one chunk, reported piece by piece
            self.bar = tqdm(
                total=None, leave=False, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining}"
            )
            OPEN_BARS.append(self)  # closed by main() however the command ends
        self.bar.total = len(self.stages) * total
        self.bar.n = done + self.stages.index(stage) * total
        self.bar.set_description(stage)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_bar(seconds: float, stages: tuple[str, ...] = ("encode", "decode")):
    """(bar, progress): the same `ProgressBar`, to close and to pass as `progress=`."""
    bar = ProgressBar(seconds, stages)
    return bar, bar


def default_bandwidth(model, requested):
    options = model.config.target_bandwidths
    return requested if requested is not None else (DEFAULT_BANDWIDTH if DEFAULT_BANDWIDTH in options else options[0])


def check_output_folder(path: str | None, force: bool) -> None:
    """An output folder that holds files already is written into only with -f (evaluate, export)."""
    if path and Path(path).exists() and any(Path(path).iterdir()) and not force:
        raise CommandError(f"{path!r} exists and is not empty; pass -f to write into it")


def check_output(path: str, force: bool) -> Path:
    output = Path(path)
    if output.exists() and not force:
        raise CommandError(f"{str(output)!r} exists; pass -f to overwrite it")
    return output


def load_input_dataset(source: str, split: str | None, audio_column: str):
    """`tokenization.load_audio_dataset`, its errors as one line."""
    from ..tokenization import load_audio_dataset

    try:
        return load_audio_dataset(source, split, audio_column)
    except ValueError as error:
        raise CommandError(str(error)) from error


def looks_like_a_preset_or_config(name: str) -> bool:
    return name.endswith(".json") or (name in preset_names(training=True) and not Path(name).exists())


def preset_names(training: bool = False) -> tuple[str, ...]:
    """The presets, from the package's data files (configs/NAME.json) rather than the config module, whose import
    (transformers) would make `--help` take seconds."""
    from importlib import resources

    folders = ("configs", "configs/training") if training else ("configs",)
    return tuple(
        sorted(
            p.name[: -len(".json")]
            for folder in folders
            for p in resources.files("encodec_hf").joinpath(folder).iterdir()
            if p.name.endswith(".json")
        )
    )


class HelpWithDefaults(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the help already says it or there is none to show (None,
    a flag that is off)."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if not action.option_strings or "default" in text or not shown:
            return text
        return f"{text} (default: %(default)s)"


def close_bars() -> None:
    while OPEN_BARS:
        OPEN_BARS.pop().close()


class Commands:
    """Where each command module adds its parser (`add_parser(commands)`): every command's --help shows its
    defaults."""

    def __init__(self, subparsers):
        self._subparsers = subparsers

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self._subparsers.add_parser(name, formatter_class=HelpWithDefaults, **kwargs)

    def file_command(self, name, help, input_help, output_help, func, bandwidth=True, model_help=None):
        """A command from one file to another through a model: the arguments they all share."""
        command = self.add_parser(name, help=help)
        command.add_argument("input", help=input_help)
        command.add_argument("output", help=output_help)
        command.add_argument(
            "--model", default=DEFAULT_MODEL, help=model_help or f"Hub id or local folder (default {DEFAULT_MODEL})"
        )
        threads_option(command)
        if bandwidth:
            command.add_argument(
                "-b",
                "--bandwidth",
                type=float,
                default=None,
                help=f"kbps, one of the model's bandwidths (default {DEFAULT_BANDWIDTH:g} when offered)",
            )
        command.add_argument("-f", "--force", action="store_true", help="overwrite the output file")
        command.set_defaults(func=func)
        return command


def threads_option(command) -> None:
    command.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice; on a shared machine 1 can be faster than 2)",
    )


def rate_column_option(command) -> None:
    command.add_argument(
        "--sampling-rate-column",
        default=None,
        help="column holding each row's rate, when the audio column holds plain arrays (a column named "
        "sampling_rate is used when present)",
    )
