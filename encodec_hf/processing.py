"""Audio preparation for EnCodec: dtype and channel conversion, resampling, padding, and the chunk plan.

The processor prepares, the model computes: everything here turns what users have (int16 or float arrays,
tensors, any sample rate, mono or stereo, clips of different lengths) into `input_values` (batch, channels, T)
at the model's rate and a `padding_mask` (batch, T) that marks each clip's real samples. The chunk plan of the
48 kHz model is defined once, in `chunking.plan_chunks`, which the model uses too.
"""

from __future__ import annotations

import numpy as np
from transformers import BatchFeature, SequenceFeatureExtractor
from transformers.utils import logging

from .audio_io import read_audio
from .chunking import chunk_sizes, plan_chunks

logger = logging.get_logger(__name__)

# Plausible rates: below 1 kHz is a unit mistake (16 meant as 16 kHz), and resampling such a clip to the model's
# rate would allocate thousands of times its size; above 384 kHz no audio interface records.
MIN_SAMPLING_RATE, MAX_SAMPLING_RATE = 1_000, 384_000
# Float audio is expected in [-1, 1]; a peak above this is integer PCM stored as float (int16 peaks near 32,767).
MAX_FLOAT_PEAK = 16.0


def convert_channels(audio: np.ndarray, channels: int) -> np.ndarray:
    """Convert (C, T) audio to `channels`, as EnCodec 0.1.1's `convert_audio` does.

    Mono to stereo duplicates the channel; stereo to mono takes the mean. Other conversions have no
    agreed meaning and raise a ValueError.
    """
    have = audio.shape[0]
    if have == channels:
        return audio
    if have == 1 and channels == 2:
        return np.repeat(audio, 2, axis=0)
    if have == 2 and channels == 1:
        return audio.mean(axis=0, keepdims=True)
    raise ValueError(
        f"cannot convert audio with {have} channels to {channels}: only mono <-> stereo conversions are "
        f"defined (audio is read as (channels, samples); an array laid out (samples, channels) needs a .T)"
    )


def resample(audio: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample (C, T) float32 audio with soxr's high-quality filter; a no-op when the rates match."""
    if orig_rate == target_rate:
        return audio
    import soxr  # imported here so that the model, which shares this module, does not need it

    # soxr wants (T, C); ascontiguousarray avoids a copy-and-warn inside soxr.
    out = soxr.resample(np.ascontiguousarray(audio.T), orig_rate, target_rate, quality="HQ")
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, audio.shape[0]).T)


def _to_float_array(clip, index: int) -> np.ndarray:
    """One clip as a float32 (C, T) array: int16/int32 are scaled to [-1, 1) as soundfile does; float audio must be
    finite and peak at most MAX_FLOAT_PEAK."""
    floating = False
    if hasattr(clip, "detach"):  # a torch tensor
        clip = clip.detach().cpu().numpy()
    array = np.asarray(clip)
    if array.dtype == np.int16:
        array = array.astype(np.float32) / 32768.0
    elif array.dtype == np.int32:
        array = array.astype(np.float32) / 2147483648.0
    elif array.dtype in (np.float32, np.float64, np.float16):
        array = array.astype(np.float32, copy=False)
        floating = True
    elif array.dtype == object or array.dtype.kind not in "fiu":
        raise ValueError(f"clip {index}: expected float32, float64 or int16 samples, got dtype {array.dtype}")
    else:
        raise ValueError(
            f"clip {index}: expected float32, float64 or int16 samples, got dtype {array.dtype}; "
            f"convert it to float in [-1, 1] first"
        )
    if array.ndim == 1:
        array = array[None, :]
    elif array.ndim != 2:
        raise ValueError(
            f"clip {index}: expected (samples,) or (channels, samples), got an array of shape "
            f"{array.shape}; pass a batch as a list of clips"
        )
    if array.shape[-1] == 0:
        raise ValueError(f"clip {index}: audio is empty (shape {array.shape}); EnCodec needs at least one sample")
    if array.shape[0] == 0:
        raise ValueError(f"clip {index}: audio has no channels (shape {array.shape})")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"clip {index}: audio holds {bad} NaN or Inf samples; expected finite values")
    peak = float(np.abs(array).max()) if floating else 0.0
    if peak > MAX_FLOAT_PEAK:
        raise ValueError(
            f"clip {index}: float audio peaks at {peak:,.0f}; expected samples in [-1, 1]. It looks like integer PCM "
            f"stored as float: divide by 32768 (16-bit) or 2147483648 (32-bit), or pass the integer array itself"
        )
    return array


