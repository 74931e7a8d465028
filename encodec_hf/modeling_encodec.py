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
import contextvars
import copy
import functools
import math
import warnings
from dataclasses import dataclass, field
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
    conv_extra_padding,
    linear_overlap_add,
    num_frames,
    overlap_add_weights,
    plan_chunks,
)
from .configuration_encodec import EncodecConfig
from .language_model import LANGUAGE_MODEL_FOLDER, EncodecLanguageModel, load_language_model
from .loading import check_loaded, own_storage
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
# Layers. Module and attribute names match transformers' EncodecModel so the state-dict keys are the Hub's.
#
# One layer, many uses: each layer's `forward` serves offline inference, streaming (pass the layer's state, made by
# `init_state`, and `final=True` with the stream's last piece), training (under autograd the weight-norm weight
# is computed live, so gradients reach the official parameters) and export.
#
# Every layer runs in two layouts. (B, C, T) tensors take the original's operations (conv1d), which give
# EnCodec 0.1.1's numbers bit for bit. (B, C, 1, T) channels_last tensors take conv2d over time-major memory,
# faster on CPU (docs/performance.md, the "fast" rows), with float rounding in a different order: decoded audio stays
# within a few 1e-6 of the exact path, but a code whose two nearest codebook entries are almost equally near can
# flip. The model decodes in channels_last and encodes in (B, C, T) unless told otherwise. Streams run (B, C, T).


