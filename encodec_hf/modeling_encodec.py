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
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import initialization as init
from transformers.modeling_utils import PreTrainedAudioTokenizerBase
from transformers.utils import ModelOutput, logging

from .chunking import decode_audio, decode_plans, encode_audio, num_frames
from .configuration_encodec import EncodecConfig
from .inputs import (
    INFERENCE_DEFAULTS,
    InferenceOptions,
    check_audio,
    check_codes,
    check_option,
    progress_reporter,
    real_lengths,
    resolve_options,
)
from .language_model import LANGUAGE_MODEL_FOLDER, EncodecLanguageModel, load_language_model
from .layers import (
    EncodecConv1d,
    EncodecConvTranspose1d,
    EncodecDecoder,
    EncodecEncoder,
    EncodecLSTMLayers,
    fresh_folds,
)
from .loading import check_loaded, check_model_folder, own_storage
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
        commitment_loss (`torch.FloatTensor`, a scalar): from `training_forward` only, the quantizer's commitment
            loss (the mean over the codebooks used); None from `forward`.
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


MAX_SCALE = 1e6  # the largest per-chunk scale: see encode_chunks
LONG_DECODE_FRAMES = 4500  # causal clips longer than this (60 s at 24 kHz) decode in pieces: see decode_chunks
LONG_ENCODE_FRAMES = 4500  # and encode in pieces (exact path): see encode_chunks
ENCODE_PIECE_FRAMES = 375  # 5 s at 24 kHz
DECODE_PIECE_FRAMES = 375  # 5 s at 24 kHz (the channels_last layout is not streamed)


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


