"""Dataset tokenization: audio datasets to EnCodec codes for TTS and music language models, and back to audio.

    tokenized = tokenize_dataset(dataset, model, feature_extractor, bandwidth=6.0)
    audio = decode_tokens(model, tokenized[0])  # (channels, audio_length) float32

New columns per row: `audio_codes` int16 shaped (num_chunks, num_quantizers, frames), exactly what
`model.encode` gives for that row alone, with PAD_TOKEN (-1) on the frames past a chunk's end; `audio_scales`
float32, one per chunk (empty for models that do not normalise); `audio_length`, samples at the model's rate.
Every other column and the row order are kept. What is needed to decode a row alone (model, bandwidth, frame
rate, chunking) is stored in the dataset's metadata (`tokenization_metadata`).

`codes_to_tokens` / `tokens_to_codes` convert between rows and the flat (num_quantizers, T) stream a language model
trains on and generates, and `scale_to_token` / `token_to_scale` turn the 48 kHz model's per-chunk scales into
tokens; docs/datasets.md describes the layout with worked examples.

`tokenize_to_disk` is the command line's engine: it writes parts of `rows_per_part` rows, skips parts already
written (an interrupted run resumes without losing or repeating rows), and under `torchrun` each rank takes its
contiguous shard (`datasets.distributed.split_dataset_by_node`), rank 0 joining the parts in row order.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from .cell_loader import RowBatch, RowReader, read_batches, read_stream
from .chunking import chunk_frames, codes_length, frames_per_chunk
from .distributed import barrier, rank_and_world
from .modeling_encodec import EncodecModel
from .processing import EncodecFeatureExtractor

METADATA_KEY = "encodec_hf"
PAD_TOKEN = -1  # frames past a chunk's real end, in stored rows and code arrays: never a code id
CODE_COLUMNS = ("audio_codes", "audio_scales", "audio_length")


def _features(dataset_features, remove: tuple[str, ...] = ()):
    import datasets

    features = datasets.Features({k: v for k, v in dataset_features.items() if k not in remove})
    features["audio_codes"] = datasets.List(datasets.List(datasets.List(datasets.Value("int16"))))
    features["audio_scales"] = datasets.List(datasets.Value("float32"))
    features["audio_length"] = datasets.Value("int64")
    return features


def load_audio_dataset(source, split: str | None = None, audio_column: str = "audio"):
    """A dataset saved with save_to_disk, a folder of audio files, a Hub dataset name, or a `datasets.Dataset`,
    as a map-style Dataset whose audio is read by soundfile (`Audio(decode=False)`: torchcodec needs a CUDA torch
    here). What `encodec-hf tokenize` and `encodec-hf train` take as INPUT."""
    import datasets
    import soundfile

    loaded = source if isinstance(source, (datasets.Dataset, datasets.DatasetDict)) else None
    path = Path(str(source))
    if loaded is not None:
        pass  # already a dataset: only the split and column checks below
    elif path.is_dir() and any((path / name).exists() for name in ("state.json", "dataset_dict.json")):
        loaded = datasets.load_from_disk(str(path))
    elif path.is_dir():
        extensions = {f".{ext.lower()}" for ext in soundfile.available_formats()}
        # absolute paths: the same folder named another way (relative, through a link) is the same input
        files = sorted(p for p in path.resolve().rglob("*") if p.is_file() and p.suffix.lower() in extensions)
        if not files:
            raise ValueError(f"{source} holds no dataset (save_to_disk) and no audio files soundfile reads")
        loaded = datasets.Dataset.from_dict(
            {audio_column: [str(p) for p in files], "file": [str(p.relative_to(path.resolve())) for p in files]}
        )
        loaded = loaded.cast_column(audio_column, datasets.Audio(decode=False))
    elif path.exists():
        raise ValueError(f"{source} is a file; pass a dataset folder, a folder of audio files or a Hub dataset name")
    else:
        try:
            loaded = datasets.load_dataset(source, split=split or "train")
        except Exception as error:
            raise ValueError(
                f"cannot load dataset {source!r} (not a local folder; the Hub could not be reached "
                f"or has no such dataset): {str(error).splitlines()[0]}"
            ) from error
    if isinstance(loaded, datasets.DatasetDict):
        chosen = split or ("train" if "train" in loaded else None)
        if chosen not in loaded:
            raise ValueError(f"{source} has splits {', '.join(loaded)}; choose one with --split")
        loaded = loaded[chosen]
    if audio_column not in loaded.column_names:
        raise ValueError(
            f"{source} has no column {audio_column!r} (columns: {', '.join(loaded.column_names)}); pass --audio-column"
        )
    if isinstance(loaded.features[audio_column], datasets.Audio):
        loaded = loaded.cast_column(audio_column, datasets.Audio(decode=False))
    return loaded


RATE_COLUMN = "sampling_rate"  # the column read for plain-array audio's rate when no other is named


def resolve_rate_column(columns, sampling_rate_column: str | None = None) -> str | None:
    """The column holding each row's sampling rate, for audio given as plain arrays: `sampling_rate_column` when
    named (it must exist), else a column called `sampling_rate` when there is one, else None. `columns`: the
    dataset's column names (None: unknown, as for some streaming datasets)."""
    if sampling_rate_column is not None:
        if columns is not None and sampling_rate_column not in columns:
            raise ValueError(f"dataset has no column {sampling_rate_column!r}; its columns are {list(columns)}")
        return sampling_rate_column
    return RATE_COLUMN if columns is not None and RATE_COLUMN in columns else None