def _pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad that also reflect-pads inputs shorter than the padding, as the original does: zeros are
    appended first so that the reflection exists, then removed again.

    While exporting (ONNX), lengths are symbolic: the same padding is written without branches on them (zeros
    appended whatever the length, possibly none), so that no length is frozen into the graph."""
    if torch.compiler.is_exporting():
        return _pad1d_exported(x, left, right, mode)
    if left == right == 0:
        return x
    # (B, C, T), or (B, C, 1, T), for which torch's reflect padding wants the (unit) height padded too
    unit = (0, 0) if x.dim() == 4 else ()
    if mode != "reflect":
        return nn.functional.pad(x, (left, right, *unit), mode)
    length = x.shape[-1]
    extra = 0
    if length <= max(left, right):
        extra = max(left, right) - length + 1
        x = nn.functional.pad(x, (0, extra, *unit))
    padded = nn.functional.pad(x, (left, right, *unit), "reflect")
    return padded[..., : padded.shape[-1] - extra]


def _pad1d_exported(x: torch.Tensor, left: int, right, mode: str, end: int | None = None) -> torch.Tensor:
    """`_pad1d` for a (B, C, T) graph whose T (and so `right`) is symbolic: the same values without a branch on the
    length, so that the exported graph takes any length. Each padded end is a gather: position j (in x's
    coordinates) reads x_ext[|j|], mirrored at x_ext's end, where x_ext is x followed by the zeros `_pad1d` appends
    to inputs too short to reflect (as many as the true `left` and `right` ask for). ONNX Runtime's reflect Pad, which
    refuses pads close to the length, is not used.

    `end` (a plain int >= right) pads the end by that many samples instead of `right`: the ones past `right` are
    filler that a caller's convolution never reads (EncodecConv1d pads by stride - 1 >= its symbolic extra). Then no
    tensor is sized by a symbolic amount: torch's exporter specialises the length for an arange of `right` (even for
    a check that right >= 0), and a slice of it makes tracing slow (a minute for the 24 kHz model, 20 s without).

    Example: x = [a, b] padded 3 left, 0 right: x_ext = [a, b, 0, 0] (2 zeros make it longer than 3), positions
    -3..-1 read x_ext[3, 2, 1] = [0, 0, b]: [0, 0, b, a, b], what `_pad1d` gives."""
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    end = right if end is None else end
    if statically_known_true(left == 0) and statically_known_true(end == 0):
        return x
    if mode != "reflect":
        return nn.functional.pad(x, (left, end), mode)
    length = x.shape[-1]
    extended = length + torch.sym_max(0, torch.sym_max(left, right) - length + 1)  # x_ext's length

    def read(source: torch.Tensor) -> torch.Tensor:  # x_ext at `source`: x, or 0 past its end
        picked = x.index_select(-1, source.clamp(min=0, max=length - 1))
        return torch.where(source < length, picked, torch.zeros((), dtype=x.dtype, device=x.device))

    head = read(torch.arange(left, 0, -1, device=x.device))  # positions -left .. -1
    if statically_known_true(end == 0):
        return torch.cat([head, x], dim=-1)
    position = length + torch.arange(end, device=x.device)  # positions T .. T + end - 1
    return torch.cat([head, x, read(torch.where(position < extended, position, 2 * (extended - 1) - position))], -1)


def _to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """(N, C, 1, T) in channels_last memory, i.e. stored time-major as (N, T, C), without a copy when it is."""
    return x if x.is_contiguous(memory_format=torch.channels_last) else x.contiguous(memory_format=torch.channels_last)


def _empty(like: torch.Tensor, channels: int) -> torch.Tensor:
    """(B, channels, 0): what a streaming layer returns when no output is final yet."""
    return like.new_zeros((like.shape[0], channels, 0))


_FOLD_SCOPE = contextvars.ContextVar("encodec_fold_scope", default=None)  # see fresh_folds


@contextlib.contextmanager
def fresh_folds():
    """Within this block (one `encode` or `decode` call), every weight-norm layer folds its weight once, from the
    parameters as they are at its first use, and reuses that fold for the rest of the block."""
    token = _FOLD_SCOPE.set(object())
    try:
        yield
    finally:
        _FOLD_SCOPE.reset(token)


class _FoldedWeight:
    """The one weight-norm fold: a convolution's weight (g * v / |v|) evaluated once for inference and reused
    until its parameters change.

    The module keeps its parametrization, so training gets gradients on the official `weight_g` / `weight_v`
    equivalents (`parametrizations.weight.original0/1`) and `state_dict()` keeps the official keys. Under autograd,
    and while torch.compile traces, the weight is computed live at every call. Otherwise the fold is keyed on each
    parameter's storage, version counter, dtype and device, so an in-place edit, `load_state_dict`, an optimizer
    step or `.to(...)` all make it recompute. A write through `.data` bypasses the version counter, so each call
    of `encode` / `decode` also folds afresh, once per layer (`fresh_folds`: 2.2 ms for the 24 kHz model against
    35 ms to encode 1 s, on the 2-core Xeon): whatever route changed the parameters, the next call sees them.
    Streams fold per version only (a fold per push would cost a third of a frame's time): after a `.data` write
    in the middle of a stream, call `model.refresh_weights()`. The cache is this layer's own, never shared between
    models, and replaced as one tuple, so threads reading it concurrently see either the old fold or the new
    one, never a mix; the call scope is a context variable, each thread's own.
    """

    def __init__(self):
        self._cache = None  # (key, weight (out, in, k), weight (out, in, 1, k) channels_last or None)

    def clear(self) -> None:
        self._cache = None

    def get(self, conv: nn.Module, channels_last: bool) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            weight = conv.weight
            return weight.unsqueeze(2) if channels_last else weight
        # The parameters through the modules' own dicts: nn.Module.__getattr__ made this lookup a third of the
        # per-frame Python time of a stream. A parameter replaced (not only edited) is still seen.
        parametrizations = conv._modules.get("parametrizations")
        if parametrizations is not None:
            found = parametrizations._modules["weight"]._parameters
            params = (found["original0"], found["original1"])
        else:
            params = (conv._parameters["weight"],)
        key = (_FOLD_SCOPE.get(), *((p.data_ptr(), p._version, p.dtype, p.device) for p in params))
        cache = self._cache
        if cache is None or cache[0] != key:
            with torch.no_grad():
                cache = (key, conv.weight, None)
            self._cache = cache
        if not channels_last:
            return cache[1]
        if cache[2] is None:
            cache = (cache[0], cache[1], _to_channels_last(cache[1].unsqueeze(2)))
            self._cache = cache
        return cache[2]


def _weight_norm(module: nn.Module) -> nn.Module:
    return nn.utils.parametrizations.weight_norm(module)


@dataclass
class EncodecConv1dState:
    """What a causal `EncodecConv1d` keeps of a stream: the inputs its next outputs need, and the last `kernel_size`
    inputs (the end of the stream is padded by reflecting them)."""

    buffer: torch.Tensor | None = None  # inputs from the next output's first one on (padded domain)
    held: list = field(default_factory=list)  # inputs held before the start could be reflect-padded
    total: int = 0  # inputs received
    started: bool = False
    tail: torch.Tensor | None = None


class EncodecConv1d(nn.Module):
    """Conv1d with EnCodec's padding (causal: all on the left; otherwise split, extra on the right) and
    weight norm or a one-group GroupNorm."""

    def __init__(
        self,
        config: EncodecConfig,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
    ):
        super().__init__()
        self.causal = config.use_causal_conv
        self.pad_mode = config.pad_mode
        self.kernel_size = kernel_size
        self.stride = stride
        # Padding that keeps length / stride frames; the original subtracts (stride - 1) for strided convs.
        self.padding_total = (kernel_size - 1) * dilation - (stride - 1)
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        if config.norm_type == "weight_norm":
            self.conv = _weight_norm(self.conv)
        else:
            self.norm = nn.GroupNorm(1, out_channels)
        self.folded_weight = _FoldedWeight()

    def init_state(self) -> EncodecConv1dState:
        if not self.causal:
            raise ValueError("streaming needs a causal model (the 24 kHz one); this convolution is not causal")
        return EncodecConv1dState()

    def _convolve(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # already padded: (B, C_in, T) or (B, C_in, 1, T) -> (B, C_out, T'), the same layout
        if hidden_states.dim() == 4:
            hidden_states = nn.functional.conv2d(
                _to_channels_last(hidden_states),
                self.folded_weight.get(self.conv, True),
                self.conv.bias,
                stride=(1, self.stride),
                dilation=(1, self.conv.dilation[0]),
            )
        else:
            hidden_states = nn.functional.conv1d(
                hidden_states,
                self.folded_weight.get(self.conv, False),
                self.conv.bias,
                self.stride,
                0,
                self.conv.dilation,
            )
        if hasattr(self, "norm"):
            hidden_states = self.norm(hidden_states)
        return hidden_states

    def forward(
        self, hidden_states: torch.Tensor, state: EncodecConv1dState | None = None, final: bool = False
    ) -> torch.Tensor:
        # (B, C_in, T) -> (B, C_out, ceil(T / stride)), or the same with a unit axis: (B, C, 1, T).
        # With a state: the outputs this piece of the stream completes (all of them at the end, `final`).
        if state is not None:
            return self._stream(hidden_states, state, final)
        extra = conv_extra_padding(hidden_states.shape[-1], self.kernel_size, self.stride, self.padding_total)
        if self.causal:
            left, right = self.padding_total, extra
        else:
            right = self.padding_total // 2
            left, right = self.padding_total - right, right + extra
        if torch.compiler.is_exporting():
            # Exported graphs pad the end by a fixed stride - 1 >= extra instead: as many windows (the last one starts
            # at the same place) over the same values, and no tensor sized by the symbolic `extra` (_pad1d_exported).
            end = right - extra + self.stride - 1
            return self._convolve(_pad1d_exported(hidden_states, left, right, self.pad_mode, end))
        return self._convolve(_pad1d(hidden_states, left, right, self.pad_mode))

    # Streaming: the same sums as offline over the windows that are complete. The start is reflect-padded as
    # offline does, which needs padding + 1 inputs; at the end, the extra samples offline pads with are added.
    def _stream(self, x: torch.Tensor, state: EncodecConv1dState, final: bool) -> torch.Tensor:
        state.total += x.shape[-1]
        recent = x if state.tail is None or x.shape[-1] >= self.kernel_size else torch.cat([state.tail, x], dim=-1)
        state.tail = recent[..., -self.kernel_size :]
        if not state.started:
            state.held.append(x)
            held = torch.cat(state.held, dim=-1)
            if held.shape[-1] <= self.padding_total:  # the reflection needs padding + 1 samples
                if not final:
                    return _empty(x, self.conv.out_channels)
                state.held = []
                # never more than `padding` inputs: compute them as offline does
                return self.forward(held) if held.shape[-1] else _empty(x, self.conv.out_channels)
            state.held, state.started = [], True
            state.buffer = _pad1d(held, self.padding_total, 0, self.pad_mode)
        else:
            state.buffer = torch.cat([state.buffer, x], dim=-1)
        if final:
            extra = conv_extra_padding(state.total, self.kernel_size, self.stride, self.padding_total)
            if extra:
                # Offline pads the end with the pad mode too (reflect for EnCodec): the last samples mirrored,
                # x[-2], x[-3], ... (extra < stride <= kernel, so the tail holds them).
                if self.pad_mode == "reflect":
                    end = torch.flip(state.tail[..., -(extra + 1) : -1], dims=[-1])
                else:
                    end = _pad1d(state.tail, 0, extra, self.pad_mode)[..., -extra:]
                state.buffer = torch.cat([state.buffer, end], dim=-1)
        span = (self.kernel_size - 1) * self.conv.dilation[0] + 1
        available = state.buffer.shape[-1]
        if available < span:
            return _empty(state.buffer, self.conv.out_channels)
        count = (available - span) // self.stride + 1
        out = self._convolve(state.buffer[..., : (count - 1) * self.stride + span])
        state.buffer = state.buffer[..., count * self.stride :]
        return out


@dataclass
class EncodecConvTranspose1dState:
    """What a causal `EncodecConvTranspose1d` keeps of a stream: the last frame's contribution (bias excluded) to
    the `stride` outputs that the next frame's kernel overlaps."""

    tail: torch.Tensor | None = None


class EncodecConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims its fixed padding (causal: `trim_right_ratio` of it on the right)."""

    def __init__(self, config: EncodecConfig, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.conv = nn.ConvTranspose1d(in_channels, out_channels, kernel_size, stride)
        if config.norm_type == "weight_norm":
            self.conv = _weight_norm(self.conv)
        else:
            self.norm = nn.GroupNorm(1, out_channels)
        padding_total = kernel_size - stride
        if config.use_causal_conv:
            self.padding_right = math.ceil(padding_total * config.trim_right_ratio)
        else:
            self.padding_right = padding_total // 2
        self.padding_left = padding_total - self.padding_right
        self.causal = config.use_causal_conv
        self.folded_weight = _FoldedWeight()

    def init_state(self) -> EncodecConvTranspose1dState:
        stride, kernel = self.conv.stride[0], self.conv.kernel_size[0]
        if not self.causal:
            raise ValueError("streaming needs a causal model (the 24 kHz one); this convolution is not causal")
        if kernel != 2 * stride:
            raise ValueError(
                f"streaming supports EnCodec's transposed convolutions (kernel = 2 x stride) only, "
                f"got kernel {kernel} and stride {stride}"
            )
        if self.padding_left:
            raise ValueError("streaming supports causal models with trim_right_ratio = 1 only (EnCodec's)")
        return EncodecConvTranspose1dState()

    def _convolve(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (B, C_in, F) -> (B, C_out, (F + 1) * stride) before trimming, or the same with a unit axis
        if hidden_states.dim() == 4:
            hidden_states = nn.functional.conv_transpose2d(
                _to_channels_last(hidden_states),
                self.folded_weight.get(self.conv, True),
                self.conv.bias,
                stride=(1, self.conv.stride[0]),
            )
        else:
            hidden_states = nn.functional.conv_transpose1d(
                hidden_states, self.folded_weight.get(self.conv, False), self.conv.bias, self.conv.stride
            )
        if hasattr(self, "norm"):
            hidden_states = self.norm(hidden_states)
        return hidden_states

    def forward(
        self, hidden_states: torch.Tensor, state: EncodecConvTranspose1dState | None = None, final: bool = False
    ) -> torch.Tensor:
        # (B, C_in, F) -> (B, C_out, F * stride), or the same with a unit axis: (B, C, 1, F).
        # With a state: frame t's outputs are final once frame t has arrived (trimming is all on the right, so
        # nothing is left at the end).
        if state is not None:
            return self._stream(hidden_states, state)
        hidden_states = self._convolve(hidden_states)
        end = hidden_states.shape[-1] - self.padding_right
        return hidden_states[..., self.padding_left : end]

    def _stream(self, x: torch.Tensor, state: EncodecConvTranspose1dState) -> torch.Tensor:
        stride = self.conv.stride[0]
        if x.shape[-1] == 0:
            return _empty(x, self.conv.out_channels)
        # Overlap-add: the new frames' (frames + 1) * stride outputs; the first `stride` also take the previous
        # frame's tail, the last `stride` wait for the next frame (kernel = 2 x stride, checked by init_state). Each
        # frame is convolved once; the sums of the overlaps come in another order than offline's (within 1e-6).
        y = self._convolve(x)
        bias = self.conv.bias[:, None] if self.conv.bias is not None else 0.0
        out = y[..., : x.shape[-1] * stride]
        if state.tail is not None:
            out = torch.cat([out[..., :stride] + state.tail, out[..., stride:]], dim=-1)
        state.tail = y[..., x.shape[-1] * stride :] - bias
        return out


class EncodecLSTMLayers(nn.Module):
    """A stack of unidirectional LSTM layers with `nn.LSTM`'s parameter names (`weight_ih_l0`, ...), run by the
    same kernel `nn.LSTM` runs (`torch.lstm`), so outputs are bit for bit `nn.LSTM`'s.

    Written by hand rather than using `nn.LSTM` because torch.compile (Dynamo) refuses to trace `nn.LSTM`
    modules and breaks the graph around them; this module is plain parameters and one traceable operator.
    On CUDA the weights are not in cuDNN's single flat buffer, so cuDNN packs them at each call (8 MB for the
    48 kHz model) and PyTorch warns once about it; the warning is filtered for this module.
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.empty(4 * hidden_size, width)))
            self.register_parameter(f"weight_hh_l{layer}", nn.Parameter(torch.empty(4 * hidden_size, hidden_size)))
            self.register_parameter(f"bias_ih_l{layer}", nn.Parameter(torch.empty(4 * hidden_size)))
            self.register_parameter(f"bias_hh_l{layer}", nn.Parameter(torch.empty(4 * hidden_size)))

    def forward(self, sequence: torch.Tensor, state: tuple | None = None, stepwise: bool = False):
        # (T, B, input_size) -> (T, B, hidden_size), and the final (h, c), each (num_layers, B, hidden_size)
        if state is None:
            zeros = sequence.new_zeros(self.num_layers, sequence.shape[1], self.hidden_size)
            state = (zeros, zeros)
        weights = [
            getattr(self, f"{kind}_l{layer}")
            for layer in range(self.num_layers)
            for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        ]
        if stepwise:
            return self._steps(sequence, state, weights)
        if torch.onnx.is_in_onnx_export():
            return self._onnx_lstm(sequence, state, weights)
        out, hidden, cell = torch.lstm(sequence, state, weights, True, self.num_layers, 0.0, False, False, False)
        return out, (hidden, cell)

    def _steps(self, sequence: torch.Tensor, state: tuple, weights: list):
        """torch.lstm's equations one time step at a time, as matrix-vector products: for the frame or two of a
        stream's push. On CPU, torch.lstm costs about 3 ms a call for the 24 kHz model's 2 x 512 LSTM whatever the
        length (it lays its weights out anew at each call), these products 0.4 ms a frame (measured on the 2-core
        Xeon). The same sums in another order: outputs within about 1e-7 of torch.lstm's."""
        hidden, cell = list(state[0].unbind(0)), list(state[1].unbind(0))  # per layer: (B, H)
        outputs = []
        for x in sequence:  # (B, input_size)
            for layer in range(self.num_layers):
                w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
                gates = torch.addmm(b_ih, x, w_ih.t()) + torch.addmm(b_hh, hidden[layer], w_hh.t())  # (B, 4H)
                i, f, g, o = gates.chunk(4, dim=1)  # PyTorch's gate order
                cell[layer] = torch.sigmoid(f) * cell[layer] + torch.sigmoid(i) * torch.tanh(g)
                hidden[layer] = torch.sigmoid(o) * torch.tanh(cell[layer])
                x = hidden[layer]
            outputs.append(x)
        return torch.stack(outputs), (torch.stack(hidden), torch.stack(cell))

    def _onnx_lstm(self, sequence: torch.Tensor, state: tuple, weights: list):
        """torch.lstm as ONNX `LSTM` nodes, one a layer, while exporting: torch's exporter would unroll the
        recurrence for the example's length (and freeze it). ONNX orders the gates i, o, f, c where torch orders
        i, f, g, o; both biases go in one (1, 8H) input. ONNX Runtime's kernel sums in another order than torch's:
        outputs within about 1e-6."""
        hidden_size, hidden, cell = self.hidden_size, [], []
        steps, batch = sequence.shape[0], sequence.shape[1]
        dtype = sequence.dtype  # float16 exports run their LSTM in float32: ONNX Runtime has no float16 LSTM on CPU
        sequence, weights = sequence.float(), [weight.float() for weight in weights]
        state = (state[0].float(), state[1].float())
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]

            def reorder(tensor):
                i, f, g, o = tensor.chunk(4, dim=0)
                return torch.cat([i, o, f, g], dim=0).unsqueeze(0)

            bias = torch.cat([reorder(b_ih), reorder(b_hh)], dim=1)  # (1, 8H)
            h0, c0 = state[0][layer : layer + 1], state[1][layer : layer + 1]  # (1, B, H)
            inputs = (sequence, reorder(w_ih), reorder(w_hh), bias, None, h0, c0)
            attrs = {"hidden_size": hidden_size}
            shapes = [(steps, 1, batch, hidden_size), (1, batch, hidden_size), (1, batch, hidden_size)]
            out, h_n, c_n = torch.onnx.ops.symbolic_multi_out(
                "::LSTM", inputs, attrs, dtypes=[sequence.dtype] * 3, shapes=shapes, version=14
            )
            sequence = out.squeeze(1)  # Y (T, 1, B, H) -> (T, B, H)
            hidden.append(h_n[0])
            cell.append(c_n[0])
        return sequence.to(dtype), (torch.stack(hidden).to(dtype), torch.stack(cell).to(dtype))


