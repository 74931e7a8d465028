"""Streaming encode and decode.

Causal models (24 kHz) stream frame by frame; the 48 kHz model, which normalises each 1 s chunk, streams chunk by
chunk:

    encoder = model.stream_encoder(bandwidth=6.0)           decoder = model.stream_decoder()
    codes = encoder.push(samples)  # (B, Q, k), k >= 0       audio = decoder.push(codes)  # (B, C, n) final samples
    codes = encoder.flush()        # the rest                audio = decoder.flush()

State lives in the stream objects, so several streams run at once. Every layer keeps what it needs of the past
(a convolution's last kernel - stride inputs, a transposed convolution's last frame, the LSTM's state); the only
delays are the ones offline encoding imposes itself: a causal convolution reflect-pads its start, so its first
output needs `padding + 1` inputs; at the end, `flush` adds the zeros offline encoding adds.

Exactness. Chunk streams of the 48 kHz model compute exactly what offline encode and decode compute (each chunk
alone, overlap-add in the same order): codes identical, audio bit for bit. Frame streams of causal models compute
the same sums over shorter windows, which CPU kernels round in another order (conv1d over a window and an LSTM
run in pieces differ from the whole-signal run by about 1e-7): decoded audio stays within 1e-5 of offline
decode, but an encoder stream can flip a code whose two nearest codebook entries are almost equally near, as
EnCodec 0.1.1 itself does between 1 and 2 threads.
"""

from __future__ import annotations

import torch
from torch import nn

from .modeling_encodec import (
    EncodecConv1d,
    EncodecConvTranspose1d,
    EncodecLSTM,
    EncodecResnetBlock,
    _pad1d,
    conv_extra_padding,
    overlap_add_weights,
)

# The start-up delay D of frame streams of the 24 kHz model, in frames (6 x 13.3 ms = 80 ms), for the encoder
# and the decoder alike: the first and last convolutions (kernel 7) reflect-pad 6 inputs at the start, so their
# first output needs 7. After that, latency is one frame. tests/test_streaming.py measures it.
STARTUP_DELAY_FRAMES = 6


def _empty(like: torch.Tensor, channels: int) -> torch.Tensor:
    return like.new_zeros((like.shape[0], channels, 0))


class _ConvState:
    """A causal EncodecConv1d over a stream: reflect padding at the start, EnCodec's extra zeros at the end."""

    def __init__(self, layer: EncodecConv1d):
        self.layer = layer
        self.buffer = None  # inputs not yet consumed, starting at the next output's first input (padded domain)
        self.raw = []  # inputs held before the start could be padded
        self.total = 0  # inputs received
        self.started = False
        self.tail = None  # the last kernel_size inputs: the end is padded by reflecting them

    def _conv(self, x: torch.Tensor) -> torch.Tensor:
        layer = self.layer
        return layer.conv(x) if not hasattr(layer, "norm") else layer.norm(layer.conv(x))

    def _emit(self) -> torch.Tensor:
        layer = self.layer
        k, s = layer.kernel_size, layer.stride
        dilation = layer.conv.dilation[0]
        span = (k - 1) * dilation + 1
        available = self.buffer.shape[-1]
        if available < span:
            return _empty(self.buffer, layer.conv.out_channels)
        count = (available - span) // s + 1
        used = (count - 1) * s + span
        out = self._conv(self.buffer[..., :used])
        self.buffer = self.buffer[..., count * s :]
        return out

    def push(self, x: torch.Tensor) -> torch.Tensor:
        self.total += x.shape[-1]
        recent = x if self.tail is None else torch.cat([self.tail, x], dim=-1)
        self.tail = recent[..., -self.layer.kernel_size :]
        if not self.started:
            self.raw.append(x)
            held = torch.cat(self.raw, dim=-1)
            if held.shape[-1] <= self.layer.padding_total:  # the reflection needs padding + 1 samples
                return _empty(x, self.layer.conv.out_channels)
            self.raw, self.started = [], True
            self.buffer = _pad1d(held, self.layer.padding_total, 0, self.layer.pad_mode)
        else:
            self.buffer = torch.cat([self.buffer, x], dim=-1)
        return self._emit()

    def flush(self) -> torch.Tensor:
        layer = self.layer
        if not self.started:  # never more than `padding` inputs: compute it as offline encoding does
            if not self.raw:
                return None
            return layer(torch.cat(self.raw, dim=-1))
        extra = conv_extra_padding(self.total, layer.kernel_size, layer.stride, layer.padding_total)
        if extra:
            # Offline encoding pads the end with the convolution's pad mode too (reflect for EnCodec): the last
            # samples mirrored, x[-2], x[-3], ... (extra < stride <= kernel, so the tail holds them).
            if layer.pad_mode == "reflect":
                end = torch.flip(self.tail[..., -(extra + 1) : -1], dims=[-1])
            else:
                end = _pad1d(self.tail, 0, extra, layer.pad_mode)[..., -extra:]
            self.buffer = torch.cat([self.buffer, end], dim=-1)
        return self._emit()