class EncodecModel(EncodecPreTrainedModel):
    """The EnCodec neural audio codec.

    `encode` turns (batch, channels, samples) audio into codes shaped (num_chunks, batch, num_quantizers,
    frames) and per-chunk scales; `decode` turns them back; `forward` does both. Shapes, names and output
    classes are transformers' `EncodecModel`'s; the numbers are EnCodec 0.1.1's (see the module docstring).

    Options (keyword arguments of `encode`, `decode` and `forward`: `fast_encoding`, `fast_decoding`,
    `chunk_batch_size`, `pad_chunks`, `progress`) are described in `encodec_hf.inputs.InferenceOptions`.
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
        `chunk_batch_size`, `pad_chunks`); an unknown name or a wrong value raises a ValueError. An argument given to
        `encode` or `decode` always wins, so threads sharing a model should pass their options rather than change
        these."""
        checked = {name: check_option(name, value) for name, value in options.items()}
        self._inference_defaults = {**self._inference_defaults, **checked}  # one assignment: readers see old or new

    @property
    def inference_defaults(self) -> dict:
        """A copy of the model-wide defaults of the inference options."""
        return dict(self._inference_defaults)

    def inference_options(self, **given) -> InferenceOptions:
        """One call's options: each given value (None: not given) checked, the model's defaults for the rest."""
        return resolve_options(self._inference_defaults, self.config.use_causal_conv, **given)

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
        if "config" not in kwargs:
            check_model_folder(pretrained_model_name_or_path, kwargs.get("subfolder", ""))
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

    # -- encoding -----------------------------------------------------------------------------------------------

    def encode_chunks(
        self,
        chunks: torch.Tensor,
        num_quantizers: int,
        fast_encoding: bool = False,
        mask: torch.Tensor | None = None,
        on_piece=None,
        in_pieces: bool = True,
    ):
        """Encode chunks of equal length, each on its own scale: (N, C, T) audio -> codes (N, num_quantizers,
        ceil(T / hop)) and scales (N, 1), or None for models that do not normalise. A (N, 1, T) `mask` marks the
        real samples of padded chunks (their scale is taken over those alone).

        On the exact path, a causal model's clip of more than LONG_ENCODE_FRAMES frames (60 s at 24 kHz) goes
        through the encoder in pieces of ENCODE_PIECE_FRAMES frames, each layer carrying its streaming state, so
        that memory is one piece's however long the clip (docs/performance.md); `on_piece(fraction)` is told
        of each piece done. The pieces compute the same sums in the same order: embeddings equal to the whole
        clip's, bit for bit (tests/test_streaming.py: the full-size model against EnCodec 0.1.1 on 62 s).
        `in_pieces=False` runs every clip whole (the exporter's graphs, which take any length)."""
        scale = None
        if self.config.normalize:
            scale = chunk_scales(chunks, mask)  # (N, 1, 1)
            chunks = chunks / scale
            scale = scale.view(-1, 1)
        hop = self.config.hop_length
        long_causal = self.config.use_causal_conv and self.config.chunk_length is None
        pieced = long_causal and not fast_encoding and in_pieces
        if pieced and num_frames(chunks.shape[-1], hop) > LONG_ENCODE_FRAMES:
            embeddings = self.encoder.in_pieces(chunks.to(self.dtype), ENCODE_PIECE_FRAMES * hop, on_piece)  # (N, D, F)
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
            fast_encoding, chunk_batch_size, pad_chunks, progress: see `encodec_hf.inputs.InferenceOptions`.

        Returns:
            `EncodecEncoderOutput` with `audio_codes` (num_chunks, batch_size, num_quantizers, frames),
            `audio_scales` (num_chunks tensors of shape (batch_size, 1), or Nones) and `last_frame_pad_length`.
            Without chunking, num_chunks is 1 and frames is ceil(samples / hop_length).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        options = self.inference_options(
            fast_encoding=fast_encoding, chunk_batch_size=chunk_batch_size, pad_chunks=pad_chunks
        )
        report = progress_reporter(progress, "encode")
        bandwidth = self.config.target_bandwidths[0] if bandwidth is None else self.config.check_bandwidth(bandwidth)
        check_audio(self.config, input_values)
        lengths = real_lengths(padding_mask, input_values.shape[0], input_values.shape[-1])
        num_quantizers = self.config.num_quantizers_for_bandwidth(bandwidth)
        with _no_grad_unless_training(self), fresh_folds():
            codes, scales, last_frame_pad_length = encode_audio(
                self, input_values, lengths, num_quantizers, options, report
            )
        audio_scales = list(scales) if scales is not None else [None] * codes.shape[0]
        if not return_dict:
            return codes, audio_scales, last_frame_pad_length
        return EncodecEncoderOutput(codes, audio_scales, last_frame_pad_length)

    # -- decoding -----------------------------------------------------------------------------------------------

    def decode_chunks(self, codes: torch.Tensor, fast_decoding: bool = True, in_pieces: bool = True) -> torch.Tensor:
        """(N, Q, F) codes of chunks of equal length -> (N, channels, F * hop) float32 audio, before any scale.

        A causal model's clip of more than LONG_DECODE_FRAMES frames (60 s at 24 kHz) goes through the decoder in
        pieces of DECODE_PIECE_FRAMES, each layer carrying its streaming state across them, so that memory stays
        that of one piece however long the clip (docs/performance.md). The pieces compute the
        same sums over shorter windows: audio within 1e-5 of decoding the clip whole (tests/test_streaming.py).
        `in_pieces=False` decodes every clip whole (the exporter's graphs, which take any length).
        """
        frames = codes.shape[-1]
        long_causal = self.config.use_causal_conv and self.config.chunk_length is None and frames > LONG_DECODE_FRAMES
        embeddings = self.quantizer.decode(codes.transpose(0, 1)).to(self.dtype)  # (N, D, F)
        if long_causal and in_pieces:
            return self.decoder.in_pieces(embeddings, DECODE_PIECE_FRAMES).float()  # (N, C, F * hop)
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
            fast_decoding, chunk_batch_size, progress: see `encodec_hf.inputs.InferenceOptions`.

        Returns:
            `EncodecDecoderOutput` with `audio_values` (batch_size, channels, samples).
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        options = self.inference_options(fast_decoding=fast_decoding, chunk_batch_size=chunk_batch_size)
        report = progress_reporter(progress, "decode")
        scales = check_codes(self.config, audio_codes, audio_scales)
        total_chunks, batch = audio_codes.shape[:2]
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
        lengths = None if padding_mask is None else real_lengths(padding_mask, batch, padding_mask.shape[-1])
        plans, lengths = decode_plans(self.config, audio_codes, lengths, last_frame_pad_length)
        with _no_grad_unless_training(self), fresh_folds():
            audio_values = decode_audio(self, audio_codes, scales, plans, lengths, options, report)
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
    ) -> EncodecOutput | tuple:
        """Encode then decode (or decode the given `audio_codes` and `audio_scales`); options as for `encode` and
        `decode`. The same in train and eval mode (training's differentiable round trip is `training_forward`).

        Returns:
            `EncodecOutput` with `audio_codes` and `audio_values` (batch_size, channels, samples); with a
            `padding_mask`, `audio_values` has exactly the longest real length.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
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

    def training_forward(
        self,
        input_values: torch.Tensor,
        padding_mask: torch.Tensor | None = None,
        bandwidth: float | None = None,
        update_codebooks: bool = True,
    ) -> EncodecOutput:
        """The differentiable round trip of training (what the trainer calls): each item is one segment (at most one
        chunk for chunked models), normalised by its own scale when the model normalises, encoded, quantized
        (straight-through gradients), decoded and scaled back. In train mode the codebooks update themselves
        (`update_codebooks=False` keeps them fixed); `commitment_loss` is the quantizer's, unweighted (the mean
        over the codebooks used of each residual's squared distance to its code: a recipe weighs it).

        `bandwidth` None draws one per call from `config.target_bandwidths` with torch's global generator (pass
        one, e.g. from `draw_bandwidth(generator)`, to control it). A `padding_mask` (1 on real samples) makes each
        item's scale use its real samples only; the decoded audio keeps the input's length (losses should mask
        the padding, both in the input and the output). Codes are those the exact path gives for the same
        segment alone (before this batch's codebook update).
        """
        check_audio(self.config, input_values)
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
            lengths = real_lengths(padding_mask, batch, length)
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