def check_sampling_rate(rate, index: int = 0, model_rate: int = MIN_SAMPLING_RATE) -> int:
    """A clip's rate as an int, refused (ValueError) unless it is an integer from min(1,000 Hz, the model's rate)
    to 384,000 Hz: so resampling never makes a clip more than 48 times longer at 48 kHz (the lower bound follows
    the model's rate only for test models below 1 kHz)."""
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, np.integer)):
        raise ValueError(f"clip {index}: sampling_rate must be an integer number of Hz, got {rate!r}")
    low = min(MIN_SAMPLING_RATE, model_rate)
    if not low <= rate <= MAX_SAMPLING_RATE:
        hint = f" (did you mean {int(rate) * 1000:,} Hz?)" if 0 < rate < low else ""
        raise ValueError(f"clip {index}: sampling_rate {rate} Hz is outside {low:,} to {MAX_SAMPLING_RATE:,} Hz{hint}")
    return int(rate)


def _own_rate(clip) -> bool:
    """Whether a clip carries its own rate: a dict with `sampling_rate`, an undecoded file (`bytes` or `path`), a
    decoder with `get_all_samples()`."""
    if isinstance(clip, dict):
        return clip.get("sampling_rate") is not None or bool(clip.get("bytes") or clip.get("path"))
    return hasattr(clip, "get_all_samples")


def read_audio_cell(value, sampling_rate: int | None = None, index: int = 0):
    """One clip or dataset cell as (samples, rate), whatever form it came in; the one reader of cells that the
    feature extractor, tokenization, evaluation and the trainer share.

    Accepted: a decoder with `get_all_samples()` (torchcodec's AudioDecoder, datasets 4+ decoded `Audio`; read this
    way stereo stays stereo, where its `["array"]` mixes down), an undecoded `Audio(decode=False)` dict with `bytes`
    or `path` (read with soundfile at the file's own rate), a dict with `array` and `sampling_rate`, or a plain
    array or tensor whose rate is `sampling_rate`. The samples come as they were stored (`prepare` checks and
    converts them).
    """
    if value is None:
        raise ValueError(f"clip {index}: the audio cell is empty (None)")
    if hasattr(value, "get_all_samples"):
        samples = value.get_all_samples()
        data = samples.data
        return (data.detach().cpu().numpy() if hasattr(data, "detach") else np.asarray(data)), int(samples.sample_rate)
    if isinstance(value, dict) and "array" not in value:
        if value.get("bytes") or value.get("path"):
            return read_audio(value["bytes"] if value.get("bytes") else value["path"])
        raise ValueError(
            f"clip {index}: a dict clip needs an 'array' key (or 'bytes' / 'path', as Audio(decode=False) gives it), "
            f"got keys {sorted(value)}"
        )
    if isinstance(value, dict):
        return value["array"], value.get("sampling_rate", sampling_rate)
    return value, sampling_rate


def _is_batch(raw_audio) -> bool:
    if isinstance(raw_audio, (list, tuple)):
        if len(raw_audio) == 0:
            raise ValueError("raw_audio is an empty list; expected one clip or a list of clips")
        first = raw_audio[0]
        return not np.isscalar(first)
    return False


