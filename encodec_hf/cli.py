"""The `encodec-hf` command line: argument parsing over library functions, errors as one readable line.

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
import time
from pathlib import Path

DEFAULT_MODEL = "facebook/encodec_48khz"
DEFAULT_BANDWIDTH = 6.0  # the original command line's default
PROGRESS_MIN_SECONDS = 30.0  # files shorter than this finish before a progress bar would help
_OPEN_BARS: list = []


class CommandError(Exception):
    """An error to print as one line, without a traceback."""


def read_audio(path: str | Path):
    """`audio_io.read_audio`, its errors as one line: float32 (channels, samples) and the sample rate."""
    from . import audio_io

    _check_regular_file(path)
    try:
        return audio_io.read_audio(Path(path))
    except ValueError as error:
        raise CommandError(str(error)) from error


def _check_regular_file(path: str | Path) -> None:
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
    from . import audio_io

    try:
        audio_io.write_audio(path, audio, sample_rate)
    except ValueError as error:
        raise CommandError(str(error)) from error


def _looks_like_a_path(name: str) -> bool:
    """A Hub id is OWNER/NAME; a name that starts like a path, has more parts, or whose first part is a local folder
    means a folder on this machine, which the Hub cannot supply (so no time is spent asking it)."""
    parts = name.split("/")
    return name.startswith((".", "/", "~")) or len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens within `timeout` seconds (False at once when
    HF_HUB_OFFLINE is set)."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def load_model(name_or_path: str):
    """The model and feature extractor of a Hub id or a local folder, with one-line errors."""
    from .modeling_encodec import EncodecModel
    from .processing import EncodecFeatureExtractor

    path = Path(name_or_path)
    if not path.exists() and _looks_like_a_path(name_or_path):
        raise CommandError(
            f"--model {name_or_path!r} does not exist (a local path: {str(path.parent)!r} is a folder here); pass "
            f"an existing model folder or a Hub id OWNER/NAME"
        )
    if path.exists() and not path.is_dir():
        raise CommandError(
            f"--model {name_or_path!r} is a file; pass a model folder (encodec-hf convert "
            f"CHECKPOINT --model NAME --output DIR makes one) or a Hub id"
        )
    from .modeling_onnx import exported_model_class

    exported = exported_model_class(path)
    # An unreachable Hub makes huggingface_hub retry for half a minute: probe it once, and go to the cache at once
    offline = {} if path.is_dir() or hub_reachable() else {"local_files_only": True}
    try:
        model = exported.from_pretrained(path) if exported else EncodecModel.from_pretrained(name_or_path, **offline)
    except ImportError as error:
        raise CommandError(str(error)) from error
    except OSError as error:
        if path.is_dir():
            raise CommandError(
                f"{name_or_path!r} is not an EnCodec model folder (no config.json and "
                f"model.safetensors): {str(error).splitlines()[0]}"
            ) from error
        reason = "cannot be reached" if offline else "could not be reached or has no such model"
        raise CommandError(
            f"cannot load {name_or_path!r}: the Hugging Face Hub {reason} and it is not in the local cache; pass a "
            f"local folder with --model DIR (encodec-hf convert CHECKPOINT --model NAME --output DIR, or "
            f"--random PRESET, makes one)"
        ) from error
    try:
        extractor = EncodecFeatureExtractor.from_pretrained(name_or_path, **offline)
    except OSError:
        extractor = EncodecFeatureExtractor.from_model_config(model.config)
    return model.eval(), extractor


def export_command(args) -> int:
    from .exporting import export

    _check_output_folder(args.output, args.force)
    try:
        from .exporting import require_runtime

        require_runtime(args.format)
    except ImportError as error:
        raise CommandError(str(error)) from error
    from .modeling_onnx import exported_model_class

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


class _ProgressBar:
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
            _OPEN_BARS.append(self)  # closed by main() however the command ends
        self.bar.total = len(self.stages) * total
        self.bar.n = done + self.stages.index(stage) * total
        self.bar.set_description(stage)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _progress_bar(seconds: float, stages: tuple[str, ...] = ("encode", "decode")):
    """(bar, progress): the same `_ProgressBar`, to close and to pass as `progress=`."""
    bar = _ProgressBar(seconds, stages)
    return bar, bar


def _default_bandwidth(model, requested):
    options = model.config.target_bandwidths
    return requested if requested is not None else (DEFAULT_BANDWIDTH if DEFAULT_BANDWIDTH in options else options[0])


def _check_output_folder(path: str | None, force: bool) -> None:
    """An output folder that holds files already is written into only with -f (evaluate, export)."""
    if path and Path(path).exists() and any(Path(path).iterdir()) and not force:
        raise CommandError(f"{path!r} exists and is not empty; pass -f to write into it")


def _check_output(path: str, force: bool) -> Path:
    output = Path(path)
    if output.exists() and not force:
        raise CommandError(f"{str(output)!r} exists; pass -f to overwrite it")
    return output


def roundtrip(args) -> int:
    import torch

    output = _check_output(args.output, args.force)
    audio, rate = read_audio(args.input)
    model, extractor = load_model(args.model)
    bandwidth = model.config.check_bandwidth(_default_bandwidth(model, args.bandwidth))

    inputs = extractor(audio, sampling_rate=rate, return_tensors="pt")
    seconds = inputs["input_values"].shape[-1] / model.config.sampling_rate
    bar, progress = _progress_bar(seconds)
    start = time.perf_counter()
    with torch.inference_mode():
        encoded = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=bandwidth, progress=progress)
        decoded = model.decode(
            encoded.audio_codes, encoded.audio_scales, inputs["padding_mask"], progress=progress
        ).audio_values
    elapsed = time.perf_counter() - start
    bar.close()
    write_audio(output, decoded[0].float().numpy(), model.config.sampling_rate)

    codebooks = encoded.audio_codes.shape[2]
    kbps = codebooks * model.config.codebook_nbits * model.config.frame_rate / 1000
    print(
        f"{args.input} -> {output}: {seconds:.2f} s, {codebooks} codebooks, {kbps:g} kbps, "
        f"{seconds / elapsed:.1f}x real time (encode + decode, {elapsed:.2f} s)"
    )
    return 0


def compress_command(args) -> int:
    from . import audio_io
    from .ecdc import compress

    output = _check_output(args.output, args.force)
    audio, rate = read_audio(args.input)
    model, extractor = load_model(args.model)
    seconds = audio.shape[-1] / rate
    bar, progress = _progress_bar(seconds, ("encode",))
    start = time.perf_counter()
    data = compress(
        model,
        audio,
        rate,
        bandwidth=_default_bandwidth(model, args.bandwidth),
        use_lm=args.lm,
        feature_extractor=extractor,
        container_version=args.container,
        progress=progress,
    )
    elapsed = time.perf_counter() - start
    bar.close()
    audio_io.write_bytes(output, data)  # atomically: a full disk keeps the old file
    print(
        f"{args.input} -> {output}: {len(data):,} bytes for {seconds:.2f} s, "
        f"{8 * len(data) / seconds / 1000:.2f} kbps, {seconds / elapsed:.1f}x real time"
    )
    return 0


def _model_named_in(data: bytes, source: str) -> str:
    """The Hub id of the model an .ecdc file names in its header (facebook/encodec_24khz, ...)."""
    import io

    from .ecdc import read_header

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

    from .ecdc import decompress

    output = _check_output(args.output, args.force)
    _check_regular_file(args.input)
    try:
        data = Path(args.input).read_bytes()
    except OSError as error:
        raise CommandError(f"cannot read {args.input!r}: {error}") from error
    model, _ = load_model(args.model or _model_named_in(data, args.input))
    bar, progress = _progress_bar(len(data) / 1000, ("decode",))  # ~ seconds at 6-8 kbps
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


def convert(args) -> int:
    from .convert_encodec import convert_checkpoint, random_model

    if (args.checkpoint is None) == (args.random is None):
        raise CommandError("pass a CHECKPOINT with --model NAME, or --random PRESET for a model with random weights")
    if args.random is not None:
        from .processing import EncodecFeatureExtractor

        model = random_model(args.random, seed=args.seed, language_model=args.with_lm)
        model.save_pretrained(args.output)
        EncodecFeatureExtractor.from_model_config(model.config).save_pretrained(args.output)
        print(
            f"wrote {args.output}: {args.random} with random weights (seed {args.seed}); codes and audio mean nothing"
        )
        return 0
    if args.model is None:
        raise CommandError("--model NAME: which model the checkpoint holds")
    convert_checkpoint(args.checkpoint, args.model, args.output, lm_checkpoint=args.lm_checkpoint)
    extra = ", language_model/" if args.lm_checkpoint else ""
    print(
        f"wrote {args.output} (config.json, model.safetensors, preprocessor_config.json{extra}) from {args.checkpoint}"
    )
    return 0


def upload(args) -> int:
    from .hub_upload import HubUploadError
    from .hub_upload import upload as upload_folder

    try:
        upload_folder(
            args.source,
            args.repo_id,
            model_name=args.model,
            local_dir=args.local_dir,
            dry_run=args.dry_run,
            private=args.private,
            revision=args.revision,
            create_pr=args.create_pr,
            commit_message=args.commit_message,
            license=args.license,
            base_model=args.base_model,
        )
    except HubUploadError as error:
        raise CommandError(str(error)) from error
    return 0


def load_input_dataset(source: str, split: str | None, audio_column: str):
    """`tokenization.load_audio_dataset`, its errors as one line."""
    from .tokenization import load_audio_dataset

    try:
        return load_audio_dataset(source, split, audio_column)
    except ValueError as error:
        raise CommandError(str(error)) from error


def tokenize(args) -> int:
    from .tokenization import tokenization_metadata, tokenize_to_disk

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
    bandwidth = _default_bandwidth(model, args.bandwidth)
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
        id_column=args.id_column,
        on_error=args.on_error,
        remove_audio_column=args.drop_audio,
        restart=args.restart,
        **fast,
    )
    _close_bars()
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
    """tokenize's `progress(rows, seconds)` as a tqdm bar over rows that shows the hours of audio done."""
    from tqdm.auto import tqdm

    state = {"seconds": 0.0}

    def progress(done: int, seconds: float) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=rows, desc="tokenize", unit="row")
            _OPEN_BARS.append(state["bar"])
        state["seconds"] += seconds
        state["bar"].set_postfix_str(f"{state['seconds'] / 3600:.3f} h of audio", refresh=False)
        state["bar"].update(done)

    return progress