class _ConvTransposeState:
    """A causal EncodecConvTranspose1d over a stream: frame t's output is final once frame t has arrived."""

    def __init__(self, layer: EncodecConvTranspose1d):
        self.layer = layer
        self.previous = None  # the last input frame, whose kernel overlaps the next frame's
        stride = layer.conv.stride[0]
        kernel = layer.conv.kernel_size[0]
        if kernel != 2 * stride:
            raise ValueError("streaming supports EnCodec's transposed convolutions (kernel = 2 x stride) only")
        if layer.padding_left:
            raise ValueError("streaming supports causal models with trim_right_ratio = 1 only (EnCodec's)")
        self.stride = stride

    def push(self, x: torch.Tensor) -> torch.Tensor:
        layer, s = self.layer, self.stride
        if x.shape[-1] == 0:
            return _empty(x, layer.conv.out_channels)
        frames = x if self.previous is None else torch.cat([self.previous, x], dim=-1)
        y = layer.conv(frames)
        if hasattr(layer, "norm"):
            y = layer.norm(y)
        # (frames + 1) * s outputs; those of the new frames are final, the last s await the next frame
        start = 0 if self.previous is None else s
        out = y[..., start : start + x.shape[-1] * s]
        self.previous = x[..., -1:]
        return out

    def flush(self) -> torch.Tensor:
        # Offline output ends where the last frame's own tail starts (all the trimming is on the right with
        # trim_right_ratio = 1), and every sample before it was final when its frame arrived: nothing is left.
        return None