def _row_codes(encoded, item: int, length: int, config) -> tuple[list, list[float]]:
    """Item `item`'s codes (num_chunks, Q, frames) and scales from a batch encode: what encoding it alone gives,
    with PAD_TOKEN on the frames past a chunk's end."""
    real = chunk_frames(length, config)
    codes = encoded.audio_codes[: len(real), item, :, : max(real)].clone()
    for index, frames in enumerate(real):
        codes[index, :, frames:] = PAD_TOKEN
    scales = [] if encoded.audio_scales[0] is None else [float(s[item]) for s in encoded.audio_scales[: len(real)]]
    return codes.to(torch.int16).cpu().tolist(), scales  # nested lists: Arrow casts them to the int16 feature


class _Encoder:
    """The `.map` function: reads a batch of cells, encodes the readable ones, marks the others."""

    def __init__(self, model, reader: RowReader, bandwidth, on_error, encode_options=None):
        self.model, self.reader, self.bandwidth = model, reader, bandwidth
        self.on_error, self.encode_options = on_error, dict(encode_options or {})
        self.encode_seconds = 0.0  # time in the model (this process's calls)

    def __call__(self, batch: dict, indices: list[int], rank: int | None = None) -> dict:
        if rank is not None and torch.get_num_threads() != 1:
            # A worker forked by `.map(num_proc=...)`: torch's thread pool does not survive the fork, and using it
            # there can hang; one thread per worker is also what many processes want.
            torch.set_num_threads(1)
        records = [{name: batch[name][k] for name in self.reader.columns} for k in range(len(indices))]
        return self.encode_batch(self.reader.read_batch(records, indices))

    def encode_batch(self, batch: RowBatch) -> dict:
        """The new columns of a `RowBatch`: the readable rows encoded in one call, the others marked (or, with
        on_error "raise", the first refused). `encode_seconds` adds up the time spent in the model."""
        errors = {row: message for row, message in enumerate(batch.messages) if message}
        if errors and self.on_error == "raise":
            raise ValueError(
                f"cannot tokenize {next(iter(errors.values()))}; pass on_error='skip' (--on-error skip) to skip such "
                f"rows"
            )
        count = len(batch.messages)
        out = {
            "audio_codes": [[]] * count,
            "audio_scales": [[]] * count,
            "audio_length": [-1] * count,
            "__error__": list(batch.messages),
        }
        good = [row for row in range(count) if row not in errors]
        if good:
            device = self.model.device
            values, mask = batch.values, batch.padding_mask  # (B, C, T) padded to the longest, (B, T)
            if device.type == "cuda" and not values.is_pinned():  # page-locked: the copies run while the GPU works
                values, mask = values.pin_memory(), mask.pin_memory()
            start = time.perf_counter()
            with torch.inference_mode():  # the model encodes each row at its real length, from the mask
                encoded = self.model.encode(
                    values.to(device, non_blocking=True),
                    mask.to(device, non_blocking=True),
                    bandwidth=self.bandwidth,
                    **self.encode_options,
                )
            for k, row in enumerate(good):
                codes, scales = _row_codes(encoded, k, batch.lengths[k], self.model.config)  # copies to the CPU
                out["audio_codes"][row] = codes
                out["audio_scales"][row] = scales
                out["audio_length"][row] = batch.lengths[k]
            self.encode_seconds += time.perf_counter() - start
        return out


def _encode_options(model, fast_encoding, pad_chunks, chunk_batch_size) -> dict:
    """`model.encode`'s options for a tokenization run, each resolved against the model's defaults."""
    options = model.inference_options(
        fast_encoding=fast_encoding, pad_chunks=pad_chunks, chunk_batch_size=chunk_batch_size
    )
    return options.encode_kwargs()


def _metadata(model, bandwidth, skipped, encode_options: dict | None = None) -> dict:
    """What a tokenized dataset records of how it was made; `encoding` names the path that made the codes:
    "exact" (EnCodec 0.1.1's codes on CPU), "fast" or "fast, padded batches", and the device."""
    config = model.config
    options = encode_options or {}
    path = "exact"
    if options.get("fast_encoding"):
        path = "fast, padded batches" if options.get("pad_chunks") else "fast"
    return {
        "model": str(getattr(config, "_name_or_path", "") or ""),
        "bandwidth": bandwidth,
        "num_quantizers": config.num_quantizers_for_bandwidth(bandwidth),
        "frame_rate": config.frame_rate,
        "sampling_rate": config.sampling_rate,
        "audio_channels": config.audio_channels,
        "hop_length": config.hop_length,
        "chunk_length": config.chunk_length,
        "chunk_stride": config.chunk_stride,
        "codebook_size": config.codebook_size,
        "fast_encoding": bool(options.get("fast_encoding", False)),
        "encoding": path,
        "device": str(model.device),
        "skipped_rows": skipped,
    }


