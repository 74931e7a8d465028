"""EnCodec's layers: convolutions with EnCodec's padding and weight norm, the LSTM, residual blocks, and the SEANet
encoder and decoder built from them, each with its streaming state. Module and attribute names match transformers'
EncodecModel, so the state-dict keys are the Hub's. The model (`modeling_encodec`) composes them; the quantizer is
in `quantization`.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from .chunking import conv_extra_padding
from .configuration_encodec import EncodecConfig

# ---------------------------------------------------------------------------------------------------------------
# Layers. Module and attribute names match transformers' EncodecModel so the state-dict keys are the Hub's.
#
# One layer, many uses: each layer's `forward` serves offline inference, streaming (pass the layer's state, made by
# `init_state`, and `final=True` with the stream's last piece), training (under autograd the weight-norm weight
# is computed live, so gradients reach the official parameters). The exporter swaps in stand-ins of its own
# (exporting.py) for the forms an exported graph needs.
#
# Every layer runs in two layouts. (B, C, T) tensors take the original's operations (conv1d), which give
# EnCodec 0.1.1's numbers bit for bit. (B, C, 1, T) channels_last tensors take conv2d over time-major memory,
# faster on CPU (docs/performance.md, the "fast" rows), with float rounding in a different order: decoded audio stays
# within a few 1e-6 of the exact path, but a code whose two nearest codebook entries are almost equally near can
# flip. The model decodes in channels_last and encodes in (B, C, T) unless told otherwise. Streams run (B, C, T).


def _pad1d(x: torch.Tensor, left: int, right: int, mode: str) -> torch.Tensor:
    """F.pad that also reflect-pads inputs shorter than the padding, as the original does: zeros are
    appended first so that the reflection exists, then removed again (the exporter's stand-in, in exporting.py,
    writes the same padding without branches on symbolic lengths)."""
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
    of `encode` / `decode` also folds afresh, once per layer (`fresh_folds`; small next to a call, measured in
    docs/performance.md): whatever route changed the parameters, the next call sees them.
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
        return self._convolve(self._pad(hidden_states, left, right, spare=self.stride - 1 - extra))

    def _pad(self, hidden_states: torch.Tensor, left: int, right: int, spare: int = 0) -> torch.Tensor:
        # `spare`: samples that may be padded past `right` because no window reads them (used by the exporter's
        # stand-in, which pads by a fixed amount); this form pads exactly `right`
        return _pad1d(hidden_states, left, right, self.pad_mode)

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
            state.buffer = self._pad(held, self.padding_total, 0)
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
        weights = self.flat_weights()
        if stepwise:
            return self._steps(sequence, state, weights)
        out, hidden, cell = torch.lstm(sequence, state, weights, True, self.num_layers, 0.0, False, False, False)
        return out, (hidden, cell)

    def flat_weights(self) -> list:
        """The parameters in torch.lstm's order: per layer weight_ih, weight_hh, bias_ih, bias_hh."""
        kinds = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return [getattr(self, f"{kind}_l{layer}") for layer in range(self.num_layers) for kind in kinds]

    def _steps(self, sequence: torch.Tensor, state: tuple, weights: list):
        """torch.lstm's equations one time step at a time, as matrix-vector products: for the frame or two of a
        stream's push. On CPU, torch.lstm lays its weights out anew at each call, a cost that a push of a frame or
        two does not repay (docs/streaming.md measures both). The same sums in another order: outputs within about
        1e-7 of torch.lstm's."""
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


class _LayerStack(nn.Module):
    """What the encoder and decoder share: `self.layers` run in order, offline, streaming or checkpointed."""

    def init_states(self) -> list:
        """Streaming states for `forward(..., states=)`: one per layer, for one stream."""
        return init_layer_states(self.layers)

    def forward(
        self, hidden_states: torch.Tensor, channels_last: bool = False, states: list | None = None, final: bool = False
    ) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled() and states is None:
            return _checkpointed(self.layers, hidden_states)
        return run_layers(self.layers, hidden_states, channels_last, states, final)

    def in_pieces(self, hidden_states: torch.Tensor, piece_length: int, on_piece=None) -> torch.Tensor:
        """`forward` on (B, C, T) in pieces of `piece_length` steps, each layer carrying its streaming state:
        memory is one piece's, and the sums are the same in the same order (the output equals `forward`'s, bit for
        bit, for a causal stack). `on_piece(fraction)` is told of each piece done."""
        states, pieces, total = self.init_states(), [], hidden_states.shape[-1]
        for start in range(0, total, piece_length):
            pieces.append(self(hidden_states[..., start : start + piece_length], states=states))
            if on_piece is not None:
                on_piece(min(1.0, (start + piece_length) / total))
        pieces.append(self(hidden_states[..., :0], states=states, final=True))
        return torch.cat(pieces, dim=-1)


class EncodecEncoder(_LayerStack):
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


class EncodecDecoder(_LayerStack):
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