def _evaluation_bar():
    """A tqdm bar over (model, clip) pairs for evaluate's `progress`, drawn from the first report on."""
    from tqdm.auto import tqdm

    state = {}

    def progress(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = tqdm(total=total, desc="evaluate", unit="clip")
            _OPEN_BARS.append(state["bar"])
        state["bar"].update(done - state["bar"].n)

    return progress


def evaluate_command(args) -> int:
    from .evaluation import evaluate

    _check_output_folder(args.output, args.force)
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
    _close_bars()
    print(result.markdown(result.environment["metrics"]))
    for note in result.notes:
        print(f"note: {note}")
    if args.output:
        print(f"wrote {args.output}: results.json, results.csv, results.md and figures")
    return 0


def demo_command(args) -> int:
    try:
        from .demo import build_demo
    except ImportError as error:
        raise CommandError(str(error)) from error
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise CommandError('the demo needs Gradio: pip install "encodec-hf[demo]" (or pip install gradio)')
    from .demo import DemoBackend

    models = {name: load_model(name)[0].eval() for name in (args.model or [DEFAULT_MODEL])}
    backend = DemoBackend(models, args.votes, max_seconds=args.max_seconds)
    demo = build_demo(models, backend=backend)
    print(f"encodec-hf demo: http://{args.host}:{args.port} (votes go to {args.votes}); Ctrl+C stops it")
    try:
        demo.launch(server_name=args.host, server_port=args.port, show_error=False)
    finally:
        backend.close()  # the decoded files of every request
    return 0


def train_command(args) -> int:
    from .training.trainer import TrainingError, train

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
    model = args.model if _looks_like_a_preset_or_config(args.model) else load_model(args.model)[0]
    try:
        final = train(model, data, args.output, eval_data=eval_data, **settings)
    except TrainingError as error:
        raise CommandError(str(error)) from error
    if int(os.environ.get("RANK", "0")) == 0:  # torchrun: one line, not one per process
        print(f"trained to step {args.steps}; the model folder is {final}")
    return 0


def _looks_like_a_preset_or_config(name: str) -> bool:
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
            for p in resources.files(__package__).joinpath(folder).iterdir()
            if p.name.endswith(".json")
        )
    )