STEPWISE_LSTM_FRAMES = 4  # a streaming push of at most this many frames steps the LSTM by matrix products

# cuDNN's note that these weights are packed at every call (see EncodecLSTMLayers), for this module only.
warnings.filterwarnings(
    "ignore", message="RNN module weights are not part of single contiguous", category=UserWarning, module=__name__
)


@dataclass
class EncodecLSTMState:
    """The LSTM's (h, c) after the frames streamed so far; None before the first."""

    hidden: tuple | None = None


class EncodecLSTM(nn.Module):
    """Multi-layer LSTM over time with a skip connection, in convolution layout."""

    def __init__(self, config: EncodecConfig, dimension: int):
        super().__init__()
        self.lstm = EncodecLSTMLayers(dimension, dimension, config.num_lstm_layers)

    def init_state(self) -> EncodecLSTMState:
        return EncodecLSTMState()

    def forward(
        self, hidden_states: torch.Tensor, state: EncodecLSTMState | None = None, final: bool = False
    ) -> torch.Tensor:
        if hidden_states.dim() == 4:  # (B, C, 1, T) channels_last: memory is already (B, T, C)
            sequence = hidden_states.squeeze(2).permute(2, 0, 1)  # (T, B, C)
            sequence = self.lstm(sequence)[0] + sequence
            return _to_channels_last(sequence.permute(1, 2, 0).unsqueeze(2))  # (B, C, 1, T)
        if state is not None and hidden_states.shape[-1] == 0:
            return hidden_states
        sequence = hidden_states.permute(2, 0, 1)  # (B, C, T) -> (T, B, C)
        # A stream's push carries a frame or a few: step by step is faster there (see EncodecLSTMLayers._steps).
        # Offline inference keeps torch.lstm, the original's kernel and numbers.
        stepwise = state is not None and sequence.shape[0] <= STEPWISE_LSTM_FRAMES and not torch.is_grad_enabled()
        out, hidden = self.lstm(sequence, None if state is None else state.hidden, stepwise=stepwise)
        if state is not None:
            state.hidden = hidden
        return (out + sequence).permute(1, 2, 0)  # (B, C, T)


