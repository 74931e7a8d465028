"""Streaming encode and decode.

Causal models (24 kHz) stream frame by frame; the 48 kHz model, which normalises each 1 s chunk, streams chunk by
chunk:

    encoder = model.stream_encoder(bandwidth=6.0)           decoder = model.stream_decoder()
    codes = encoder.push(samples)  # (B, Q, k), k >= 0       audio = decoder.push(codes)  # (B, C, n) final samples
    codes = encoder.flush()        # the rest                audio = decoder.flush()

The stream objects here hold only state and loops: every layer streams in its own `forward` (pass it the state
that its `init_state` made, and `final=True` with the last piece), so streaming runs exactly the layers offline
inference runs. State lives in the stream objects, so several streams run at once on one model. Every layer keeps
what it needs of the past (a convolution's last kernel - stride inputs, a transposed convolution's last frame, the
LSTM's state); the only delays are the ones offline encoding imposes itself: a causal convolution reflect-pads its
start, so its first output needs `padding + 1` inputs; at the end, `flush` adds the zeros offline encoding adds.

Exactness. Chunk streams of the 48 kHz model compute exactly what offline encode and decode compute (each chunk
alone, overlap-add in the same order): codes identical, audio bit for bit with `fast_decoding=False`. Frame
streams of causal models compute the same sums over shorter windows, which CPU kernels round in another order
(conv1d over a window and an LSTM run in pieces differ from the whole-signal run by about 1e-7): decoded audio
stays within 1e-5 of offline decode, but an encoder stream can flip a code whose two nearest codebook entries are
almost equally near, as EnCodec 0.1.1 itself does between 1 and 2 threads (measured in tests/test_streaming.py).

This module imports nothing from the model's module (the model imports it), so there is no import cycle.
"""

from __future__ import annotations

import torch

from .chunking import OverlapAdd, stream_cut
from .inputs import check_audio, check_code_values

# The start-up delay D of frame streams of the 24 kHz model, in frames (6 x 13.3 ms = 80 ms), for the encoder
# and the decoder alike: the first and last convolutions (kernel 7) reflect-pad 6 inputs at the start, so their
# first output needs 7. After that, latency is one frame. tests/test_streaming.py measures it.
STARTUP_DELAY_FRAMES = 6


class _Stream:
    def __init__(self, model, batch_size: int):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer of at least 1, got {batch_size!r}")
        self.model, self.batch_size, self.closed = model, batch_size, False
        config = model.config
        self.chunked = config.chunk_length is not None
        if not self.chunked and not config.use_causal_conv:
            raise ValueError("frame streaming needs a causal model (the 24 kHz one); this model is not causal")

    def _check_open(self):
        if self.closed:
            raise ValueError("this stream was flushed; start a new one to stream more")

    def _empty_audio(self) -> torch.Tensor:
        return torch.zeros(self.batch_size, self.model.config.audio_channels, 0, device=self.model.device)


class StreamEncoder(_Stream):
    """Encodes audio pushed in pieces of any size; see the module docstring.

    `fast_encoding` (None: the model's default) applies to chunk streams, whose chunks go through
    `model.encode_chunks` exactly as offline `encode` sends them.
    """

    def __init__(self, model, bandwidth: float | None = None, batch_size: int = 1, fast_encoding: bool | None = None):
        super().__init__(model, batch_size)
        config = model.config
        self.bandwidth = config.target_bandwidths[0] if bandwidth is None else config.check_bandwidth(bandwidth)
        self.num_quantizers = config.num_quantizers_for_bandwidth(self.bandwidth)
        self.fast_encoding = model.inference_options(fast_encoding=fast_encoding).fast_encoding
        if self.chunked:
            self.held = None  # samples from the next chunk's start on
        else:
            self.states = model.encoder.init_states()

    def _frames(self, audio: torch.Tensor, final: bool) -> torch.Tensor:
        """Codes (B, Q, k) of the frames this piece completes."""
        embeddings = self.model.encoder(audio, states=self.states, final=final)  # (B, D, k)
        if embeddings.shape[-1] == 0:
            return torch.zeros(self.batch_size, self.num_quantizers, 0, dtype=torch.long, device=audio.device)
        return self.model.quantizer.encode(embeddings, self.num_quantizers).transpose(0, 1)

    def _chunks(self, final: bool) -> list:
        """Encode every chunk whose samples are all in: (codes (B, Q, F), scales (B, 1)) each."""
        config = self.model.config
        out = []
        while self.held is not None:
            cut = stream_cut(self.held.shape[-1], config.chunk_length, config.chunk_stride, final)
            if cut is None:
                break
            take, keep_from = cut
            out.append(self.model.encode_chunks(self.held[..., :take], self.num_quantizers, self.fast_encoding))
            self.held = None if keep_from is None else self.held[..., keep_from:]
        return out

    @torch.inference_mode()
    def push(self, audio: torch.Tensor):
        """Take (batch, channels, n) samples; return the codes now complete.

        Causal models return codes (batch, num_quantizers, k). The 48 kHz model returns a list of
        (codes (batch, num_quantizers, frames), scales (batch, 1)), one per chunk now complete.
        """
        self._check_open()
        check_audio(self.model.config, audio, self.batch_size, what="pushed audio")
        audio = audio.to(self.model.dtype)
        if self.chunked:
            self.held = audio if self.held is None else torch.cat([self.held, audio], dim=-1)
            return self._chunks(final=False)
        return self._frames(audio, final=False)

    @torch.inference_mode()
    def flush(self):
        """The codes of what is left, padded at the end as offline `encode` pads it; closes the stream."""
        self._check_open()
        self.closed = True
        if self.chunked:
            return self._chunks(final=True)
        config, device = self.model.config, self.model.device
        nothing = torch.zeros(self.batch_size, config.audio_channels, 0, dtype=self.model.dtype, device=device)
        return self._frames(nothing, final=True)


