"""EnCodec: SEANet encoder and decoder around a residual vector quantizer, as a transformers model.

Numbers follow EnCodec 0.1.1 (the same operations in the same order, so codes are identical and audio equal to
float rounding); the API and the state-dict keys follow transformers' `EncodecModel`, so official Hub folders
load with no missing or unexpected keys.

Where the two references differ, this module takes the original's numbers:
- Each batch item is encoded at its real length (read from `padding_mask`), never at the padded length: a
  padded item gets the codes, scales and audio it gets alone.
- The 48 kHz model's last chunk keeps only the samples that exist and its scale is computed over them, as in
  EnCodec 0.1.1; transformers' processor pads it to a full chunk instead.
- `decode` returns exactly the real length (the longest one in the batch) when given `padding_mask`.

Layers take an optional streaming state in their own `forward` (`streaming.py` holds only the stream objects that
drive them), options that change the numbers are arguments of `encode` / `decode` / `forward`, and weight norm is
folded once per layer for inference (`_FoldedWeight`), live under autograd for training.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedAudioTokenizerBase
from transformers.utils import ModelOutput, logging

from .chunking import (
    batch_jobs,
    bucket_jobs,
    cap_batches,
    chunks_per_call,
    linear_overlap_add,
    num_frames,
    plan_chunks,
)
from .configuration_encodec import EncodecConfig
from .language_model import LANGUAGE_MODEL_FOLDER, EncodecLanguageModel, load_language_model
from .layers import (
    EncodecConv1d,
    EncodecConvTranspose1d,
    EncodecDecoder,
    EncodecEncoder,
    EncodecLSTMLayers,
    fresh_folds,
)
from .loading import check_loaded, own_storage
from .quantization import EncodecEuclideanCodebook, EncodecResidualVectorQuantizer
from .streaming import StreamDecoder, StreamEncoder

logger = logging.get_logger(__name__)


@dataclass
class EncodecOutput(ModelOutput):
    """
    Args:
        audio_codes (`torch.LongTensor` of shape `(num_chunks, batch_size, num_quantizers, frames)`):
            discrete codes from `encode`.
        audio_values (`torch.FloatTensor` of shape `(batch_size, channels, samples)`): decoded audio.
        commitment_loss (`torch.FloatTensor`, a scalar): in train mode only, the quantizer's commitment loss (the
            mean over the codebooks used); None in eval mode.
    """

    audio_codes: torch.LongTensor | None = None
    audio_values: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None


@dataclass
class EncodecEncoderOutput(ModelOutput):
    """
    Args:
        audio_codes (`torch.LongTensor` of shape `(num_chunks, batch_size, num_quantizers, frames)`):
            codes of every chunk. Frames past an item's real end (a shorter last chunk, a shorter item) hold 0.
        audio_scales (list of `num_chunks` tensors of shape `(batch_size, 1)`, or of `None`): the scale each
            chunk was divided by before encoding (models with `normalize=True`); 1 where a chunk does not exist.
        last_frame_pad_length (`int`): frames of padding at the end of the last chunk of the longest item,
            used by `decode` only when it gets no `padding_mask`.
    """

    audio_codes: torch.LongTensor | None = None
    audio_scales: list | None = None
    last_frame_pad_length: int | None = None


@dataclass
class EncodecDecoderOutput(ModelOutput):
    """
    Args:
        audio_values (`torch.FloatTensor` of shape `(batch_size, channels, samples)`): decoded audio.
    """

    audio_values: torch.FloatTensor | None = None


# ---------------------------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------------------------


class EncodecPreTrainedModel(PreTrainedAudioTokenizerBase):
    config_class = EncodecConfig
    config: EncodecConfig
    base_model_prefix = "encodec"
    main_input_name = "input_values"
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module):
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            if hasattr(module, "parametrizations"):
                direction = module.parametrizations.weight.original1
                init.kaiming_normal_(direction)
                dims = tuple(range(1, direction.dim()))
                init.copy_(
                    module.parametrizations.weight.original0,
                    torch.linalg.vector_norm(direction, dim=dims, keepdim=True),
                )
            else:
                init.kaiming_normal_(module.weight)
            if module.bias is not None:
                fan_in = module.weight.shape[1] * module.kernel_size[0]
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.GroupNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, (nn.LSTM, EncodecLSTMLayers)):
            for name, param in module.named_parameters():
                if "weight" in name:
                    init.xavier_uniform_(param)
                else:
                    init.zeros_(param)
        elif isinstance(module, EncodecEuclideanCodebook):
            # Random entries rather than transformers' zeros: a freshly built model then gives varied codes.
            init.ones_(module.inited)
            init.zeros_(module.cluster_size)
            init.kaiming_uniform_(module.embed)
            init.copy_(module.embed_avg, module.embed)


# ---------------------------------------------------------------------------------------------------------------
# Options that change the numbers or the memory. Each is a keyword argument of `encode`, `decode` and `forward`;
# None there means the model's default, which `set_inference_defaults` changes (validated, never silently).

MAX_SCALE = 1e6  # the largest per-chunk scale: see encode_chunks
LONG_DECODE_FRAMES = 4500  # causal clips longer than this (60 s at 24 kHz) decode in pieces: see decode_chunks
LONG_ENCODE_FRAMES = 4500  # and encode in pieces (exact path): see encode_chunks
ENCODE_PIECE_FRAMES = 375  # 5 s at 24 kHz
DECODE_PIECE_FRAMES = 375  # 5 s at 24 kHz (the channels_last layout is not streamed)

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


def chunk_scales(chunks: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N, C, T) audio -> (N, 1, 1): the scale each chunk is divided by before encoding (normalising models), 1e-8
    plus the RMS of its channel mean, as the original computes it; with a (N, 1, T) `mask`, over the masked-in
    samples only (training on padded segments). In the input's precision (float32 from the feature extractor) even
    when the model runs in bfloat16.

    Finite input keeps finite scales: samples beyond about 1e19 overflow the float32 square, and such a chunk's
    volume is clamped to MAX_SCALE, or the dtype's largest value when smaller (float16: 65,504); audio in [-1, 1]
    never comes near it, so the original's numbers are unchanged wherever they are finite. Example: a chunk of
    constant 0.5 on both channels has scale 0.5 + 1e-8.
    """
    mono = chunks.mean(dim=1, keepdim=True)  # (N, 1, T)
    if mask is None:
        power = mono.pow(2).mean(dim=2, keepdim=True)
    else:
        power = (mono.pow(2) * mask).sum(dim=2, keepdim=True) / mask.sum(dim=2, keepdim=True).clamp(min=1)
    limit = min(MAX_SCALE, torch.finfo(power.dtype).max)  # float16 tops out at 65,504
    volume = torch.nan_to_num(power.sqrt(), posinf=limit).clamp(max=limit)
    return 1e-8 + volume