@dataclass
class EncodecResnetBlockState:
    """Both branches of a residual block stream at their own pace; their sum is emitted as far as both reach."""

    block: list
    shortcut: EncodecConv1dState | None
    pending: list = field(default_factory=lambda: [None, None])  # block and shortcut outputs not yet summed


class EncodecResnetBlock(nn.Module):
    """SEANet residual block: ELU, conv k, ELU, conv 1, plus a 1x1-conv or identity shortcut."""

    def __init__(self, config: EncodecConfig, dim: int, dilations: list[int]):
        super().__init__()
        kernel_sizes = (config.residual_kernel_size, 1)
        hidden = dim // config.compress
        block = []
        for i, (kernel_size, dilation) in enumerate(zip(kernel_sizes, dilations, strict=True)):
            in_chs = dim if i == 0 else hidden
            out_chs = dim if i == len(kernel_sizes) - 1 else hidden
            block += [nn.ELU(), EncodecConv1d(config, in_chs, out_chs, kernel_size, dilation=dilation)]
        self.block = nn.ModuleList(block)
        self.shortcut = EncodecConv1d(config, dim, dim, kernel_size=1) if config.use_conv_shortcut else nn.Identity()

    def init_state(self) -> EncodecResnetBlockState:
        shortcut = self.shortcut.init_state() if isinstance(self.shortcut, EncodecConv1d) else None
        return EncodecResnetBlockState(init_layer_states(self.block), shortcut)

    def forward(
        self, hidden_states: torch.Tensor, state: EncodecResnetBlockState | None = None, final: bool = False
    ) -> torch.Tensor:
        residual = hidden_states
        if state is not None:
            block = run_layers(self.block, hidden_states, states=state.block, final=final)
            shortcut = residual if state.shortcut is None else self.shortcut(residual, state.shortcut, final)
            for index, part in enumerate((block, shortcut)):
                previous = state.pending[index]
                state.pending[index] = part if previous is None else torch.cat([previous, part], dim=-1)
            ready = min(state.pending[0].shape[-1], state.pending[1].shape[-1])
            out = state.pending[1][..., :ready] + state.pending[0][..., :ready]
            state.pending = [pending[..., ready:] for pending in state.pending]
            return out
        hidden_states = run_layers(self.block, hidden_states)
        if torch.is_grad_enabled():
            return self.shortcut(residual) + hidden_states
        return hidden_states.add_(self.shortcut(residual))  # the same sum (addition commutes exactly), in place