class EncodecFeatureExtractor(SequenceFeatureExtractor):
    r"""Turns raw audio into EnCodec's `input_values` (batch, channels, T) and `padding_mask` (batch, T).

    Saved as `preprocessor_config.json` with the same fields as the official EnCodec processors, so
    `from_pretrained` reads facebook/encodec_* folders. Unlike transformers' extractor it resamples (soxr)
    audio given at another `sampling_rate` and converts mono <-> stereo instead of refusing, and it pads
    to the longest clip only: the model encodes each clip at its real length (read from `padding_mask`),
    so padding to whole chunks would change nothing but the cost.

    Args:
        feature_size (`int`): channels the model takes (1 or 2).
        sampling_rate (`int`): the model's sample rate in Hz.
        padding_value (`float`): value written into padded positions.
        chunk_length_s (`float`, *optional*): chunk duration of chunked models (48 kHz: 1.0).
        overlap (`float`, *optional*): chunk overlap fraction (48 kHz: 0.01).
    """

    model_input_names = ["input_values", "padding_mask"]

    def __init__(
        self,
        feature_size: int = 1,
        sampling_rate: int = 24000,
        padding_value: float = 0.0,
        chunk_length_s: float | None = None,
        overlap: float | None = None,
        **kwargs,
    ):
        kwargs.setdefault("return_attention_mask", True)
        super().__init__(feature_size=feature_size, sampling_rate=sampling_rate, padding_value=padding_value, **kwargs)
        if feature_size not in (1, 2):
            raise ValueError(f"feature_size must be 1 (mono) or 2 (stereo), got {feature_size!r}")
        if self.padding_side != "right":
            raise ValueError(
                f"padding_side must be 'right': EnCodec's padding_mask marks a prefix of real "
                f"samples; got {self.padding_side!r}"
            )
        self.chunk_length_s = chunk_length_s
        self.overlap = overlap

    @classmethod
    def from_model_config(cls, config) -> "EncodecFeatureExtractor":
        """The extractor that matches an `EncodecConfig` (as written by `encodec-hf convert`)."""
        return cls(
            feature_size=config.audio_channels,
            sampling_rate=config.sampling_rate,
            chunk_length_s=config.chunk_length_s,
            overlap=config.overlap,
        )

    @property
    def chunk_length(self) -> int | None:
        return chunk_sizes(self.chunk_length_s, self.overlap, self.sampling_rate)[0]

    @property
    def chunk_stride(self) -> int | None:
        return chunk_sizes(self.chunk_length_s, self.overlap, self.sampling_rate)[1]

    def to_dict(self) -> dict:
        """The saved preprocessor config, without `feature_extractor_type`: Auto classes then find the extractor
        by the folder's config (this package's after `import encodec_hf`, transformers' otherwise) rather than by
        a class name both packages use."""
        output = super().to_dict()
        output.pop("feature_extractor_type", None)
        return output

    def chunk_plan(self, length: int) -> list[tuple[int, int]]:
        """`plan_chunks` for this model: (start, real samples) of each chunk of a `length`-sample clip."""
        return plan_chunks(length, self.chunk_length, self.chunk_stride)

    def prepare(self, clip, sampling_rate: int | None = None, index: int = 0) -> np.ndarray:
        """One clip in any accepted form to float32 (channels, T) at the model's rate and channel count."""
        clip, rate = read_audio_cell(clip, sampling_rate, index)
        array = _to_float_array(clip, index)
        if array.shape[0] > 2:
            raise ValueError(
                f"clip {index}: expected (samples,) or (channels, samples) with 1 or 2 channels, got shape "
                f"{array.shape}; if the array is (samples, channels), pass its transpose"
            )
        array = convert_channels(array, self.feature_size)
        if rate is not None:
            rate = check_sampling_rate(rate, index, self.sampling_rate)
        if rate is not None and rate != self.sampling_rate:
            array = resample(array, rate, self.sampling_rate)
            if array.shape[-1] == 0:
                raise ValueError(
                    f"clip {index}: no samples left after resampling from {rate} Hz to {self.sampling_rate} Hz"
                )
        return array

    def __call__(
        self,
        raw_audio,
        padding: bool | str | None = True,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
        sampling_rate: int | None = None,
    ) -> BatchFeature:
        """Prepare one clip or a batch (a list of clips) for the model.

        Args:
            raw_audio: one clip or a list of clips. A clip is a float32/float64/int16 numpy array or torch
                tensor shaped (samples,) or (channels, samples), a list of floats, a dict with `array` and
                `sampling_rate` (as `datasets` gives it), or an object with `get_all_samples()`.
            padding: `True`/`"longest"` (default) pads to the longest clip; `"max_length"` pads to
                `max_length`; `False`/`"do_not_pad"` requires clips of one length.
            truncation: cut clips longer than `max_length`.
            max_length: length in samples at the model's rate, for `padding="max_length"` or `truncation`.
            return_tensors: `"pt"`, `"np"` or None (numpy arrays).
            sampling_rate: rate of `raw_audio` in Hz; audio at another rate than the model's is resampled.

        Returns:
            `BatchFeature` with `input_values` (batch, channels, T) float32 and `padding_mask` (batch, T),
            1 on real samples and 0 on padding.
        """
        clips = list(raw_audio) if _is_batch(raw_audio) else [raw_audio]
        if sampling_rate is None and not all(_own_rate(clip) for clip in clips):
            logger.warning(
                f"No sampling_rate passed to {type(self).__name__}, and some clips carry none: assuming those are "
                f"at the model's {self.sampling_rate} Hz. Pass sampling_rate= to have other rates resampled."
            )
        arrays = [self.prepare(clip, sampling_rate, index) for index, clip in enumerate(clips)]

        if truncation:
            if max_length is None:
                raise ValueError("truncation=True needs max_length (in samples at the model's rate)")
            arrays = [a[:, :max_length] for a in arrays]
        lengths = [a.shape[-1] for a in arrays]
        if padding in (True, "longest"):
            target = max(lengths)
        elif padding == "max_length":
            if max_length is None:
                raise ValueError("padding='max_length' needs max_length (in samples at the model's rate)")
            if max(lengths) > max_length:
                raise ValueError(
                    f"a clip has {max(lengths)} samples, more than max_length={max_length}; "
                    f"pass truncation=True to cut it"
                )
            target = max_length
        elif padding in (False, None, "do_not_pad"):
            if len(set(lengths)) > 1:
                raise ValueError(f"clips have different lengths {lengths} and padding is off; pass padding=True")
            target = lengths[0]
        else:
            raise ValueError(f"padding must be True, 'longest', 'max_length' or False, got {padding!r}")

        # (batch, channels, T), padded on the right; the mask marks the real prefix of each clip.
        input_values = np.full((len(arrays), self.feature_size, target), self.padding_value, dtype=np.float32)
        padding_mask = np.zeros((len(arrays), target), dtype=np.int32)
        for row, array in enumerate(arrays):
            input_values[row, :, : array.shape[-1]] = array
            padding_mask[row, : array.shape[-1]] = 1
        return BatchFeature({"input_values": input_values, "padding_mask": padding_mask}, tensor_type=return_tensors)


__all__ = ["EncodecFeatureExtractor", "plan_chunks", "convert_channels", "resample", "check_sampling_rate"]