class _HelpWithDefaults(argparse.HelpFormatter):
    """Each option's help ends with its default, unless the help already says it or there is none to show (None,
    a flag that is off)."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
        if not action.option_strings or "default" in text or not shown:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    PRESETS = preset_names()

    parser = argparse.ArgumentParser(prog="encodec-hf", description="EnCodec neural audio codec, Hugging Face style.")
    subparsers = parser.add_subparsers(dest="command", required=True)

    class commands:  # every command's --help shows the defaults
        @staticmethod
        def add_parser(name, **kwargs):
            return subparsers.add_parser(name, formatter_class=_HelpWithDefaults, **kwargs)

    def threads_option(command):
        command.add_argument(
            "--threads",
            type=int,
            default=None,
            help="CPU threads for torch (default: torch's choice; on a shared machine 1 can be faster than 2)",
        )

    def rate_column_option(command):
        command.add_argument(
            "--sampling-rate-column",
            default=None,
            help="column holding each row's rate, when the audio column holds plain arrays (a column named "
            "sampling_rate is used when present)",
        )

    def file_command(name, help, input_help, output_help, func, bandwidth=True, model_help=None):
        """A command from one file to another through a model: the arguments they all share."""
        command = commands.add_parser(name, help=help)
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

    file_command(
        "roundtrip",
        "encode and decode an audio file, report bit rate and speed",
        "audio file to read (any format soundfile reads)",
        "audio file to write, at the model's sample rate",
        roundtrip,
    )
    compress = file_command(
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
    decompress = file_command(
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

    conv = commands.add_parser("convert", help="convert an original EnCodec or audiocraft checkpoint to a Hub folder")
    conv.add_argument(
        "checkpoint", nargs="?", help="encodec_24khz-*.th, encodec_48khz-*.th or compression_state_dict.bin"
    )
    conv.add_argument("--model", choices=PRESETS, help="which model the checkpoint holds")
    conv.add_argument(
        "--random",
        metavar="PRESET",
        choices=preset_names(training=True),
        help="instead of a checkpoint: a model of this preset with random weights, to try the package offline",
    )
    conv.add_argument("--seed", type=int, default=0, help="with --random: the weights' seed")
    conv.add_argument("--with-lm", action="store_true", help="with --random: a random language model too")
    conv.add_argument("--output", required=True, help="folder to write")
    conv.add_argument(
        "--lm-checkpoint",
        default=None,
        help="the original's entropy-coding language model (encodec_lm_24khz-*.th, encodec_lm_48khz-*.th)",
    )
    conv.set_defaults(func=convert)

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

    up = commands.add_parser("upload", help="build a Hub folder with remote code and a model card, check it, push it")
    up.add_argument("source", help="a model folder or Hub id, or an original checkpoint file with --model")
    up.add_argument("--repo-id", required=True, help="OWNER/NAME on the Hub")
    up.add_argument("--model", choices=PRESETS, default=None, help="which model a checkpoint file holds")
    up.add_argument("--local-dir", default=None, help="build the folder here (default: a temporary folder)")
    up.add_argument("--dry-run", action="store_true", help="build and check, list the files, push nothing")
    up.add_argument("--private", action="store_true", help="create the repo as private")
    up.add_argument("--revision", default=None, help="branch to commit to (created if missing)")
    up.add_argument("--create-pr", action="store_true", help="open a pull request instead of committing")
    up.add_argument("--commit-message", default=None, help="the Hub commit's message (default: one naming the source)")
    up.add_argument("--license", default="cc-by-nc-4.0", help="license in the model card (default: Meta's)")
    up.add_argument("--base-model", default=None, help="base_model in the model card")
    up.set_defaults(func=upload)
    return parser


def _close_bars() -> None:
    while _OPEN_BARS:
        _OPEN_BARS.pop().close()


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
        _close_bars()
        print("encodec-hf: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # One line whatever failed (a damaged safetensors file, an allocation too large, a type deep inside): the
        # message, or the error's name when it has none. ENCODEC_HF_TRACEBACK=1 shows the traceback instead.
        _close_bars()
        if os.environ.get("ENCODEC_HF_TRACEBACK"):
            raise
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not isinstance(error, (CommandError, ValueError, EOFError, OSError)):
            message = f"{type(error).__name__}: {message}"
        if isinstance(error, MemoryError) or "can't allocate memory" in message or "not enough memory" in message:
            message = f"out of memory ({message}); try a shorter file or fewer --threads"
        for python, command_line in (("on_error='skip'", "--on-error skip"), ("use_lm=True", "--lm")):
            message = message.replace(python, command_line)  # the user typed options, not Python arguments
        print(f"encodec-hf: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