class _LSTMState:
    def __init__(self, layer: EncodecLSTM):
        self.layer, self.state = layer, None

    def push(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 0:
            return x
        sequence = x.permute(2, 0, 1)  # (B, C, T) -> (T, B, C)
        out, self.state = self.layer.lstm(sequence, self.state)
        return (out + sequence).permute(1, 2, 0)

    def flush(self):
        return None


class _ElementwiseState:
    def __init__(self, layer: nn.Module):
        self.layer = layer

    def push(self, x):
        return self.layer(x)

    def flush(self):
        return None


class _Pipeline:
    """A sequence of streaming layers; `flush` pushes each layer's tail through the layers after it."""

    def __init__(self, layers):
        self.states = [_state(layer) for layer in layers]

    def push(self, x: torch.Tensor) -> torch.Tensor | None:
        for state in self.states:
            if x is None:
                return None
            x = state.push(x)
        return x

    def flush(self) -> torch.Tensor | None:
        x = None
        for state in self.states:
            pushed = state.push(x) if x is not None and x.shape[-1] else None
            parts = [p for p in (pushed, state.flush()) if p is not None and p.shape[-1]]
            x = torch.cat(parts, dim=-1) if parts else None
        return x


def _frame_pipeline(config, layers) -> _Pipeline:
    """The frame-by-frame pipeline over `layers`, for causal models only."""
    if not config.use_causal_conv:
        raise ValueError("frame streaming needs a causal model (the 24 kHz one); this model is not causal")
    return _Pipeline(layers)


class _ResnetState:
    """Both branches of a residual block stream at their own pace; their sum is emitted as far as both reach."""

    def __init__(self, layer: EncodecResnetBlock):
        self.block = _Pipeline(layer.block)
        self.shortcut = _Pipeline([layer.shortcut])
        self.pending = [None, None]

    def _combine(self, a, b):
        for index, part in enumerate((a, b)):
            if part is not None:
                previous = self.pending[index]
                self.pending[index] = part if previous is None else torch.cat([previous, part], dim=-1)
        if self.pending[0] is None or self.pending[1] is None:
            return None
        ready = min(self.pending[0].shape[-1], self.pending[1].shape[-1])
        out = self.pending[1][..., :ready] + self.pending[0][..., :ready]
        self.pending = [p[..., ready:] for p in self.pending]
        return out

    def push(self, x):
        return self._combine(self.block.push(x), self.shortcut.push(x))

    def flush(self):
        return self._combine(self.block.flush(), self.shortcut.flush())


def _state(layer: nn.Module):
    if isinstance(layer, EncodecConv1d):
        return _ConvState(layer)
    if isinstance(layer, EncodecConvTranspose1d):
        return _ConvTransposeState(layer)
    if isinstance(layer, EncodecLSTM):
        return _LSTMState(layer)
    if isinstance(layer, EncodecResnetBlock):
        return _ResnetState(layer)
    return _ElementwiseState(layer)  # ELU, Identity


class _Stream:
    def __init__(self, model, batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.batch_size, self.closed = model, batch_size, False

    def _check_open(self):
        if self.closed:
            raise ValueError("this stream was flushed; start a new one to stream more")


class StreamEncoder(_Stream):
    """Encodes audio pushed in pieces of any size; see the module docstring."""

    def __init__(self, model, bandwidth: float | None = None, batch_size: int = 1):
        super().__init__(model, batch_size)
        config = model.config
        self.bandwidth = config.target_bandwidths[0] if bandwidth is None else config.check_bandwidth(bandwidth)
        self.num_quantizers = config.num_quantizers_for_bandwidth(self.bandwidth)
        self.chunked = config.chunk_length is not None
        if self.chunked:
            self.held = None  # samples from the next chunk's start on
            self.offset = 0  # absolute position of held[0]
            self.total = 0
        else:
            self.pipeline = _frame_pipeline(config, model.encoder.layers)

    def _check(self, audio: torch.Tensor) -> None:
        if not isinstance(audio, torch.Tensor) or audio.dim() != 3:
            raise ValueError(f"push takes audio shaped (batch, channels, samples), got "
                             f"{tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__}")
        if audio.shape[0] != self.batch_size or audio.shape[1] != self.model.config.audio_channels:
            raise ValueError(f"this stream takes ({self.batch_size}, {self.model.config.audio_channels}, samples) "
                             f"audio, got {tuple(audio.shape)}")
        if not torch.isfinite(audio).all():
            raise ValueError("audio holds NaN or Inf samples")

    def _quantize(self, embeddings: torch.Tensor) -> torch.Tensor:
        if embeddings is None or embeddings.shape[-1] == 0:
            return torch.zeros(self.batch_size, self.num_quantizers, 0, dtype=torch.long)
        return self.model.quantizer.encode(embeddings, self.num_quantizers).transpose(0, 1)

    def _chunks(self, final: bool):
        """Encode every chunk whose samples are all in: (codes (B, Q, F), scales (B, 1)) each."""
        config = self.model.config
        out = []
        while self.held is not None:
            size = self.held.shape[-1]
            if size >= config.chunk_length or (final and size > 0):
                take = min(size, config.chunk_length)
                codes, scale = self.model._encode_frame(self.held[..., :take], self.num_quantizers)
                out.append((codes, scale))
                if final and size <= config.chunk_stride:
                    self.held = None
                    break
                self.held = self.held[..., config.chunk_stride :]
                self.offset += config.chunk_stride
            else:
                break
        return out

    @torch.inference_mode()
    def push(self, audio: torch.Tensor):
        """Take (batch, channels, n) samples; return the codes now complete.

        Causal models return codes (batch, num_quantizers, k). The 48 kHz model returns a list of
        (codes (batch, num_quantizers, frames), scales (batch, 1)), one per chunk now complete.
        """
        self._check_open()
        self._check(audio)
        audio = audio.to(self.model.dtype)
        if self.chunked:
            self.total += audio.shape[-1]
            self.held = audio if self.held is None else torch.cat([self.held, audio], dim=-1)
            return self._chunks(final=False)
        with torch.nn.utils.parametrize.cached():
            return self._quantize(self.pipeline.push(audio))

    @torch.inference_mode()
    def flush(self):
        """The codes of what is left, padded at the end as offline `encode` pads it; closes the stream."""
        self._check_open()
        self.closed = True
        if self.chunked:
            return self._chunks(final=True)
        with torch.nn.utils.parametrize.cached():
            return self._quantize(self.pipeline.flush())


class StreamDecoder(_Stream):
    """Decodes codes pushed in pieces; see the module docstring."""

    def __init__(self, model, batch_size: int = 1, audio_length: int | None = None):
        super().__init__(model, batch_size)
        config = model.config
        self.chunked = config.chunk_length is not None
        self.emitted = 0
        self.audio_length = audio_length  # when known, no sample past it is emitted
        if self.chunked:
            self.weight = None
            self.out = None  # overlap-add sums from self.offset on
            self.sum_weight = None
            self.offset = 0
            self.index = 0
        else:
            self.pipeline = _frame_pipeline(config, model.decoder.layers)

    def _check_codes(self, codes: torch.Tensor) -> None:
        config = self.model.config
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.is_floating_point():
            raise ValueError("push takes integer codes shaped (batch, num_quantizers, frames)")
        if codes.shape[0] != self.batch_size:
            raise ValueError(f"this stream takes a batch of {self.batch_size}, got {codes.shape[0]}")
        if not 1 <= codes.shape[1] <= config.num_quantizers:
            raise ValueError(f"codes have {codes.shape[1]} codebooks; this model has 1 to {config.num_quantizers}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= config.codebook_size):
            raise ValueError(f"codes must lie in [0, {config.codebook_size})")

    @torch.inference_mode()
    def push(self, codes: torch.Tensor, scales: torch.Tensor | None = None) -> torch.Tensor:
        """Take codes (batch, num_quantizers, k) (the 48 kHz model: one chunk's codes and its scales (batch, 1));
        return the samples (batch, channels, n) that are final."""
        self._check_open()
        self._check_codes(codes)
        return self._limit(self._decode(codes, scales))

    def _limit(self, out: torch.Tensor) -> torch.Tensor:
        if self.audio_length is not None:
            out = out[..., : max(0, self.audio_length - self.emitted)]
        self.emitted += out.shape[-1]
        return out

    def _decode(self, codes, scales):
        with torch.nn.utils.parametrize.cached():
            if not self.chunked:
                if codes.shape[-1] == 0:
                    return torch.zeros(self.batch_size, self.model.config.audio_channels, 0)
                embeddings = self.model.quantizer.decode(codes.transpose(0, 1)).to(self.model.dtype)
                out = self.pipeline.push(embeddings)
                return out.float() if out is not None else torch.zeros(self.batch_size, self.model.config.audio_channels, 0)
            if scales is None and self.model.config.normalize:
                raise ValueError("this model normalises each chunk: push each chunk's codes with its scales")
            chunk = self.model._decode_frame(codes)  # (B, C, frames * hop), as decode computes each chunk
            if scales is not None:
                chunk = chunk * torch.as_tensor(scales, dtype=torch.float32).reshape(-1, 1, 1)
            return self._overlap_add(chunk)

    def _overlap_add(self, chunk: torch.Tensor) -> torch.Tensor:
        """Add one chunk as linear_overlap_add does, and return the samples no later chunk will touch."""
        stride = self.model.config.chunk_stride
        if self.weight is None:  # the original weighs every chunk with the first chunk's triangle
            self.weight = overlap_add_weights(chunk.shape[-1], torch.float32, chunk.device)
        start = self.index * stride - self.offset  # this chunk's start within the buffers
        end = start + chunk.shape[-1]
        if self.out is None:
            self.out = chunk.new_zeros(chunk.shape[0], chunk.shape[1], 0)
            self.sum_weight = chunk.new_zeros(0)
        if end > self.out.shape[-1]:
            grow = end - self.out.shape[-1]
            self.out = nn.functional.pad(self.out, (0, grow))
            self.sum_weight = nn.functional.pad(self.sum_weight, (0, grow))
        length = chunk.shape[-1]
        self.out[..., start:end] += self.weight[:length] * chunk
        self.sum_weight[start:end] += self.weight[:length]
        self.index += 1
        ready = self.index * stride - self.offset  # the next chunk starts there
        return self._release(min(ready, self.out.shape[-1]))

    def _release(self, count: int) -> torch.Tensor:
        out = self.out[..., :count] / self.sum_weight[:count]
        self.out, self.sum_weight = self.out[..., count:], self.sum_weight[count:]
        self.offset += count
        return out

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """The remaining samples; closes the stream. Without `audio_length`, the stream ends on a whole frame."""
        self._check_open()
        self.closed = True
        channels = self.model.config.audio_channels
        if not self.chunked:
            with torch.nn.utils.parametrize.cached():
                tail = self.pipeline.flush()
            out = tail.float() if tail is not None else torch.zeros(self.batch_size, channels, 0)
        elif self.out is not None:
            out = self._release(self.out.shape[-1])
        else:
            out = torch.zeros(self.batch_size, channels, 0)
        return self._limit(out)


__all__ = ["StreamEncoder", "StreamDecoder", "STARTUP_DELAY_FRAMES"]