def _set_metadata(dataset, metadata: dict):
    dataset.info.description = json.dumps({METADATA_KEY: metadata})
    return dataset


def tokenization_metadata(dataset) -> dict:
    """What `tokenize_dataset` stored: model, bandwidth, num_quantizers, frame_rate, sampling_rate, chunking,
    `encoding` (the path that made the codes: "exact", "fast" or "fast, padded batches") and `device`,
    `skipped_rows` (a list of "row N (id=...): reason"), and where the time went: `model_busy` (the share of the
    wall time spent encoding), `audio_hours_per_second`, and the seconds behind them (`encode_seconds`,
    `wall_seconds`, `audio_seconds`; for `tokenize_to_disk`, summed over its parts, so per process under
    torchrun). `.map` with `num_proc` > 1 records no times."""
    try:
        return json.loads(dataset.info.description or "")[METADATA_KEY]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError("this dataset carries no encodec-hf tokenization metadata") from error


def tokenize_dataset(
    dataset,
    model: EncodecModel,
    feature_extractor: EncodecFeatureExtractor,
    bandwidth: float,
    audio_column: str = "audio",
    batch_size: int = 16,
    sampling_rate_column: str | None = None,
    id_column: str | None = None,
    on_error: str = "raise",
    num_proc: int | None = None,
    remove_audio_column: bool = False,
    fast_encoding: bool = False,
    pad_chunks: bool = False,
    chunk_batch_size: int | None = None,
    num_workers: int = 0,
    _offset: int = 0,
):
    """Add `audio_codes`, `audio_scales` and `audio_length` to every row of `dataset`.

    Args:
        dataset: a `datasets.Dataset` or `IterableDataset` (streaming); see `processing.read_audio_cell` for the audio
            forms accepted. Any rate and channel count is resampled and converted by `feature_extractor`.
        model, feature_extractor: an `EncodecModel` (on the GPU when it is there: move it with `.to("cuda")`)
            and its extractor.
        bandwidth: kbps, one of the model's bandwidths.
        batch_size: rows per `.map` batch. The model encodes each row at its own length (never the padding),
            so mixing long and short rows costs memory for the padded batch, not compute.
        sampling_rate_column: column holding the rate when `audio_column` holds plain arrays (default: a column
            named `sampling_rate`, when there is one).
        id_column: column to name rows by in error reports.
        on_error: "raise" (default) stops at the first row whose audio cannot be read, is empty or holds NaN;
            "skip" leaves such rows out and lists them in the metadata's `skipped_rows` (for streaming datasets,
            which have no end to list them at, they are logged as they come).
        num_proc: processes for `.map` (map-style datasets), each running the whole function, model included (CPU
            models only: CUDA does not survive the fork).
        num_workers: worker processes that read, decode, convert and resample the audio while the model encodes
            in this process (`cell_loader.read_batches` for map-style datasets, `read_stream` for streaming
            ones). 0 (default): this process reads.
            The rows, their order, their codes and the skipped rows are the same for every count; docs/datasets.md
            says how to choose it.
        remove_audio_column: drop the audio column from the result.
        fast_encoding: encode in the fast layout (`EncodecModel.encode`'s option; about 1 code in 1,000 differs at
            24 kHz). False (default): codes identical to EnCodec 0.1.1's. The metadata records which.
        pad_chunks, chunk_batch_size: with `fast_encoding`, `EncodecModel.encode`'s options: the GPU path batches
            `chunk_batch_size` chunks per call, and with `pad_chunks` clips of different lengths together
            (causal models; each clip's last frame can change, see docs/gpu.md). `encodec-hf tokenize --fast`
            sets all three.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    bandwidth = model.config.check_bandwidth(bandwidth)
    import datasets

    streaming = isinstance(dataset, datasets.IterableDataset)
    columns = list(dataset.features) if dataset.features is not None else None
    if columns is not None and audio_column not in columns:
        raise ValueError(f"dataset has no column {audio_column!r}; its columns are {columns}")
    sampling_rate_column = resolve_rate_column(columns, sampling_rate_column)
    model.eval()
    options = _encode_options(model, fast_encoding, pad_chunks, chunk_batch_size)
    reader = RowReader(feature_extractor, audio_column, sampling_rate_column, id_column, _offset)
    function = _Encoder(model, reader, bandwidth, on_error, encode_options=options)
    remove = (audio_column,) if remove_audio_column else ()
    features = None
    # Streaming datasets get no declared output features: declaring them makes datasets re-encode the Audio
    # column of every example, which imports torchcodec (unusable with a CPU torch here).
    if dataset.features is not None and not streaming:
        features = _features(dataset.features, remove)
        features["__error__"] = datasets.Value("string")
    started = time.perf_counter()
    if num_workers:
        mapped = _encode_in_workers(dataset, function, features, remove, batch_size, num_workers, num_proc, streaming)
    else:
        mapped = _encode_with_map(dataset, function, features, remove, batch_size, num_proc, streaming)
    wall = time.perf_counter() - started

    if streaming:
        return _set_metadata(_logging_skips(mapped), _metadata(model, bandwidth, "logged", options))
    errors = [e for e in mapped["__error__"] if e]
    result = mapped.filter(lambda e: not e, input_columns="__error__") if errors else mapped
    result = result.remove_columns("__error__")
    metadata = _metadata(model, bandwidth, errors, options)
    metadata["audio_seconds"] = sum(n for n in result["audio_length"] if n > 0) / model.config.sampling_rate
    if not num_proc or num_proc < 2:  # .map's processes keep their encode times to themselves
        metadata.update(_speed(function.encode_seconds, wall, metadata["audio_seconds"]))
    return _set_metadata(result, metadata)


def _logging_skips(mapped):
    """A streaming result without its unreadable rows, each logged as it comes (a stream has no end to list them
    at)."""
    from transformers.utils import logging

    logger = logging.get_logger(__name__)

    def keep(error):
        if error:
            logger.warning(f"skipped {error}")
        return not error

    return mapped.filter(keep, input_columns="__error__").remove_columns("__error__")


def _speed(encode_seconds: float, wall_seconds: float, audio_seconds: float) -> dict:
    """`model_busy`, the share of the wall time spent in the model (1.0: the model never waited for data), and
    `audio_hours_per_second`, hours of audio tokenized per second of wall time, with the three figures behind them.
    Example: 2 h of audio in 100 s, 60 of them encoding: model_busy 0.6, audio_hours_per_second 0.02."""
    wall = max(wall_seconds, 1e-9)
    return {
        "model_busy": round(encode_seconds / wall, 4),
        "audio_hours_per_second": audio_seconds / 3600 / wall,
        "encode_seconds": encode_seconds,
        "wall_seconds": wall_seconds,
        "audio_seconds": audio_seconds,
    }


def _encode_with_map(dataset, function, features, remove, batch_size, num_proc, streaming):
    """`dataset.map(function)` in batches of `batch_size` rows, with `num_proc` processes (map-style datasets)."""
    kwargs = dict(
        batched=True, batch_size=batch_size, with_indices=True, features=features, remove_columns=list(remove) or None
    )
    if not streaming:
        kwargs.update(num_proc=num_proc, with_rank=bool(num_proc and num_proc > 1), desc="Tokenizing with EnCodec")
    return dataset.map(function, **kwargs)


def _stream_in_workers(dataset, function, remove, batch_size, num_workers):
    """A streaming dataset's rows with the new columns, in row order, the audio read by `num_workers` pool
    processes (`read_stream`); lazy, like `.map` on a stream."""
    import datasets

    def rows():
        reader = read_stream(dataset, function.reader, batch_size, num_workers)
        for records, batch in reader:
            out = function.encode_batch(batch)
            for row, record in enumerate(records):  # each record less `remove`, with the new columns
                yield {**{k: v for k, v in record.items() if k not in remove}, **{name: out[name][row] for name in out}}

    return datasets.IterableDataset.from_generator(rows)


def _encode_in_workers(dataset, function, features, remove, batch_size, num_workers, num_proc, streaming):
    """`dataset.map(function)`'s result, the audio read by `num_workers` worker processes (`read_batches`): the
    dataset's columns (less `remove`) beside the new ones, in row order."""
    import datasets

    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers (--workers) must be a whole number of at least 0, got {num_workers!r}")
    if num_proc and num_proc > 1:
        raise ValueError("pass num_workers (readers beside one model) or num_proc (.map's processes), not both")
    if streaming:
        return _stream_in_workers(dataset, function, remove, batch_size, num_workers)
    columns = {name: [] for name in (*CODE_COLUMNS, "__error__")}
    cuda = function.model.device.type == "cuda"
    batches = read_batches(dataset, function.reader, batch_size, num_workers, pin_memory=cuda)
    try:
        for batch in batches:
            out = function.encode_batch(batch)
            for name, values in out.items():
                columns[name] += values
    finally:
        del batches  # the iterator's last reference: its workers stop now, on an error or Ctrl-C too
    new = datasets.Dataset.from_dict(columns, features=datasets.Features({k: features[k] for k in columns}))
    kept = dataset.remove_columns(list(remove)) if remove else dataset
    if kept._indices is not None:
        kept = kept.flatten_indices()
    return datasets.concatenate_datasets([kept, new], axis=1)