# Layers whose output is always a new tensor (a convolution's, a sum's), never a view of their input.
_FRESH_OUTPUT_LAYERS = (EncodecConv1d, EncodecConvTranspose1d, EncodecLSTM, EncodecResnetBlock)


def init_layer_states(layers: nn.ModuleList) -> list:
    """One streaming state per layer (None for the stateless ELU and Identity)."""
    return [layer.init_state() if hasattr(layer, "init_state") else None for layer in layers]


def run_layers(
    layers: nn.ModuleList,
    hidden_states: torch.Tensor,
    channels_last: bool = False,
    states: list | None = None,
    final: bool = False,
) -> torch.Tensor:
    """Run (B, C, T) through `layers`, in (B, C, 1, T) channels_last memory when asked; returns (B, C', T').

    With `states` (from `init_layer_states`), each layer streams with its own state (`final` on the stream's last
    piece). Without autograd, an ELU that follows one of this file's layers (each returns a new tensor, never the
    caller's) runs in place: the same values, without allocating another activation-sized buffer (fresh buffers
    cost page faults).
    """
    if channels_last:
        hidden_states = _to_channels_last(hidden_states.unsqueeze(2))
    in_place = not torch.is_grad_enabled()
    fresh = False  # whether hidden_states is a new tensor made by the previous layer, safe to overwrite
    for index, layer in enumerate(layers):
        state = None if states is None else states[index]
        if in_place and fresh and type(layer) is nn.ELU:
            hidden_states = nn.functional.elu_(hidden_states, layer.alpha)
        elif state is None:
            hidden_states = layer(hidden_states)
        else:
            hidden_states = layer(hidden_states, state=state, final=final)
        fresh = isinstance(layer, _FRESH_OUTPUT_LAYERS)
    return hidden_states.squeeze(2) if channels_last else hidden_states


def _checkpointed(layers: nn.ModuleList, hidden_states: torch.Tensor) -> torch.Tensor:
    """Run (B, C, T) through `layers` for training, keeping only each layer's input and recomputing its
    activations during backward (gradient checkpointing: less memory, about a third more compute)."""
    from torch.utils.checkpoint import checkpoint

    for layer in layers:
        hidden_states = checkpoint(layer, hidden_states, use_reentrant=False)
    return hidden_states