def _check_option(name: str, value):
    if name not in INFERENCE_DEFAULTS:
        raise ValueError(f"unknown inference option {name!r}; the options are {', '.join(INFERENCE_DEFAULTS)}")
    if name == "chunk_batch_size":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"chunk_batch_size must be an integer of at least 1, got {value!r}")
    elif not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def _progress_reporter(progress, stage: str):
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


def _report_share(report, done: int, count: int, total: int, share: float) -> None:
    """Tell `report` of `share` (0 to 1) of a group of `count` chunks done, after `done` of `total`."""
    report(done + share * count, total)


class EncodecModel(EncodecPreTrainedModel):
    """The EnCodec neural audio codec.

    `encode` turns (batch, channels, samples) audio into codes shaped (num_chunks, batch, num_quantizers,
    frames) and per-chunk scales; `decode` turns them back; `forward` does both. Shapes, names and output
    classes are transformers' `EncodecModel`'s; the numbers are EnCodec 0.1.1's (see the module docstring).

    Options (keyword arguments of `encode`, `decode` and `forward`; None: the model's default, see
    `set_inference_defaults`):
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
        progress (callable or tqdm-like, *optional*): told of each group of chunks done, as
            `progress(stage, done, total)` with stage "encode" or "decode", or through `update(n)` and `total`.
    """

    def __init__(self, config: EncodecConfig):
        super().__init__(config)
        self.encoder = EncodecEncoder(config)
        self.decoder = EncodecDecoder(config)
        self.quantizer = EncodecResidualVectorQuantizer(config)
        self._inference_defaults = dict(INFERENCE_DEFAULTS)
        self.post_init()

    # -- pickling -----------------------------------------------------------------------------------------------

    def __reduce__(self):
        """Pickle as config + weights: torch refuses to pickle weight-norm parametrized modules, and datasets'
        `.map(num_proc=...)` and multiprocessing pickle the model. The copy has the same class, weights (dtype and
        device included), mode, inference defaults and language model."""
        state = (self.state_dict(), self.training, self.inference_defaults, self.language_model)
        return (_unpickle_model, (type(self), self.config, *state))

    def __deepcopy__(self, memo):
        """`copy.deepcopy` copies the module as it is (`__reduce__` is for pickling only)."""
        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(self.__dict__, memo))
        return clone

    # -- options ------------------------------------------------------------------------------------------------

    def set_inference_defaults(self, **options) -> None:
        """Change the model-wide defaults of the inference options (`fast_encoding`, `fast_decoding`,
        `chunk_batch_size`); an unknown name or a wrong value raises a ValueError. An argument given to `encode` or
        `decode` always wins, so threads sharing a model should pass their options rather than change these."""
        checked = {name: _check_option(name, value) for name, value in options.items()}
        self._inference_defaults = {**self._inference_defaults, **checked}  # one assignment: readers see old or new

    @property
    def inference_defaults(self) -> dict:
        """A copy of the model-wide defaults of the inference options."""
        return dict(self._inference_defaults)

    def inference_option(self, name: str, value=None):
        """The value of inference option `name` for one call: `value` when given (checked), else the model's
        default."""
        return self._inference_defaults[name] if value is None else _check_option(name, value)

    def pads_chunks(self, fast_encoding: bool, pad_chunks: bool | None = None) -> bool:
        """Whether `encode` with these options pads chunks of different lengths into one batch: `pad_chunks` (None:
        the model's default) takes effect with fast encoding on causal models only."""
        return bool(self.inference_option("pad_chunks", pad_chunks) and fast_encoding and self.config.use_causal_conv)

    def refresh_weights(self) -> None:
        """Forget every folded weight-norm weight, so that the next call folds the parameters as they are now.
        Needed only after writing parameters through `.data`, which no version counter sees."""
        for module in self.modules():
            if isinstance(module, (EncodecConv1d, EncodecConvTranspose1d)):
                module.folded_weight.clear()

    # -- the entropy-coding language model ------------------------------------------------------------------------
    # Kept out of the module tree on purpose: state_dict() and save_pretrained's model.safetensors stay exactly the
    # official layout. `_apply` moves it with the model (`.to`, `.cuda`, `.float`, ...).

    @property
    def language_model(self) -> EncodecLanguageModel | None:
        """The entropy-coding language model (docs/ecdc.md), or None. Assign an `EncodecLanguageModel` or None."""
        return self.__dict__.get("_language_model")

    def __setattr__(self, name, value):
        if name == "language_model":  # never a registered submodule: the codec's state_dict stays official
            if value is not None and not isinstance(value, EncodecLanguageModel):
                raise ValueError(f"language_model must be an EncodecLanguageModel or None, got {type(value).__name__}")
            self.__dict__["_language_model"] = value
            return
        super().__setattr__(name, value)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' `from_pretrained`, strict: a folder whose weights miss a tensor, hold one this model does
        not have, or hold NaN or Inf fails with a ValueError naming them (transformers would warn and fill the gap
        with random or non-finite values); the language model is loaded too when the folder has one."""
        want_info = kwargs.pop("output_loading_info", False)
        folder = Path(str(pretrained_model_name_or_path))
        if (
            folder.is_dir()
            and "config" not in kwargs
            and not (folder / kwargs.get("subfolder", "") / "config.json").is_file()
        ):
            # transformers would build a default config (the 24 kHz model's) and load whatever weights fit it
            raise ValueError(
                f"{str(pretrained_model_name_or_path)!r} is not an EnCodec model folder (no config.json; a training "
                f"checkpoint's model is its model/ subfolder)"
            )
        kwargs.setdefault("ignore_mismatched_sizes", True)  # so that check_loaded names them (transformers: no names)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        check_loaded(model, info, pretrained_model_name_or_path)
        own_storage(model)
        hub_kwargs = {
            key: kwargs[key]
            for key in ("cache_dir", "revision", "token", "local_files_only", "force_download")
            if key in kwargs
        }
        language_model = load_language_model(pretrained_model_name_or_path, **hub_kwargs)
        if language_model is not None:
            model.language_model = language_model.to(model.device)
        return (model, info) if want_info else model

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.language_model is not None:
            self.language_model.save_pretrained(Path(save_directory) / LANGUAGE_MODEL_FOLDER)

    def _apply(self, fn, recurse=True):
        super()._apply(fn, recurse)
        if self.language_model is not None:
            self.language_model._apply(fn, recurse)
        return self

    # -- streaming --------------------------------------------------------------------------------------------------

    def stream_encoder(
        self, bandwidth: float | None = None, batch_size: int = 1, *, fast_encoding: bool | None = None
    ) -> StreamEncoder:
        """A `StreamEncoder`: push audio in pieces, get codes as frames (causal models) or chunks complete."""
        return StreamEncoder(self, bandwidth=bandwidth, batch_size=batch_size, fast_encoding=fast_encoding)

    def stream_decoder(
        self, batch_size: int = 1, audio_length: int | None = None, *, fast_decoding: bool | None = None
    ) -> StreamDecoder:
        """A `StreamDecoder`: push codes in pieces, get the audio samples that are final. With `audio_length`
        (the samples encode saw) the stream ends exactly there, else on a whole frame."""
        return StreamDecoder(self, batch_size=batch_size, audio_length=audio_length, fast_decoding=fast_decoding)

    # -- input checks -------------------------------------------------------------------------------------------

    def _check_audio(self, input_values: torch.Tensor) -> None:
        if not isinstance(input_values, torch.Tensor):
            raise ValueError(
                f"input_values must be a torch.Tensor shaped (batch, channels, samples), got "
                f"{type(input_values).__name__}; the feature extractor makes one"
            )
        if input_values.dim() != 3:
            raise ValueError(
                f"input_values must be shaped (batch, channels, samples), got shape {tuple(input_values.shape)}"
            )
        batch, channels, length = input_values.shape
        if channels != self.config.audio_channels:
            raise ValueError(
                f"this model takes {self.config.audio_channels}-channel audio, got {channels} "
                f"channels; EncodecFeatureExtractor converts mono <-> stereo"
            )
        if batch == 0 or length == 0:
            raise ValueError(
                f"input_values is empty (shape {tuple(input_values.shape)}); expected at least "
                f"one clip of at least one sample"
            )
        if not input_values.is_floating_point():
            raise ValueError(f"input_values must be floating point audio in [-1, 1], got {input_values.dtype}")
        if not torch.isfinite(input_values).all():
            raise ValueError("input_values holds NaN or Inf samples; expected finite audio")

    @staticmethod
    def _real_lengths(padding_mask: torch.Tensor | None, batch: int, length: int) -> list[int]:
        """Real samples of each item: the prefix that `padding_mask` (B, T) or (B, C, T) marks."""
        if padding_mask is None:
            return [length] * batch
        mask = torch.as_tensor(padding_mask)
        if mask.dim() == 3:
            mask = mask.bool().any(dim=1)
        if mask.dim() != 2 or mask.shape[0] != batch or mask.shape[-1] < 1:
            raise ValueError(
                f"padding_mask must be shaped (batch, samples) or (batch, channels, samples) with "
                f"batch {batch}, got shape {tuple(padding_mask.shape)}"
            )
        mask = mask.bool()
        lengths = mask.sum(dim=-1)
        prefix = torch.arange(mask.shape[-1], device=mask.device)[None, :] < lengths[:, None]
        if not torch.equal(prefix, mask):
            raise ValueError(
                "padding_mask must mark a prefix of real samples in each row (right padding); found zeros before ones"
            )
        lengths = lengths.tolist()
        if min(lengths) == 0:
            raise ValueError(
                f"padding_mask marks no real sample in item {lengths.index(0)}; every item needs at least one"
            )
        return lengths

    # -- encoding -----------------------------------------------------------------------------------------------

    def encode_chunks(
        self,
        chunks: torch.Tensor,
        num_quantizers: int,
        fast_encoding: bool = False,
        mask: torch.Tensor | None = None,
        on_piece=None,
    ):
        """Encode chunks of equal length, each on its own scale: (N, C, T) audio -> codes (N, num_quantizers,
        ceil(T / hop)) and scales (N, 1), or None for models that do not normalise. A (N, 1, T) `mask` marks the
        real samples of padded chunks (their scale is taken over those alone).

        On the exact path, a causal model's clip of more than LONG_ENCODE_FRAMES frames (60 s at 24 kHz) goes
        through the encoder in pieces of ENCODE_PIECE_FRAMES frames, each layer carrying its streaming state, so
        that memory is one piece's however long the clip (docs/performance.md); `on_piece(fraction)` is told
        of each piece done. The pieces compute the same sums in the same order: embeddings equal to the whole
        clip's, bit for bit (tests/test_streaming.py: the full-size model against EnCodec 0.1.1 on 62 s)."""
        scale = None
        if self.config.normalize:
            scale = chunk_scales(chunks, mask)  # (N, 1, 1)
            chunks = chunks / scale
            scale = scale.view(-1, 1)
        hop = self.config.hop_length
        long_causal = self.config.use_causal_conv and self.config.chunk_length is None
        pieced = long_causal and not fast_encoding and not torch.compiler.is_exporting()
        if pieced and num_frames(chunks.shape[-1], hop) > LONG_ENCODE_FRAMES:
            states, pieces, step = self.encoder.init_states(), [], ENCODE_PIECE_FRAMES * hop
            for start in range(0, chunks.shape[-1], step):
                pieces.append(self.encoder(chunks[..., start : start + step].to(self.dtype), states=states))
                if on_piece is not None:
                    on_piece(min(1.0, (start + step) / chunks.shape[-1]))
            pieces.append(self.encoder(chunks[..., :0].to(self.dtype), states=states, final=True))
            embeddings = torch.cat(pieces, dim=-1)  # (N, D, F)
        else:
            embeddings = self.encoder(chunks.to(self.dtype), channels_last=fast_encoding)
        codes = self.quantizer.encode(embeddings, num_quantizers).transpose(0, 1)
        return codes, scale

    def encode(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        bandwidth: float | None = None,
        return_dict: bool | None = None,
        *,
        fast_encoding: bool | None = None,
        chunk_batch_size: int | None = None,
        pad_chunks: bool | None = None,
        progress=None,
    ) -> EncodecEncoderOutput | tuple:
        """Encode audio into discrete codes.

        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, channels, samples)`): audio at the model's
                rate, as `EncodecFeatureExtractor` returns it.
            padding_mask (`torch.Tensor` of shape `(batch_size, samples)` or `(batch_size, channels, samples)`,
                *optional*): 1 on real samples, 0 on right padding. Each item is encoded at its real length.
            bandwidth (`float`, *optional*): one of `config.target_bandwidths` (kbps); the smallest if None, as
                in transformers (the command line uses 6 kbps).
            return_dict (`bool`, *optional*): return an `EncodecEncoderOutput` rather than a tuple.
            fast_encoding, chunk_batch_size, pad_chunks, progress: see the class docstring.

        Returns:
            `EncodecEncoderOutput` with `audio_codes` (num_chunks, batch_size, num_quantizers, frames),
            `audio_scales` (num_chunks tensors of shape (batch_size, 1), or Nones) and `last_frame_pad_length`.
            Without chunking, num_chunks is 1 and frames is ceil(samples / hop_length).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        fast = self.inference_option("fast_encoding", fast_encoding)
        step = self.inference_option("chunk_batch_size", chunk_batch_size) if fast else 1
        pad = self.pads_chunks(fast, pad_chunks)
        report = _progress_reporter(progress, "encode")
        bandwidth = self.config.target_bandwidths[0] if bandwidth is None else self.config.check_bandwidth(bandwidth)
        self._check_audio(input_values)
        batch, _, length = input_values.shape
        lengths = self._real_lengths(padding_mask, batch, length)
        num_quantizers = self.config.num_quantizers_for_bandwidth(bandwidth)
        hop = self.config.hop_length

        plans = [plan_chunks(n, self.config.chunk_length, self.config.chunk_stride) for n in lengths]
        total_chunks = max(len(plan) for plan in plans)
        frames = max(num_frames(size, hop) for plan in plans for _, size in plan)
        codes = input_values.new_zeros((total_chunks, batch, num_quantizers, frames), dtype=torch.long)
        scales = input_values.new_ones((total_chunks, batch, 1)) if self.config.normalize else None

        # Each chunk is cut at its real length, so an item never sees another item's padding. Exact encoding
        # runs each chunk alone: EnCodec's convolutions round differently in a batch (the original itself
        # changes a few codes between a clip alone and the same clip in a batch), and a batch item must get
        # exactly the codes it gets alone. Fast encoding batches chunks of equal length, or with `pad_chunks`
        # (causal models) chunks of similar length, zero-padded to the longest of their batch.
        jobs = [
            (size, (index, item, start, size))
            for item, plan in enumerate(plans)
            for index, (start, size) in enumerate(plan)
        ]
        done = 0
        with _no_grad_unless_training(self), fresh_folds():
            groups = bucket_jobs(jobs, step) if pad else batch_jobs(jobs, step)
            for width, part in cap_batches(groups, lambda width: chunks_per_call(width, self.config.num_filters)):
                chunks = input_values.new_zeros((len(part), input_values.shape[1], width))  # (N, C, width)
                mask = None
                if pad:
                    mask = torch.zeros((len(part), 1, width), dtype=torch.bool, device=input_values.device)
                for row, (_, item, start, size) in enumerate(part):
                    chunks[row, :, :size] = input_values[item, :, start : start + size]
                    if mask is not None:
                        mask[row, :, :size] = True
                # (N, Q, ceil(width / hop)), (N, 1)
                on_piece = functools.partial(_report_share, report, done, len(part), len(jobs))
                chunk_codes, chunk_scales = self.encode_chunks(chunks, num_quantizers, fast, mask, on_piece=on_piece)
                for row, (index, item, _, size) in enumerate(part):
                    real = num_frames(size, hop)
                    codes[index, item, :, :real] = chunk_codes[row, :, :real]
                    if chunk_scales is not None:
                        scales[index, item] = chunk_scales[row]
                done += len(part)
                report(done, len(jobs))

        longest = plans[lengths.index(max(lengths))]
        last_frame_pad_length = frames - num_frames(longest[-1][1], hop) if len(longest) == total_chunks else 0
        audio_scales = list(scales) if scales is not None else [None] * total_chunks
        if not return_dict:
            return codes, audio_scales, last_frame_pad_length
        return EncodecEncoderOutput(codes, audio_scales, last_frame_pad_length)

    # -- decoding -----------------------------------------------------------------------------------------------

    def check_codes(self, audio_codes, audio_scales) -> list:
        """Check codes and scales as `decode` takes them; returns the scales as (batch, 1, 1) tensors or Nones."""
        if not isinstance(audio_codes, torch.Tensor) or audio_codes.dim() != 4:
            shape = tuple(audio_codes.shape) if isinstance(audio_codes, torch.Tensor) else type(audio_codes).__name__
            raise ValueError(
                f"audio_codes must be a tensor shaped (num_chunks, batch, num_quantizers, frames), got {shape}"
            )
        if audio_codes.is_floating_point() or audio_codes.is_complex():
            raise ValueError(f"audio_codes must hold integers, got {audio_codes.dtype}")
        total_chunks, batch, quantizers, frames = audio_codes.shape
        if min(audio_codes.shape) == 0:
            raise ValueError(f"audio_codes is empty (shape {tuple(audio_codes.shape)})")
        if quantizers > self.config.num_quantizers:
            raise ValueError(f"audio_codes has {quantizers} codebooks; this model has {self.config.num_quantizers}")
        low, high = int(audio_codes.min()), int(audio_codes.max())
        if low < 0 or high >= self.config.codebook_size:
            raise ValueError(
                f"audio_codes must lie in [0, {self.config.codebook_size}), found values from {low} to {high}"
            )
        if audio_scales is None:
            audio_scales = [None] * total_chunks
        if len(audio_scales) != total_chunks:
            raise ValueError(
                f"audio_scales has {len(audio_scales)} entries for {total_chunks} chunks of codes; "
                f"expected one per chunk"
            )
        checked = []
        for index, scale in enumerate(audio_scales):
            if scale is None:
                if self.config.normalize:
                    raise ValueError(
                        f"audio_scales[{index}] is None, but this model normalises its chunks and "
                        f"needs the scale that encode returned"
                    )
                checked.append(None)
                continue
            scale = torch.as_tensor(scale, device=audio_codes.device)
            if scale.numel() != batch:
                raise ValueError(
                    f"audio_scales[{index}] has {scale.numel()} values for a batch of {batch}; "
                    f"expected shape ({batch}, 1)"
                )
            checked.append(scale.reshape(batch, 1, 1))
        return checked

    def decode_chunks(self, codes: torch.Tensor, fast_decoding: bool = True) -> torch.Tensor:
        """(N, Q, F) codes of chunks of equal length -> (N, channels, F * hop) float32 audio, before any scale.

        A causal model's clip of more than LONG_DECODE_FRAMES frames (60 s at 24 kHz) goes through the decoder in
        pieces of DECODE_PIECE_FRAMES, each layer carrying its streaming state across them, so that memory stays
        that of one piece however long the clip (docs/performance.md). The pieces compute the
        same sums over shorter windows: audio within 1e-5 of decoding the clip whole (tests/test_streaming.py).
        """
        frames = codes.shape[-1]
        long_causal = self.config.use_causal_conv and self.config.chunk_length is None and frames > LONG_DECODE_FRAMES
        if long_causal and not torch.compiler.is_exporting():  # an exported decoder takes any length whole
            states = self.decoder.init_states()
            pieces = []
            for start in range(0, frames, DECODE_PIECE_FRAMES):
                piece = codes[..., start : start + DECODE_PIECE_FRAMES]
                embeddings = self.quantizer.decode(piece.transpose(0, 1)).to(self.dtype)  # (N, D, piece frames)
                pieces.append(self.decoder(embeddings, states=states).float())
            end = codes.new_zeros((codes.shape[0], self.config.hidden_size, 0), dtype=self.dtype)
            pieces.append(self.decoder(end, states=states, final=True).float())
            return torch.cat(pieces, dim=-1)  # (N, C, F * hop)
        embeddings = self.quantizer.decode(codes.transpose(0, 1)).to(self.dtype)
        return self.decoder(embeddings, channels_last=fast_decoding).float()

    def decode(
        self,
        audio_codes: torch.LongTensor,
        audio_scales: list | None = None,
        padding_mask: torch.Tensor | None = None,
        return_dict: bool | None = None,
        last_frame_pad_length: int | None = 0,
        *,
        fast_decoding: bool | None = None,
        chunk_batch_size: int | None = None,
        progress=None,
    ) -> EncodecDecoderOutput | tuple:
        """Decode codes back to audio.

        Args:
            audio_codes (`torch.LongTensor` of shape `(num_chunks, batch_size, num_quantizers, frames)`).
            audio_scales (list of `num_chunks` tensors of shape `(batch_size, 1)` or Nones): from `encode`.
            padding_mask (`torch.Tensor` of shape `(batch_size, samples)`, *optional*): the mask given to
                `encode`. With it, each item is decoded at its real length and the output has exactly the
                longest real length; positions past an item's end are 0.
            return_dict (`bool`, *optional*).
            last_frame_pad_length (`int`, *optional*): used only without `padding_mask`: frames of padding at
                the end of the last chunk (from `encode`). The output then has a whole number of frames, as the
                original's `decode` does.
            fast_decoding, chunk_batch_size, progress: see the class docstring.

        Returns:
            `EncodecDecoderOutput` with `audio_values` (batch_size, channels, samples).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        fast = self.inference_option("fast_decoding", fast_decoding)
        step = self.inference_option("chunk_batch_size", chunk_batch_size) if fast else 1
        report = _progress_reporter(progress, "decode")
        scales = self.check_codes(audio_codes, audio_scales)
        total_chunks, batch, _, frames = audio_codes.shape
        hop, stride = self.config.hop_length, self.config.chunk_stride
        chunked = self.config.chunk_length is not None
        if not chunked and total_chunks != 1:
            raise ValueError(
                f"this model does not chunk its input, so audio_codes must have one chunk; got {total_chunks}"
            )
        if chunked and padding_mask is None:
            logger.warning_once(
                "decode without padding_mask returns (num_chunks - 1) x chunk_stride + (frames - "
                "last_frame_pad_length) x hop_length samples: whole frames, and up to a chunk more than was encoded "
                "unless encode's last_frame_pad_length is passed. Pass the padding_mask that encode was given (or "
                "use forward) for exactly the encoded length."
            )

        # Each item's decode plan: the frames of each of its chunks, and its final length in samples.
        if padding_mask is not None:
            mask_length = padding_mask.shape[-1]
            lengths = self._real_lengths(padding_mask, batch, mask_length)
            plans = []
            for item, length in enumerate(lengths):
                plan = [num_frames(size, hop) for _, size in plan_chunks(length, self.config.chunk_length, stride)]
                if len(plan) > total_chunks or max(plan) > frames:
                    raise ValueError(
                        f"padding_mask gives item {item} {length} samples, which need {len(plan)} "
                        f"chunk(s) of up to {max(plan)} frames; audio_codes has {total_chunks} of "
                        f"{frames}. Pass the padding_mask that encode was given."
                    )
                plans.append(plan)
        else:
            pad = int(last_frame_pad_length or 0)
            if not 0 <= pad < frames:
                raise ValueError(f"last_frame_pad_length must be in [0, {frames}), got {last_frame_pad_length}")
            # The length the codes imply; chunks before the last are cut to the frames that reach it.
            length = (total_chunks - 1) * (stride or 0) + (frames - pad) * hop
            plan = [min(frames, num_frames(length - index * (stride or 0), hop)) for index in range(total_chunks)]
            plans, lengths = [plan] * batch, [length] * batch

        # Decode chunks with the same number of frames together; then join each item's chunks.
        jobs = [
            (chunk_frames, (index, item)) for item, plan in enumerate(plans) for index, chunk_frames in enumerate(plan)
        ]
        decoded = {}
        done = 0
        with _no_grad_unless_training(self), fresh_folds():
            groups = cap_batches(
                batch_jobs(jobs, step), lambda frames: chunks_per_call(frames * hop, self.config.num_filters)
            )
            for chunk_frames, part in groups:
                codes = torch.stack([audio_codes[index, item, :, :chunk_frames] for index, item in part])
                audio = self.decode_chunks(codes, fast)  # (N, C, chunk_frames * hop)
                for row, (index, item) in enumerate(part):
                    chunk = audio[row]
                    if scales[index] is not None:
                        chunk = chunk * scales[index][item].float()
                    decoded[index, item] = chunk
                done += len(part)
                report(done, len(jobs))

        out_length = max(lengths)
        first_chunk = decoded[0, 0]
        audio_values = first_chunk.new_zeros((batch, self.config.audio_channels, out_length))
        for item, plan in enumerate(plans):
            chunks = [decoded[index, item] for index in range(len(plan))]
            audio = linear_overlap_add(chunks, stride) if chunked else chunks[0]
            audio_values[item, :, : lengths[item]] = audio[:, : lengths[item]]

        if not return_dict:
            return (audio_values,)
        return EncodecDecoderOutput(audio_values)

    def forward(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        bandwidth: float | None = None,
        audio_codes: torch.LongTensor | None = None,
        audio_scales: list | None = None,
        return_dict: bool | None = None,
        last_frame_pad_length: int | None = 0,
        *,
        fast_encoding: bool | None = None,
        fast_decoding: bool | None = None,
        chunk_batch_size: int | None = None,
        pad_chunks: bool | None = None,
        progress=None,
        update_codebooks: bool = True,
    ) -> EncodecOutput | tuple:
        """Encode then decode (or decode the given `audio_codes` and `audio_scales`); options as for `encode` and
        `decode`.

        In train mode (`model.train()`, no codes given) this is the training forward instead: see
        `_training_forward` (`update_codebooks=False` keeps the codebooks fixed); the inference options are not
        used there.

        Returns:
            `EncodecOutput` with `audio_codes` and `audio_values` (batch_size, channels, samples); with a
            `padding_mask`, `audio_values` has exactly the longest real length. In train mode, also
            `commitment_loss`.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if self.training and audio_codes is None and audio_scales is None:
            return self._training_forward(input_values, padding_mask, bandwidth, return_dict, update_codebooks)
        if (audio_codes is None) != (audio_scales is None):
            given = "audio_codes" if audio_codes is not None else "audio_scales"
            raise ValueError(
                f"{given} was given without its partner; pass both audio_codes and audio_scales, or neither"
            )
        if audio_codes is None:
            audio_codes, audio_scales, last_frame_pad_length = self.encode(
                input_values,
                padding_mask,
                bandwidth,
                return_dict=False,
                fast_encoding=fast_encoding,
                chunk_batch_size=chunk_batch_size,
                pad_chunks=pad_chunks,
                progress=progress,
            )
            if padding_mask is None:
                # decode must return the input's exact length, not a whole number of frames.
                padding_mask = torch.ones(
                    input_values.shape[0], input_values.shape[-1], dtype=torch.bool, device=input_values.device
                )
        audio_values = self.decode(
            audio_codes,
            audio_scales,
            padding_mask,
            return_dict=False,
            last_frame_pad_length=last_frame_pad_length,
            fast_decoding=fast_decoding,
            chunk_batch_size=chunk_batch_size,
            progress=progress,
        )[0]
        if not return_dict:
            return audio_codes, audio_values
        return EncodecOutput(audio_codes=audio_codes, audio_values=audio_values)

    def draw_bandwidth(self, generator: torch.Generator | None = None) -> float:
        """One of `config.target_bandwidths`, drawn uniformly (the paper's quantizer dropout: one bandwidth per
        batch). With a `generator` seeded alike on every rank, every rank draws the same."""
        bandwidths = self.config.target_bandwidths
        return bandwidths[int(torch.randint(len(bandwidths), (1,), generator=generator))]

    def _training_forward(
        self, input_values, padding_mask, bandwidth, return_dict, update_codebooks=True
    ) -> EncodecOutput | tuple:
        """The differentiable round trip of training: each item is one segment (at most one chunk for chunked
        models), normalised by its own scale when the model normalises, encoded, quantized by codebooks that
        update themselves (straight-through gradients), decoded and scaled back.

        `bandwidth` None draws one per call from `config.target_bandwidths` with torch's global generator (pass
        one, e.g. from `draw_bandwidth(generator)`, to control it). A `padding_mask` (1 on real samples) makes each
        item's scale use its real samples only; the decoded audio keeps the input's length (losses should mask
        the padding, both in the input and the output). Codes are those the exact path gives for the same
        segment alone (before this batch's codebook update).
        """
        self._check_audio(input_values)
        batch, _, length = input_values.shape
        chunk = self.config.chunk_length
        if chunk is not None and length > chunk:
            raise ValueError(
                f"training segments must be at most one chunk ({chunk} samples = {self.config.chunk_length_s} s) "
                f"for this chunked model, got {length} samples; cut the audio into segments first"
            )
        bandwidth = self.draw_bandwidth() if bandwidth is None else self.config.check_bandwidth(bandwidth)
        num_quantizers = self.config.num_quantizers_for_bandwidth(bandwidth)
        mask = None  # (B, 1, T): 1 on real samples
        if padding_mask is not None:
            lengths = self._real_lengths(padding_mask, batch, length)
            positions = torch.arange(length, device=input_values.device)
            mask = (positions[None, :] < torch.tensor(lengths, device=input_values.device)[:, None]).unsqueeze(1)
        audio, scale = input_values, None
        if self.config.normalize:
            scale = chunk_scales(audio, mask)  # (B, 1, 1)
            audio = audio / scale
        embeddings = self.encoder(audio.to(self.dtype))  # (B, D, F)
        quantized, codes, commitment_loss = self.quantizer(embeddings, num_quantizers, update_codebooks)
        audio_values = self.decoder(quantized.to(self.dtype))[..., :length]  # (B, C, T)
        if scale is not None:
            audio_values = audio_values * scale
        audio_codes = codes.transpose(0, 1).unsqueeze(0)  # (1, B, Q, F): one chunk
        if not return_dict:
            return audio_codes, audio_values, commitment_loss
        return EncodecOutput(audio_codes=audio_codes, audio_values=audio_values, commitment_loss=commitment_loss)


def _unpickle_model(cls, config, state_dict, training, inference_defaults, language_model):
    # Built on the meta device, then given the pickled tensors (their dtype and device): no arithmetic runs while
    # unpickling, which matters in a worker forked after the parent used OpenMP (any parallel op there hangs).
    with torch.device("meta"):
        model = cls(config)
    model.load_state_dict(state_dict, strict=True, assign=True)
    model.train(training)
    model.set_inference_defaults(**inference_defaults)
    model.language_model = language_model
    return model


def _no_grad_unless_training(model: nn.Module):
    """Codes are discrete, so encode and decode record no graph unless the model is training and autograd is on;
    that also lets the layers use their folded weights."""
    return contextlib.nullcontext() if model.training and torch.is_grad_enabled() else torch.no_grad()


__all__ = [
    "EncodecModel",
    "EncodecPreTrainedModel",
    "EncodecOutput",
    "EncodecEncoderOutput",
    "EncodecDecoderOutput",
    "INFERENCE_DEFAULTS",
]