# -- the token layout a language model trains on and generates -------------------------------------------------------


def codes_to_tokens(audio_codes, audio_length: int, config) -> np.ndarray:
    """A clip's codes, (num_chunks, num_quantizers, frames) as `encode` or a tokenized row gives them, as the flat
    stream a language model trains on: (num_quantizers, T), each chunk's real frames end to end.

    Worked example, 48 kHz, 100,000 samples: chunks of [150, 150, 16] frames -> T = 316 tokens per codebook;
    columns 0-149 are chunk 0, 150-299 chunk 1, 300-315 chunk 2. At 24 kHz T is the clip's frames. Padding never
    enters the stream; `tokens_to_codes` cuts it back into chunks.
    """
    codes = np.asarray(_as_array(audio_codes), dtype=np.int64)
    real = chunk_frames(int(audio_length), config)
    if codes.ndim != 3 or codes.shape[0] < len(real) or codes.shape[2] < max(real):
        raise ValueError(
            f"audio_codes shaped {codes.shape} do not hold the {len(real)} chunk(s) of {real} frames "
            f"that {audio_length} samples make for this model"
        )
    return np.concatenate([codes[index, :, :frames] for index, frames in enumerate(real)], axis=1)


def tokens_to_codes(tokens, config) -> tuple[np.ndarray, int]:
    """A flat stream (num_quantizers, T), as a language model generated it, as codes (num_chunks, num_quantizers,
    frames) with PAD_TOKEN past the last chunk's end, and the audio length those frames decode to.

    Each chunk takes `frames_per_chunk` frames (150 at 48 kHz; the whole stream for models that do not chunk).
    A last chunk of f frames ends the audio at (num_chunks - 1) x chunk_stride + min(f x hop_length, chunk_stride)
    samples: frames past the stride lie where a next chunk would start, so a chunk plan of that length has
    exactly these chunks. Worked example, 48 kHz, T = 316: chunks of 150, 150, 16 frames, 2 x 47,520 + 16 x 320 =
    100,160 samples; T = 300: chunks of 150 and 150 frames, 47,520 + 47,520 = 95,040 samples (frame 150 of the
    last chunk lies past its stride and is not used).
    """
    tokens = np.asarray(_as_array(tokens), dtype=np.int64)
    if tokens.ndim != 2 or tokens.shape[1] == 0:
        raise ValueError(f"tokens must be shaped (num_quantizers, T) with T >= 1, got {tokens.shape}")
    per_chunk = frames_per_chunk(config)
    total = tokens.shape[1]
    if per_chunk is None:
        return tokens[None], codes_length(1, total, config)
    count = -(-total // per_chunk)
    codes = np.full((count, tokens.shape[0], per_chunk), PAD_TOKEN, dtype=np.int64)
    for index in range(count):
        piece = tokens[:, index * per_chunk : (index + 1) * per_chunk]
        codes[index, :, : piece.shape[1]] = piece
    return codes, codes_length(count, total - (count - 1) * per_chunk, config)


# Scales as tokens: a language model for the 48 kHz model generates one scale per chunk. `scale_to_token` maps a
# scale to one of `levels` log-uniform steps over [SCALE_TOKEN_RANGE]; decoded audio is linear in the scale, so the
# step bounds the cost: half a step, at most 0.68 % of the amplitude with 1,024 levels (a signal-to-error ratio of
# 43 dB at worst; tests/test_tokenization.py measures it on decoded audio).
SCALE_TOKEN_RANGE = (1e-5, 10.0)


def scale_to_token(scale, levels: int = 1024) -> np.ndarray:
    """The nearest of `levels` log-uniform steps over SCALE_TOKEN_RANGE (scales outside it are clamped)."""
    low, high = np.log(SCALE_TOKEN_RANGE[0]), np.log(SCALE_TOKEN_RANGE[1])
    position = (np.log(np.clip(np.asarray(scale, dtype=np.float64), *SCALE_TOKEN_RANGE)) - low) / (high - low)
    return np.rint(position * (levels - 1)).astype(np.int64)


def token_to_scale(token, levels: int = 1024) -> np.ndarray:
    """The scale of a token from `scale_to_token`."""
    token = np.asarray(token)
    if token.size and (token.min() < 0 or token.max() >= levels):
        raise ValueError(f"scale tokens must lie in [0, {levels}), got {token.min()} to {token.max()}")
    low, high = np.log(SCALE_TOKEN_RANGE[0]), np.log(SCALE_TOKEN_RANGE[1])
    return np.exp(low + token.astype(np.float64) / (levels - 1) * (high - low)).astype(np.float32)


def _as_array(value):
    """A cell as numpy: torch tensors through `.numpy()`, lists of tensors or arrays stacked (datasets' torch and
    numpy formats give ragged rows as lists or object arrays of them)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().numpy()
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype == object):
        items = [_as_array(item) for item in value]
        return np.stack(items) if items and all(isinstance(item, np.ndarray) for item in items) else np.asarray(items)
    return value


def decode_tokens(model: EncodecModel, rows, audio_scales=None, audio_length=None, scale_tokens=None):
    """Audio from tokenized rows or from codes a language model generated.

    `rows` is a row of a tokenized dataset (a dict with `audio_codes`, `audio_scales`, `audio_length`), a batch of
    rows (`dataset[a:b]`), in any of the formats of `datasets` (python lists, numpy, torch), or codes: a flat
    stream (num_quantizers, T) as a language model generates it (`tokens_to_codes` cuts it into chunks and gives
    its length), or (num_chunks, num_quantizers, frames) chunk by chunk, PAD_TOKEN past a chunk's end. Models that
    normalise (48 kHz) need one scale per chunk: `audio_scales`, or `scale_tokens` from `scale_to_token`.
    `audio_length` (samples) defaults to what the frames cover (`tokens_to_codes`). Codes that cannot be this
    model's (a codebook count it has no bandwidth for, chunks longer than its chunks, scales for a model that does
    not normalise) are refused with a ValueError.

    Returns float32 (channels, audio_length) numpy audio, or a list of them for a batch.
    """
    if isinstance(rows, dict) and np.ndim(_as_array(rows.get("audio_length"))) == 1:  # a batch of rows
        count = len(rows["audio_length"])
        return [decode_tokens(model, {k: rows[k][i] for k in CODE_COLUMNS if k in rows}) for i in range(count)]
    config = model.config
    if isinstance(rows, dict):
        codes, audio_scales, audio_length = rows["audio_codes"], rows.get("audio_scales"), rows.get("audio_length")
    else:
        codes = rows
    codes = np.asarray(_as_array(codes), dtype=np.int64)
    if scale_tokens is not None:
        if audio_scales is not None:
            raise ValueError("pass audio_scales or scale_tokens, not both")
        audio_scales = token_to_scale(np.asarray(_as_array(scale_tokens)).reshape(-1))
    if audio_scales is not None:
        audio_scales = [float(v) for v in np.asarray(_as_array(audio_scales), dtype=np.float64).reshape(-1)] or None
    if codes.ndim == 2:  # a flat stream
        codes, implied = tokens_to_codes(codes, config)
        audio_length = implied if audio_length is None else audio_length
    if codes.ndim != 3:
        raise ValueError(
            f"codes must be shaped (num_quantizers, T) or (num_chunks, num_quantizers, frames), got {codes.shape}"
        )
    chunks, quantizers, frames = codes.shape
    _check_model_fits(config, quantizers, chunks, frames, audio_scales)
    if audio_length is None:
        last = int(((codes[-1] != PAD_TOKEN).all(axis=0)).sum())  # the last chunk's real frames
        audio_length = codes_length(chunks, last, config)
    audio_length = int(_as_array(audio_length))
    real = chunk_frames(audio_length, config)
    if len(real) > chunks or max(real) > frames:
        raise ValueError(
            f"audio_length {audio_length} needs {len(real)} chunk(s) of {real} frames; the codes have "
            f"{chunks} of {frames}"
        )
    scales = None
    if config.normalize:
        if audio_scales is None or len(audio_scales) != chunks:
            raise ValueError(
                f"this model normalises each chunk: pass audio_scales (or scale_tokens) with one value per chunk "
                f"({chunks}), got {None if audio_scales is None else len(audio_scales)}"
            )
        scales = [torch.tensor([[s]], device=model.device) for s in audio_scales]
    codes = torch.from_numpy(np.where(codes == PAD_TOKEN, 0, codes))  # pads lie past every chunk's end: unused
    mask = torch.ones(1, audio_length, dtype=torch.bool, device=model.device)
    with torch.inference_mode():
        audio = model.decode(codes[:, None].to(model.device), scales, mask).audio_values
    return audio[0].float().cpu().numpy()


def _check_model_fits(config, quantizers: int, chunks: int, frames: int, audio_scales) -> None:
    """Refuse codes that another model made (ValueError)."""
    allowed = sorted({config.num_quantizers_for_bandwidth(b) for b in config.target_bandwidths})
    if quantizers not in allowed:
        raise ValueError(f"codes with {quantizers} codebooks: this model's bandwidths use {allowed}")
    per_chunk = frames_per_chunk(config)
    if per_chunk is not None and frames > per_chunk:
        raise ValueError(
            f"chunks of {frames} frames: this model's chunks hold at most {per_chunk} (codes of a model "
            f"that does not chunk? pass them as a flat stream (num_quantizers, T))"
        )
    if per_chunk is None and chunks != 1:
        raise ValueError(f"{chunks} chunks of codes: this model does not chunk (codes of a 48 kHz model?)")
    if not config.normalize and audio_scales:
        raise ValueError(
            "scales were given, but this model does not normalise its input: these codes come from a "
            "model that does (the 48 kHz one)"
        )


# -- on disk, resumable, one process or many ----------------------------------------------------------------------


FINGERPRINT_NAME = "fingerprint.json"


# Config fields that name where a model came from or what wrote it, not what it computes: a copied model folder
# resumes the same run.
_CONFIG_PROVENANCE = ("_name_or_path", "transformers_version", "auto_map", "architectures")


def audio_files_digest(dataset, audio_column: str) -> str | None:
    """A digest of the files the audio column reads from (path, size and modification time of each cell that is a
    path rather than bytes), or None when no cell is a file: rewriting a file in place, even its header only,
    changes it. Bytes held in the dataset are covered by datasets' own fingerprint."""
    import hashlib

    import pyarrow as pa
    import pyarrow.compute as pc

    if audio_column not in dataset.column_names:
        return None
    column = dataset.data.column(audio_column)
    if pa.types.is_struct(column.type) and column.type.get_field_index("path") >= 0:
        paths = pc.struct_field(column, "path")
        if column.type.get_field_index("bytes") >= 0:  # cells holding bytes read no file
            paths = pc.if_else(pc.is_null(pc.struct_field(column, "bytes")), paths, None)
    elif pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        paths = column
    else:
        return None
    digest, files = hashlib.sha256(), 0
    for path in paths.to_pylist():
        if path is None:
            continue
        try:
            stat = os.stat(path)
            digest.update(f"{os.path.realpath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\0missing\n".encode())  # tokenize_dataset reports it, by row
        files += 1
    return digest.hexdigest() if files else None


