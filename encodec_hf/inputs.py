"""What the entry points take: the checks of audio, padding masks and codes (for `encode`, `decode`, `forward`, the
streams and the exported-model runners alike) and the inference options, resolved once per call into one value.

This module imports nothing from the package but the config's attributes it reads, so every module can import it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Options that change the numbers or the memory. Each is a keyword argument of `encode`, `decode` and `forward`;
# None there means the model's default, which `set_inference_defaults` changes (validated, never silently).
INFERENCE_DEFAULTS = {
    # exact (B, C, T) layout, each chunk alone: codes identical to EnCodec 0.1.1's
    "fast_encoding": False,
    # channels_last layout, chunks in batches: audio within a few 1e-6 of the exact path, faster on CPU
    "fast_decoding": True,
    # chunks per batch in the fast paths: the fastest measured on CPU (docs/performance.md)
    "chunk_batch_size": 4,
    # fast encoding of causal models: chunks of different lengths padded into one batch (the GPU path)
    "pad_chunks": False,
}


@dataclass(frozen=True)
class InferenceOptions:
    """The options of one call, resolved against the model's defaults: keyword arguments of `encode`, `decode` and
    `forward`, where None means the model's default (`set_inference_defaults`). `progress` is an argument of the
    same calls that travels beside them (it changes no number).

    fast_encoding (`bool`, default False): encode in the channels_last layout, several chunks per batch.
        Faster on CPU (docs/performance.md), but float rounding then differs from EnCodec 0.1.1's, and a code
        whose two nearest codebook entries are almost equally near can flip (measured: about 1 code in 1,000 at
        24 kHz, none seen at 48 kHz; the original itself changes codes between 1 and 2 threads). By default
        each chunk is encoded alone with the original's operations, so codes are identical to EnCodec 0.1.1's
        and every batch item gets exactly the codes it gets alone.
    fast_decoding (`bool`, default True): decode in the channels_last layout, `chunk_batch_size` chunks per
        batch; audio stays within a few 1e-6 (relative) of the exact path. False decodes each chunk alone with
        the original's operations.
    chunk_batch_size (`int`, default 4): chunks per batch in the fast paths; memory grows with it.
    pad_chunks (`bool`, default False): with `fast_encoding` on a causal model (the 24 kHz one), batch chunks of
        different lengths by padding them to the longest of their batch (sorted by length first, so little is
        padding): many clips per call, what a GPU needs. A causal encoder's frames do not see later samples,
        so only each clip's last frame can change: the exact path pads every strided layer's end by
        reflection, the padded batch continues into the padding (docs/gpu.md gives the measured rates).
        Models that are not causal batch equal lengths only, as without it.
    progress (callable or tqdm-like, *optional*, not a field): told of each group of chunks done, as
        `progress(stage, done, total)` with stage "encode" or "decode", or through `update(n)` and `total`.

    `encode_batch` and `decode_batch` are the chunks per batch each direction uses: `chunk_batch_size` on a fast
    path, 1 on the exact one (each chunk alone). `pad_chunks` is already narrowed to where it takes effect (fast
    encoding of a causal model)."""

    fast_encoding: bool
    fast_decoding: bool
    chunk_batch_size: int
    pad_chunks: bool

    @property
    def encode_batch(self) -> int:
        return self.chunk_batch_size if self.fast_encoding else 1

    @property
    def decode_batch(self) -> int:
        return self.chunk_batch_size if self.fast_decoding else 1

    def encode_kwargs(self) -> dict:
        """The keyword arguments of `encode` that give these options."""
        return {
            "fast_encoding": self.fast_encoding,
            "pad_chunks": self.pad_chunks,
            "chunk_batch_size": self.chunk_batch_size,
        }


def check_option(name: str, value):
    """`value` when it is a valid value of inference option `name`; a ValueError saying what is expected otherwise."""
    if name not in INFERENCE_DEFAULTS:
        raise ValueError(f"unknown inference option {name!r}; the options are {', '.join(INFERENCE_DEFAULTS)}")
    if name == "chunk_batch_size":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"chunk_batch_size must be an integer of at least 1, got {value!r}")
    elif not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def resolve_options(defaults: dict, causal: bool, **given) -> InferenceOptions:
    """One call's options: each given value (None: not given) checked, else `defaults`' (a model's). Example: with
    the package defaults, `resolve_options(INFERENCE_DEFAULTS, True, pad_chunks=True)` keeps pad_chunks False
    (it needs fast encoding); with `fast_encoding=True` too, it is True for a causal model."""
    values = {name: defaults[name] if given.get(name) is None else check_option(name, given[name]) for name in defaults}
    values["pad_chunks"] = bool(values["pad_chunks"] and values["fast_encoding"] and causal)
    return InferenceOptions(**values)


def progress_reporter(progress, stage: str):
    """`progress` as a function of (done, total): a callable `progress(stage, done, total)`, or a tqdm-like object
    (anything with `update(n)` and a settable `total`), or None."""
    if progress is None:
        return lambda done, total: None
    if hasattr(progress, "update"):
        state = {"done": 0}

        def report(done: int, total: int) -> None:
            progress.total = total
            progress.update(done - state["done"])
            state["done"] = done

        return report
    if callable(progress):
        return lambda done, total: progress(stage, done, total)
    raise ValueError(
        f"progress must be a callable (stage, done, total) or a tqdm-like object with update(), got "
        f"{type(progress).__name__}"
    )


def _shape(value) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def check_audio(config, audio, batch_size: int | None = None, what: str = "input_values") -> None:
    """Audio as `encode` (and a stream's `push`, with its `batch_size`) takes it: a finite floating point tensor
    (batch, channels, samples) with the model's channels; `encode` also needs at least one sample."""
    if not isinstance(audio, torch.Tensor) or audio.dim() != 3:
        hint = "; the feature extractor makes one" if not isinstance(audio, torch.Tensor) else ""
        raise ValueError(f"{what} must be a torch.Tensor shaped (batch, channels, samples), got {_shape(audio)}{hint}")
    batch, channels, length = audio.shape
    if channels != config.audio_channels:
        raise ValueError(
            f"this model takes {config.audio_channels}-channel audio, got {channels} channels; "
            f"EncodecFeatureExtractor converts mono <-> stereo"
        )
    if batch_size is not None and batch != batch_size:
        raise ValueError(f"this stream takes a batch of {batch_size}, got {batch} (shape {tuple(audio.shape)})")
    if batch_size is None and (batch == 0 or length == 0):
        raise ValueError(
            f"{what} is empty (shape {tuple(audio.shape)}); expected at least one clip of at least one sample"
        )
    if not audio.is_floating_point():
        raise ValueError(f"{what} must be floating point audio in [-1, 1], got {audio.dtype}")
    if audio.numel() and not all(torch.isfinite(end) for end in torch.aminmax(audio)):
        # aminmax is one pass with no temporary (isfinite(audio).all() is many times slower on a CPU): a NaN makes
        # both ends NaN, an infinity is one of them
        raise ValueError(f"{what} holds NaN or Inf samples; expected finite audio")


def real_lengths(padding_mask: torch.Tensor | None, batch: int, length: int) -> list[int]:
    """Real samples of each item: the prefix that `padding_mask` (B, T) or (B, C, T) marks; `length` each without
    one. Example: rows [1, 1, 0] and [1, 1, 1] give [2, 3]; a row [1, 0, 1] is refused (not right padding)."""
    if padding_mask is None:
        return [length] * batch
    mask = torch.as_tensor(padding_mask)
    if mask.dim() == 3:
        mask = mask.bool().any(dim=1)
    if mask.dim() != 2 or mask.shape[0] != batch or mask.shape[-1] < 1:
        raise ValueError(
            f"padding_mask must be shaped (batch, samples) or (batch, channels, samples) with batch {batch}, got "
            f"shape {tuple(padding_mask.shape)}"
        )
    mask = mask.bool()
    # counted in int32 where it cannot overflow: a bool mask's default int64 sum is several times slower on a CPU
    lengths = mask.sum(dim=-1, dtype=torch.int32 if mask.shape[-1] < 2**31 else torch.int64)
    if (mask[:, 1:] > mask[:, :-1]).any():  # a real sample right after a padded one
        raise ValueError(
            "padding_mask must mark a prefix of real samples in each row (right padding); found zeros before ones"
        )
    lengths = lengths.tolist()
    if min(lengths) == 0:
        raise ValueError(f"padding_mask marks no real sample in item {lengths.index(0)}; every item needs at least one")
    return lengths


def check_code_values(config, codes: torch.Tensor, what: str = "audio_codes") -> None:
    """Integer codes whose codebooks (dim -2) number at most the model's and whose values are in
    [0, codebook_size)."""
    if codes.is_floating_point() or codes.is_complex():
        raise ValueError(f"{what} must hold integers, got {codes.dtype}")
    quantizers = codes.shape[-2]
    if not 1 <= quantizers <= config.num_quantizers:
        raise ValueError(
            f"{what} has {quantizers} codebooks; this model has {config.num_quantizers} (1 to "
            f"{config.num_quantizers} may be given)"
        )
    if codes.numel():
        low, high = int(codes.min()), int(codes.max())
        if low < 0 or high >= config.codebook_size:
            raise ValueError(f"{what} must lie in [0, {config.codebook_size}), found values from {low} to {high}")


def check_codes(config, audio_codes, audio_scales) -> list:
    """Codes and scales as `decode` takes them: codes (num_chunks, batch, num_quantizers, frames) and one scale
    (batch, 1) per chunk (None for models that do not normalise). Returns the scales as (batch, 1, 1) tensors or
    Nones."""
    if not isinstance(audio_codes, torch.Tensor) or audio_codes.dim() != 4:
        raise ValueError(
            f"audio_codes must be a tensor shaped (num_chunks, batch, num_quantizers, frames), got "
            f"{_shape(audio_codes)}"
        )
    if min(audio_codes.shape) == 0:
        raise ValueError(f"audio_codes is empty (shape {tuple(audio_codes.shape)})")
    check_code_values(config, audio_codes)
    total_chunks, batch = audio_codes.shape[:2]
    if audio_scales is None:
        audio_scales = [None] * total_chunks
    if len(audio_scales) != total_chunks:
        raise ValueError(
            f"audio_scales has {len(audio_scales)} entries for {total_chunks} chunks of codes; expected one per chunk"
        )
    checked = []
    for index, scale in enumerate(audio_scales):
        if scale is None:
            if config.normalize:
                raise ValueError(
                    f"audio_scales[{index}] is None, but this model normalises its chunks and needs the scale that "
                    f"encode returned"
                )
            checked.append(None)
            continue
        scale = torch.as_tensor(scale, device=audio_codes.device)
        if scale.numel() != batch:
            raise ValueError(
                f"audio_scales[{index}] has {scale.numel()} values for a batch of {batch}; expected shape ({batch}, 1)"
            )
        checked.append(scale.reshape(batch, 1, 1))
    return checked


__all__ = [
    "INFERENCE_DEFAULTS",
    "InferenceOptions",
    "check_option",
    "resolve_options",
    "progress_reporter",
    "check_audio",
    "real_lengths",
    "check_code_values",
    "check_codes",
]