class StreamDecoder(_Stream):
    """Decodes codes pushed in pieces; see the module docstring.

    `fast_decoding` (None: the model's default) applies to chunk streams, each chunk decoded by
    `model.decode_chunks` as offline `decode` decodes it.
    """

    def __init__(self, model, batch_size: int = 1, audio_length: int | None = None, fast_decoding: bool | None = None):
        super().__init__(model, batch_size)
        if audio_length is not None and (
            isinstance(audio_length, bool) or not isinstance(audio_length, int) or audio_length < 0
        ):
            raise ValueError(f"audio_length must be a non-negative integer of samples, got {audio_length!r}")
        self.emitted = 0
        self.audio_length = audio_length  # when known, no sample past it is emitted
        self.fast_decoding = model.inference_options(fast_decoding=fast_decoding).fast_decoding
        if self.chunked:
            self.joiner = OverlapAdd(model.config.chunk_stride)
        else:
            self.states = model.decoder.init_states()

    def _check_codes(self, codes: torch.Tensor, scales) -> None:
        config = self.model.config
        if not isinstance(codes, torch.Tensor) or codes.dim() != 3 or codes.is_floating_point():
            got = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
            hint = ""
            if isinstance(codes, list) and self.chunked:
                hint = "; a chunk stream of the encoder gives a list of (codes, scales): push each pair"
            raise ValueError(f"push takes integer codes shaped (batch, num_quantizers, frames), got {got}{hint}")
        if codes.shape[0] != self.batch_size:
            raise ValueError(f"this stream takes a batch of {self.batch_size}, got {codes.shape[0]}")
        check_code_values(config, codes, what="pushed codes")
        if self.chunked and scales is None and config.normalize:
            raise ValueError("this model normalises each chunk: push each chunk's codes with its scales")

    @torch.inference_mode()
    def push(self, codes: torch.Tensor, scales: torch.Tensor | None = None) -> torch.Tensor:
        """Take codes (batch, num_quantizers, k) (the 48 kHz model: one chunk's codes and its scales (batch, 1));
        return the samples (batch, channels, n) that are final."""
        self._check_open()
        self._check_codes(codes, scales)
        if not self.chunked:
            if codes.shape[-1] == 0:
                return self._limit(self._empty_audio())
            embeddings = self.model.quantizer.decode(codes.transpose(0, 1)).to(self.model.dtype)  # (B, D, k)
            return self._limit(self.model.decoder(embeddings, states=self.states).float())
        chunk = self.model.decode_chunks(codes, self.fast_decoding)  # (B, C, frames * hop), as decode makes it
        if scales is not None:
            chunk = chunk * torch.as_tensor(scales, dtype=torch.float32, device=chunk.device).reshape(-1, 1, 1)
        return self._limit(self.joiner.add(chunk))

    def _limit(self, out: torch.Tensor) -> torch.Tensor:
        if self.audio_length is not None:
            out = out[..., : max(0, self.audio_length - self.emitted)]
        self.emitted += out.shape[-1]
        return out

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """The remaining samples; closes the stream. Without `audio_length`, the stream ends on a whole frame."""
        self._check_open()
        self.closed = True
        if not self.chunked:
            config, device = self.model.config, self.model.device
            nothing = torch.zeros(self.batch_size, config.hidden_size, 0, dtype=self.model.dtype, device=device)
            return self._limit(self.model.decoder(nothing, states=self.states, final=True).float())
        if self.joiner.out is None:
            return self._limit(self._empty_audio())
        return self._limit(self.joiner.finish())


__all__ = ["StreamEncoder", "StreamDecoder", "STARTUP_DELAY_FRAMES"]