def run_fingerprint(dataset, model, bandwidth: float, rows_per_part: int, options: dict) -> dict:
    """What makes a tokenization run's rows: equal fingerprints, equal rows. The input counts by its content
    (datasets' fingerprint of the table with each file path made absolute, and the files' sizes and times), not
    by how its folder was named on the command line; the model by its weights and config, not by its folder."""
    import hashlib

    if hasattr(model, "weights_digest"):  # an exported model's runner: its graph files
        weights = model.weights_digest()
    else:
        digest = hashlib.sha256()
        for name, tensor in sorted(model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        weights = digest.hexdigest()
    config = json.loads(model.config.to_json_string(use_diff=False))
    return {
        "model weights (sha256)": weights,
        "model config": {key: value for key, value in config.items() if key not in _CONFIG_PROVENANCE},
        "bandwidth": float(model.config.check_bandwidth(bandwidth)),
        "input dataset (datasets fingerprint)": getattr(dataset, "_fingerprint", None),
        "input files (paths, sizes, times)": audio_files_digest(dataset, options.get("audio_column", "audio")),
        "input rows": len(dataset),
        "rows_per_part": rows_per_part,
        # how many processes read or encode changes no row
        "options": {key: value for key, value in sorted(options.items()) if key not in ("num_proc", "num_workers")},
    }


def fingerprint_differences(before: dict, now: dict) -> list[str]:
    """The fields in which two fingerprints differ, one level into dicts: ["bandwidth: 0.8 then, 0.4 now",
    "model config.sampling_rate: 24000 then, 48000 now"]."""
    differences = []
    for key in sorted(set(before) | set(now)):
        old, new = before.get(key), now.get(key)
        if old == new:
            continue
        if isinstance(old, dict) and isinstance(new, dict):
            differences += [
                f"{key}.{field}: {old.get(field)!r} then, {new.get(field)!r} now"
                for field in sorted(set(old) | set(new))
                if old.get(field) != new.get(field)
            ]
        else:
            differences.append(f"{key}: {old!r} then, {new!r} now")
    return differences


def _check_fingerprint(parts_dir: Path, fingerprint: dict) -> None:
    """Create `parts_dir` with `fingerprint`, or check that the parts already there were made the same way."""
    path = parts_dir / FINGERPRINT_NAME
    if not parts_dir.exists():
        parts_dir.mkdir(parents=True)
    if not path.exists():
        if any(parts_dir.iterdir()):
            raise ValueError(
                f"{parts_dir} holds parts with no record of how they were made: resume refused; pass restart=True "
                f"(--restart) to discard them"
            )
        path.write_text(json.dumps(fingerprint, indent=1, default=str) + "\n")
        return
    before = json.loads(path.read_text())
    now = json.loads(json.dumps(fingerprint, default=str))
    differing = fingerprint_differences(before, now)
    if differing and not any(p.name.startswith("rows-") for p in parts_dir.iterdir()):
        path.write_text(json.dumps(fingerprint, indent=1, default=str) + "\n")  # no part yet: nothing to mix
        return
    if differing:
        raise ValueError(
            f"the parts in {parts_dir} were made with other settings ({'; '.join(differing[:3])}"
            f"{'; ...' if len(differing) > 3 else ''}); pass restart=True (--restart) to discard them, or rerun "
            f"with the same settings"
        )


def _save(dataset, path: Path) -> None:
    """`save_to_disk`; a dataset with no rows as one (empty) shard: saved with datasets' default of none, it
    does not load again."""
    dataset.save_to_disk(str(path), **({"num_shards": 1} if len(dataset) == 0 else {}))


def _read_parts(parts_dir: Path, rows: int) -> tuple[list, list, dict]:
    """The parts in `parts_dir`, checked to cover rows 0 to `rows` in order, their skipped rows, and their times
    summed (None where a part has none: .map's processes record none)."""
    import datasets

    names = sorted(p.name for p in parts_dir.iterdir() if p.name.startswith("rows-"))
    expected = 0
    pieces, skipped = [], []
    times = dict.fromkeys(("encode_seconds", "wall_seconds", "audio_seconds"), 0.0)
    for name in names:
        first, last = (int(n) for n in name.split("-")[1:])
        if first != expected:
            raise RuntimeError(f"rows {expected} to {first} are missing from {parts_dir}")
        piece = datasets.load_from_disk(str(parts_dir / name))
        piece_metadata = tokenization_metadata(piece)
        skipped += piece_metadata["skipped_rows"]
        for key in times:
            times[key] = None if times[key] is None or key not in piece_metadata else times[key] + piece_metadata[key]
        pieces.append(piece)
        expected = last
    if expected != rows:
        raise RuntimeError(f"{parts_dir} covers {expected} rows of {rows}")
    return pieces, skipped, times


def _write_part(part, parts_dir: Path, name: str) -> None:
    """Save `part` as `parts_dir/name`, atomically: a part is there whole or not at all."""
    temporary = parts_dir / f".{name}.tmp-{os.getpid()}"  # one per process: two runs may share parts_dir
    shutil.rmtree(temporary, ignore_errors=True)
    _save(part, temporary)
    try:
        temporary.rename(parts_dir / name)
    except OSError:
        if not (parts_dir / name / "state.json").exists():
            raise
        shutil.rmtree(temporary)  # a concurrent run with the same fingerprint wrote the same rows first


def _tokenize_parts(shard, offset, parts_dir, rows_per_part, progress, model, feature_extractor, bandwidth, options):
    """Tokenize this process's missing parts, each written by a background thread while the next one encodes (one
    part in flight; an error writing it surfaces at the next part, and an interrupted run still finishes the part
    being written). datasets' progress bars are off meanwhile: the writer and the encoder would toggle them."""
    from concurrent.futures import ThreadPoolExecutor

    from datasets.utils import logging as datasets_logging

    shown = datasets_logging.is_progress_bar_enabled()
    datasets_logging.disable_progress_bar()
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encodec-hf-part-writer") as writer:
            pending = None
            for start in range(0, len(shard), rows_per_part):
                stop = min(start + rows_per_part, len(shard))
                name = f"rows-{offset + start:012d}-{offset + stop:012d}"
                if (parts_dir / name / "state.json").exists():
                    continue  # written by an earlier run
                rows = shard.select(range(start, stop))
                part = tokenize_dataset(rows, model, feature_extractor, bandwidth, _offset=offset + start, **options)
                if pending is not None:
                    pending.result()
                pending = writer.submit(_write_part, part, parts_dir, name)
                if progress is not None:  # rows encoded by this rank, the seconds of audio in them, the busy share
                    part_metadata = tokenization_metadata(part)
                    progress(stop - start, part_metadata["audio_seconds"], part_metadata.get("model_busy"))
            if pending is not None:
                pending.result()
    finally:
        if shown:
            datasets_logging.enable_progress_bar()


def tokenize_to_disk(
    dataset,
    model,
    feature_extractor,
    output: str | Path,
    bandwidth: float,
    rows_per_part: int = 1000,
    progress=None,
    restart: bool = False,
    **options,
) -> Path | None:
    """Tokenize a map-style `dataset` into a folder that `datasets.load_from_disk` reads.

    Parts of `rows_per_part` rows are written to `OUTPUT.parts/`; a part already there is not redone, so a run
    that was interrupted resumes where it stopped. The parts carry a fingerprint of what made them (the model's
    weights and config, the bandwidth, the input dataset, every option): a resume that differs in any of these
    raises a ValueError naming the difference, and `restart=True` discards the parts instead. Under `torchrun`
    (RANK, WORLD_SIZE set) each rank takes its contiguous shard (`split_dataset_by_node`) and rank 0 joins all
    parts in row order into OUTPUT, which is then the dataset one process writes. Returns OUTPUT on rank 0, None
    on the others. `progress(rows, seconds, model_busy)` is told after each part this process encodes: its rows,
    the seconds of audio they held, and the share of the part's time the model spent encoding (None with
    `num_proc` > 1). `num_workers` (an option of `tokenize_dataset`) reads with worker processes.
    """
    import datasets
    from datasets.distributed import split_dataset_by_node

    output = Path(output)
    parts_dir = Path(str(output) + ".parts")
    rank, world = rank_and_world()
    shard = split_dataset_by_node(dataset, rank=rank, world_size=world) if world > 1 else dataset
    # split_dataset_by_node gives contiguous shards: the first (n % world) hold one row more
    base, extra = divmod(len(dataset), world)
    offset = rank * base + min(rank, extra)
    fingerprint = run_fingerprint(dataset, model, bandwidth, rows_per_part, options)
    if rank == 0:
        if restart and parts_dir.exists():
            shutil.rmtree(parts_dir)
        _check_fingerprint(parts_dir, fingerprint)
    barrier()
    if rank != 0:
        _check_fingerprint(parts_dir, fingerprint)
    _tokenize_parts(shard, offset, parts_dir, rows_per_part, progress, model, feature_extractor, bandwidth, options)
    barrier()
    if rank != 0:
        return None
    pieces, skipped, times = _read_parts(parts_dir, len(dataset))
    filled = [piece for piece in pieces if len(piece)]  # a part whose rows were all skipped holds no table
    if filled:
        joined = datasets.concatenate_datasets(filled)
    elif pieces:
        joined = pieces[0]  # every row skipped: an empty dataset with the output's columns
    else:
        joined = tokenize_dataset(dataset, model, feature_extractor, bandwidth, **options)
    encoding = _encode_options(
        model, options.get("fast_encoding"), options.get("pad_chunks"), options.get("chunk_batch_size")
    )
    metadata = _metadata(model, model.config.check_bandwidth(bandwidth), skipped, encoding)
    if None not in times.values():
        metadata.update(_speed(times["encode_seconds"], times["wall_seconds"], times["audio_seconds"]))
    _set_metadata(joined, metadata)
    if output.exists():
        shutil.rmtree(output)
    _save(joined, output)
    shutil.rmtree(parts_dir)
    return output


__all__ = [
    "tokenize_dataset",
    "tokenize_to_disk",
    "decode_tokens",
    "resolve_rate_column",
    "tokenization_metadata",
    "codes_to_tokens",
    "tokens_to_codes",
    "scale_to_token",
    "token_to_scale",
    "PAD_TOKEN",
]