class EncodecEncoder(nn.Module):
    """SEANet encoder: (B, channels, T) audio to (B, hidden_size, ceil(T / hop_length)) latent frames."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.gradient_checkpointing = False  # set by model.activation_checkpointing_enable()
        layers = [EncodecConv1d(config, config.audio_channels, config.num_filters, config.kernel_size)]
        scaling = 1
        for ratio in reversed(config.upsampling_ratios):
            width = scaling * config.num_filters
            for j in range(config.num_residual_layers):
                layers += [EncodecResnetBlock(config, width, [config.dilation_growth_rate**j, 1])]
            layers += [nn.ELU(), EncodecConv1d(config, width, width * 2, kernel_size=ratio * 2, stride=ratio)]
            scaling *= 2
        if config.num_lstm_layers:
            layers += [EncodecLSTM(config, scaling * config.num_filters)]
        layers += [
            nn.ELU(),
            EncodecConv1d(config, scaling * config.num_filters, config.hidden_size, config.last_kernel_size),
        ]
        self.layers = nn.ModuleList(layers)

    def init_states(self) -> list:
        """Streaming states for `forward(..., states=)`: one per layer, for one stream."""
        return init_layer_states(self.layers)

    def forward(
        self, hidden_states: torch.Tensor, channels_last: bool = False, states: list | None = None, final: bool = False
    ) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled() and states is None:
            return _checkpointed(self.layers, hidden_states)
        return run_layers(self.layers, hidden_states, channels_last, states, final)


class EncodecDecoder(nn.Module):
    """SEANet decoder: (B, hidden_size, F) latent frames to (B, channels, F * hop_length) audio."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.gradient_checkpointing = False  # set by model.activation_checkpointing_enable()
        scaling = int(2 ** len(config.upsampling_ratios))
        layers = [EncodecConv1d(config, config.hidden_size, scaling * config.num_filters, config.kernel_size)]
        if config.num_lstm_layers:
            layers += [EncodecLSTM(config, scaling * config.num_filters)]
        for ratio in config.upsampling_ratios:
            width = scaling * config.num_filters
            layers += [nn.ELU(), EncodecConvTranspose1d(config, width, width // 2, kernel_size=ratio * 2, stride=ratio)]
            for j in range(config.num_residual_layers):
                layers += [EncodecResnetBlock(config, width // 2, [config.dilation_growth_rate**j, 1])]
            scaling //= 2
        layers += [nn.ELU(), EncodecConv1d(config, config.num_filters, config.audio_channels, config.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def init_states(self) -> list:
        """Streaming states for `forward(..., states=)`: one per layer, for one stream."""
        return init_layer_states(self.layers)

    def forward(
        self, hidden_states: torch.Tensor, channels_last: bool = False, states: list | None = None, final: bool = False
    ) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled() and states is None:
            return _checkpointed(self.layers, hidden_states)
        return run_layers(self.layers, hidden_states, channels_last, states, final)


def broadcast_from_rank0(tensors) -> None:
    """Copy rank 0's values of `tensors` to every rank, in place (a no-op outside torch.distributed): what EnCodec
    0.1.1 does with a codebook's buffers after initialising it or replacing entries; the trainer with its models
    at the start."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for tensor in tensors:
            torch.distributed.broadcast(tensor.data, src=0)


def average_across_ranks(*tensors: torch.Tensor) -> None:
    """Average tensors in place over all ranks (a no-op outside torch.distributed)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        for tensor in tensors:
            torch.distributed.all_reduce(tensor)
            tensor.div_(world)


def sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """`num` rows of `samples` (N, D), without repetition when there are enough, drawn from torch's global random
    generator exactly as EnCodec 0.1.1 draws them (so a seed gives the original's picks)."""
    if samples.shape[0] >= num:
        indices = torch.randperm(samples.shape[0], device=samples.device)[:num]
    else:
        indices = torch.randint(0, samples.shape[0], (num,), device=samples.device)
    return samples[indices]


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on (N, D) `samples`, started from random rows, as EnCodec 0.1.1 runs it: returns the means
    (num_clusters, D) and the last assignment's cluster sizes (num_clusters,). An empty cluster keeps its mean.

    Example: samples [[0], [0.1], [10], [10.2]] with 2 clusters give means [[0.05], [10.1]] (in some order) and
    sizes [2, 2].
    """
    dim = samples.shape[-1]
    means = sample_vectors(samples, num_clusters)
    bins = None
    for _ in range(num_iters):
        dists = -((samples[:, None, :] - means[None, :, :]) ** 2).sum(dim=-1)  # (N, K)
        buckets = dists.max(dim=-1).indices
        bins = torch.bincount(buckets, minlength=num_clusters)
        empty = bins == 0
        sums = buckets.new_zeros(num_clusters, dim, dtype=samples.dtype)
        sums.scatter_add_(0, buckets[:, None].expand(-1, dim), samples)
        means = torch.where(empty[:, None], means, sums / bins.masked_fill(empty, 1)[:, None])
    if bins is None:  # no iteration: sizes of the random start
        bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    return means, bins


class EncodecEuclideanCodebook(nn.Module):
    """One codebook: `embed` (codebook_size, dim), and the statistics training keeps (`inited`, `cluster_size`,
    `embed_avg`).

    `encode` / `decode` serve inference. `forward` serves both: in eval mode it is `decode(encode(x))` and changes
    nothing; in train mode it updates the codebook exactly as EnCodec 0.1.1's `EuclideanCodebook.forward` does
    (k-means on the first batch if not `inited`, replacement of entries used less than `threshold_ema_dead_code`
    times, then exponential moving averages of cluster sizes and sums with Laplace smoothing). The buffers are
    updated in place, without autograd, and kept identical across ranks under torch.distributed.
    """

    def __init__(self, config: EncodecConfig):
        super().__init__()
        embed = torch.zeros(config.codebook_size, config.codebook_dim)
        self.codebook_size = config.codebook_size
        self.decay = config.codebook_decay
        self.epsilon = config.codebook_epsilon
        self.kmeans_iters = config.kmeans_iters
        self.threshold_ema_dead_code = config.threshold_ema_dead_code
        self.replacement = config.codebook_replacement
        self.inited = nn.Buffer(torch.ones(1))
        self.cluster_size = nn.Buffer(torch.zeros(config.codebook_size))
        self.embed = nn.Buffer(embed)
        self.embed_avg = nn.Buffer(embed.clone())

    def encode(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (N, D) -> (N,): index of the nearest entry, with the original's expression so that ties and
        # rounding fall the same way; in float32 at least (a bfloat16 model's distances would tie often).
        hidden_states = hidden_states.float()
        embed = self.embed.float().t()
        dist = -(
            hidden_states.pow(2).sum(1, keepdim=True) - 2 * hidden_states @ embed + embed.pow(2).sum(0, keepdim=True)
        )
        return dist.max(dim=-1).indices

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(codes, self.embed)

    def reset(self) -> None:
        """Empty the codebook and mark it uninitialised: the next training batch initialises it with k-means (what
        EnCodec 0.1.1 does with a model built from scratch)."""
        with torch.no_grad():
            self.inited.zero_()
            self.cluster_size.zero_()
            self.embed.zero_()
            self.embed_avg.zero_()

    def forward(self, hidden_states: torch.Tensor, update: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        # (N, D) -> quantized (N, D), codes (N,). The quantized vectors use the codebook as it was before this
        # batch's update, as in the original. `update=False` (frozen codebooks) quantizes without learning.
        if not (self.training and update):
            codes = self.encode(hidden_states)
            return self.decode(codes), codes
        with torch.no_grad():
            samples = hidden_states.detach()
            if not self.inited.item():
                embed, sizes = kmeans(samples, self.codebook_size, self.kmeans_iters)
                self.embed.copy_(embed)
                self.embed_avg.copy_(embed)
                self.cluster_size.copy_(sizes)
                self.inited.fill_(1)
                broadcast_from_rank0(self.buffers())
            codes = self.encode(samples)
            quantized = self.decode(codes)
            self._expire_codes(samples)
            onehot = nn.functional.one_hot(codes, self.codebook_size).type(samples.dtype)  # (N, K)
            counts, sums = onehot.sum(0), samples.t() @ onehot  # (K,), (D, K)
            average_across_ranks(counts, sums)
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.embed_avg.mul_(self.decay).add_(sums.t(), alpha=1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
            self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))
        return quantized, codes

    def _expire_codes(self, samples: torch.Tensor) -> None:
        # As the original (and audiocraft 1.3): entries below the threshold take random batch vectors. In both
        # references the EMA step that follows recomputes every entry from `embed_avg`, which this does not touch,
        # so the replacement is overwritten in the same step and only its random draw is felt ("original", kept
        # for parity). "reset" also sets the entries' averaged size to the threshold and their averaged sum to
        # threshold x the new vector, so that the replacement survives the update.
        if self.threshold_ema_dead_code == 0:
            return
        expired = self.cluster_size < self.threshold_ema_dead_code
        if not torch.any(expired):
            return
        sampled = sample_vectors(samples, self.codebook_size)
        self.embed.copy_(torch.where(expired[:, None], sampled, self.embed))
        if self.replacement == "reset":
            threshold = float(self.threshold_ema_dead_code)
            self.cluster_size.copy_(torch.where(expired, threshold, self.cluster_size))
            self.embed_avg.copy_(torch.where(expired[:, None], sampled * threshold, self.embed_avg))
        broadcast_from_rank0(self.buffers())


class EncodecVectorQuantization(nn.Module):
    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.codebook = EncodecEuclideanCodebook(config)
        self.commitment_weight = config.commitment_weight

    def encode(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, dim, frames = hidden_states.shape
        flat = hidden_states.permute(0, 2, 1).reshape(-1, dim)  # (B, D, F) -> (B * F, D)
        return self.codebook.encode(flat).view(batch, frames)  # (B, F)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codebook.decode(codes).permute(0, 2, 1)  # (B, F) -> (B, D, F)

    def forward(
        self, hidden_states: torch.Tensor, update_codebook: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, F) -> quantized (B, D, F), codes (B, F), commitment loss (a scalar; 0 in eval mode).

        In train mode the quantized vectors pass gradients straight through to `hidden_states`, and the
        commitment loss is the mean squared distance of `hidden_states` to them (times `commitment_weight`);
        the codebook learns unless `update_codebook` is False."""
        batch, dim, frames = hidden_states.shape
        flat = hidden_states.permute(0, 2, 1).reshape(-1, dim)  # (B * F, D)
        quantized, codes = self.codebook(flat, update_codebook)
        loss = hidden_states.new_zeros(())
        if self.training:
            quantized = flat + (quantized - flat).detach()  # the original's expression, rounding included
            if self.commitment_weight > 0:
                loss = nn.functional.mse_loss(quantized.detach(), flat) * self.commitment_weight
        quantized = quantized.view(batch, frames, dim).permute(0, 2, 1)
        return quantized, codes.view(batch, frames), loss


class EncodecResidualVectorQuantizer(nn.Module):
    """Residual vector quantizer: each codebook quantizes what the previous ones left over."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.layers = nn.ModuleList([EncodecVectorQuantization(config) for _ in range(config.num_quantizers)])

    def encode(self, embeddings: torch.Tensor, num_quantizers: int) -> torch.Tensor:
        # (B, D, F) -> (num_quantizers, B, F)
        residual = embeddings.float()
        codes = []
        for layer in self.layers[:num_quantizers]:
            indices = layer.encode(residual)
            residual = residual - layer.decode(indices)
            codes.append(indices)
        return torch.stack(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        # (num_quantizers, B, F) -> (B, D, F)
        if torch.compiler.is_exporting():
            # The number of codebooks is symbolic in an exported decoder (one file serves every bandwidth): the
            # same sum, as one gather from the stacked codebooks and a reduction (rounding within about 1e-7).
            table = torch.stack([layer.codebook.embed for layer in self.layers])  # (Q_max, K, D)
            picks = torch.arange(codes.shape[0], device=codes.device)[:, None, None]  # (Q, 1, 1)
            return table[picks, codes].sum(0).permute(0, 2, 1)  # (Q, B, F, D) -> (B, D, F)
        quantized = torch.tensor(0.0, device=codes.device)
        for layer, indices in zip(self.layers, codes, strict=False):  # codes may use fewer codebooks
            quantized = quantized + layer.decode(indices)
        return quantized

    def forward(
        self, embeddings: torch.Tensor, num_quantizers: int, update_codebooks: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, F) -> quantized (B, D, F), codes (num_quantizers, B, F), commitment loss (the mean over the
        codebooks used, as EnCodec 0.1.1's `penalty`).

        In eval mode this is `decode(encode(embeddings))` and changes nothing. In train mode every codebook used
        updates itself (see `EncodecEuclideanCodebook`), gradients pass straight through to `embeddings`, and
        the residuals are formed as the original forms them (from the straight-through values);
        `update_codebooks=False` keeps the codebooks fixed (straight-through gradients and the loss remain)."""
        if not 1 <= num_quantizers <= len(self.layers):
            raise ValueError(f"num_quantizers must be in [1, {len(self.layers)}], got {num_quantizers!r}")
        if not self.training:
            codes = self.encode(embeddings, num_quantizers)
            return self.decode(codes), codes, embeddings.new_zeros(())
        residual = embeddings.float()
        quantized_sum = 0.0
        codes, losses = [], []
        for layer in self.layers[:num_quantizers]:
            quantized, indices, loss = layer(residual, update_codebooks)
            residual = residual - quantized
            quantized_sum = quantized_sum + quantized
            codes.append(indices)
            losses.append(loss)
        return quantized_sum, torch.stack(codes), torch.stack(losses).mean()

    def reset_codebooks(self) -> None:
        """Mark every codebook uninitialised (see `EncodecEuclideanCodebook.reset`): for training from scratch."""
        for layer in self.layers:
            layer.codebook.reset()


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
DECODE_PIECE_FRAMES = 375  # 5 s at 24 kHz: about 0.5 GB of activations (the channels_last layout is not streamed)

INFERENCE_DEFAULTS = {
    # exact (B, C, T) layout, each chunk alone: codes identical to EnCodec 0.1.1's
    "fast_encoding": False,
    # channels_last layout, chunks in batches: audio within a few 1e-6 of the exact path, faster on CPU
    "fast_decoding": True,
    # chunks per batch in the fast paths: fastest on a 2-core CPU (55 ms a chunk, 57 alone, 85 with 8 a batch)
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


def _deprecated_option(name: str) -> property:
    def getter(self):
        return self._inference_defaults[name]

    def setter(self, value):
        warnings.warn(
            f"setting model.{name} is deprecated and will be removed in the next release: pass {name}= to "
            f"encode/decode, or call model.set_inference_defaults({name}=...)",
            FutureWarning,
            stacklevel=2,
        )
        self.set_inference_defaults(**{name: value})

    return property(getter, setter, doc=f"Deprecated: the model-wide default of the `{name}` argument.")


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

    fast_encoding = _deprecated_option("fast_encoding")
    fast_decoding = _deprecated_option("fast_decoding")
    chunk_batch_size = _deprecated_option("chunk_batch_size")

    @property
    def progress_callback(self):
        """Deprecated: pass `progress=` to `encode` / `decode`."""
        return getattr(self, "_progress_callback", None)

    @progress_callback.setter
    def progress_callback(self, value):
        warnings.warn(
            "setting model.progress_callback is deprecated and will be removed in the next release: pass "
            "progress= to encode/decode",
            FutureWarning,
            stacklevel=2,
        )
        self._progress_callback = value

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
        that memory is one piece's however long the clip (whole, 280 s took 4.4 GB); `on_piece(fraction)` is told
        of each piece done. The pieces compute the same sums in the same order: embeddings equal to the whole
        clip's, bit for bit (tests/test_streaming.py, the full-size model on 60 s to 2 minutes)."""
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
        report = _progress_reporter(progress if progress is not None else self.progress_callback, "encode")
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
        that of one piece however long the clip (whole, ten minutes at 24 kHz took 6.7 GB). The pieces compute the
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
        report = _progress_reporter(progress if progress is not None else self.progress_callback, "decode")
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


def _register_auto_model() -> None:
    """Make the Auto classes give this package's classes for EnCodec folders, once this module is imported (and,
    through the hook in `encodec_hf/__init__.py`, as soon as transformers' Auto classes load after `import
    encodec_hf`).

    The folders keep model_type "encodec" (the Hub's layout), so transformers alone still loads them with its own
    classes. Here `AutoConfig` maps "encodec" to this package's `EncodecConfig` (`exist_ok=True`: transformers'
    built-in entry stays, the registered one is looked up first), and the model and feature-extractor mappings,
    keyed by config class, map it to this package's classes. transformers' own config class still builds
    transformers' model (`AutoModel.from_config(transformers.EncodecConfig())`). The feature extractor is found by
    config class because this package's preprocessor_config.json leaves out `feature_extractor_type` (a name both
    packages' classes share; transformers' would be found first).
    """
    from transformers import AutoConfig, AutoModel

    from .processing import EncodecFeatureExtractor  # its import registers the feature extractor and processor

    AutoModel.register(EncodecConfig, EncodecModel, exist_ok=True)
    AutoConfig.register("encodec", EncodecConfig, exist_ok=True)
    del EncodecFeatureExtractor


if __name__.startswith("encodec_hf."):  # the installed package, not a folder's remote-code copy run by transformers
    _register_auto_model()

__all__ = [
    "EncodecModel",
    "EncodecPreTrainedModel",
    "EncodecOutput",
    "EncodecEncoderOutput",
    "EncodecDecoderOutput",
    "INFERENCE_DEFAULTS",
    "conv_extra_padding",
    "num_frames",
    "overlap_add_weights",
    "linear_overlap_add",
]
