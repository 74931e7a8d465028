"""The two ways the .ecdc format codes codes with EnCodec's language model.

- The original's (version-0 files, and version 1 with `deterministic_lm=False`): the language model steps frame by
  frame (`FrameStepper`), each code arithmetic-coded with `quantized_cdf` of its probabilities. Encoder and decoder
  must compute bit for bit the same probabilities, so files decode only on machines that round alike.
- The deterministic mode (version 1): float64 probabilities floored to 2**-16 (`deterministic_cdf`), risky
  positions coded uniformly and listed in the chunk, so the file decodes the same on any machine and in any batch;
  encoding runs the language model over known codes at once (teacher forcing), decoding steps many chunks together.
  A chunk's payload is

    scale (float32, models that normalise) | risky count (varint) | gaps between risky positions (varints)
    | the arithmetic-coded bits, padded to a whole byte

  where a position is t * codebooks + k in coding order, and the gaps are each position minus the previous one minus
  one (the first: the position itself).
"""

from __future__ import annotations

import io

import numpy as np
import torch

from ..language_model import DeterministicRunner
from .coder import ArithmeticEncoder, deterministic_cdf, quantized_cdf, uniform_cdf
from .container import pack_bits, write_varint

LM_DECODE_BATCH = 32  # chunks stepped together when decoding deterministic files (about 2.4 MB of cache each)
LM_ENCODE_ELEMENTS = 1 << 22  # float64 probabilities held at once when encoding (32 MB)
LM_BLOCK_FRAMES = 256  # frames a teacher-forced language-model pass covers
CDF_ELEMENTS = 1 << 18  # probabilities turned into ranges at once (2 MB of float64: large tensors cost page faults)


class FrameStepper:
    """The language model one frame at a time, as the original codes: `cdfs()` gives each codebook's ranges for the
    next frame, `advance(codes)` feeds that frame's codes (K,) in."""

    def __init__(self, language_model, codebooks: int, device):
        self.language_model, self.states, self.offset = language_model, None, 0
        self.previous = torch.zeros(1, codebooks, 1, dtype=torch.long, device=device)  # 0: no previous frame

    def cdfs(self) -> list[list[int]]:
        probabilities, self.states, self.offset = self.language_model(self.previous, self.states, self.offset)
        return [quantized_cdf(probabilities[0, :, k, 0]) for k in range(self.previous.shape[1])]

    def advance(self, codes: torch.Tensor) -> None:
        self.previous = 1 + codes.reshape(1, -1, 1).to(self.previous.device)


def encode_with_lm(language_model, chunk: torch.Tensor) -> bytes:
    """Arithmetic-code one chunk's codes (K, T), stepping the language model frame by frame as the original does
    (its probabilities must be bit for bit the decoder's)."""
    bits: list[int] = []
    coder = ArithmeticEncoder(bits.append)
    stepper = FrameStepper(language_model, chunk.shape[0], chunk.device)
    for t in range(chunk.shape[1]):
        for value, cdf in zip(chunk[:, t].tolist(), stepper.cdfs(), strict=True):
            coder.push(value, cdf)
        stepper.advance(chunk[:, t])
    coder.flush()
    return pack_bits(np.array(bits, dtype=np.int64), 1)


def encode_deterministic(language_model, chunks: list[torch.Tensor]) -> list[bytes]:
    """The deterministic mode's payloads (after the scale) for chunks of codes [(K, T_i)], the language model run
    once over each group's known codes (teacher forcing) rather than frame by frame."""
    codebooks = chunks[0].shape[0]
    card = language_model.linears[0].out_features
    longest = max(chunk.shape[1] for chunk in chunks)
    block = min(longest, LM_BLOCK_FRAMES)
    group = max(1, LM_ENCODE_ELEMENTS // (block * codebooks * card))
    uniform_width = int(uniform_cdf(card)[0])
    payloads = []
    for first in range(0, len(chunks), group):
        members = chunks[first : first + group]
        frames = max(chunk.shape[1] for chunk in members)
        codes = torch.zeros(len(members), codebooks, frames, dtype=torch.long, device=members[0].device)
        for b, chunk in enumerate(members):  # shorter chunks are padded; causal attention never sees the padding
            codes[b, :, : chunk.shape[1]] = chunk
        previous = previous_frames(codes)  # (B, K, T)
        runner = DeterministicRunner(language_model, len(members), block)
        # ranges [start, end) of each code, and riskiness: (B, T, K)
        starts = torch.zeros(len(members), frames, codebooks, dtype=torch.long)
        ends, risky = torch.zeros_like(starts), torch.zeros_like(starts, dtype=torch.bool)
        # the ranges a few frames at a time: (B, T, K, card) float64 tensors stay small and in cache
        step = max(1, CDF_ELEMENTS // (len(members) * codebooks * card))
        for begin in range(0, frames, block):
            probabilities = runner(previous[:, :, begin : begin + block])  # (B, t, K, card)
            for offset in range(0, probabilities.shape[1], step):
                # within this block: a step longer than the block must not reach the next block's frames
                span = slice(begin + offset, begin + min(offset + step, probabilities.shape[1]))
                cdf, risky[:, span] = deterministic_cdf(probabilities[:, offset : offset + step])
                symbols = codes[:, :, span].transpose(1, 2).unsqueeze(-1)  # (B, t, K, 1)
                ends[:, span] = cdf.gather(-1, symbols)[..., 0].long()  # cdf[symbol]
                starts[:, span] = torch.where(
                    symbols[..., 0] > 0, cdf.gather(-1, (symbols - 1).clamp(min=0))[..., 0].long(), 0
                )
        for b, chunk in enumerate(members):
            length = chunk.shape[1]
            flat_risky = risky[b, :length].reshape(-1)  # t-major, as coded
            symbols = chunk.transpose(0, 1).reshape(-1).cpu()
            flat_start = torch.where(flat_risky, symbols * uniform_width, starts[b, :length].reshape(-1)).tolist()
            flat_end = torch.where(flat_risky, (symbols + 1) * uniform_width, ends[b, :length].reshape(-1)).tolist()
            payload = io.BytesIO()
            positions = torch.nonzero(flat_risky)[:, 0].tolist()
            write_varint(payload, len(positions))
            previous_position = -1
            for position in positions:
                write_varint(payload, position - previous_position - 1)
                previous_position = position
            bits: list[int] = []
            coder = ArithmeticEncoder(bits.append)
            for start, end in zip(flat_start, flat_end, strict=True):
                coder.push_range(start, end)
            coder.flush()
            payload.write(pack_bits(np.array(bits, dtype=np.int64), 1))
            payloads.append(payload.getvalue())
    return payloads


def previous_frames(codes: torch.Tensor) -> torch.Tensor:
    """The language model's input for each frame: the previous frame's codes + 1, and 0 before the first.

    Example: codes [[4, 7, 1]] -> [[0, 5, 8]].
    """
    return torch.nn.functional.pad(codes[..., :-1] + 1, (1, 0))


def decode_deterministic(language_model, chunks: list, codebooks: int) -> list[torch.Tensor]:
    """Codes (K, T_i) of chunks [(arithmetic decoder, risky positions, frames T_i)] coded in the deterministic
    mode: the language model steps all of them together, one frame at a time."""
    device = next(language_model.parameters()).device
    card = language_model.linears[0].out_features
    uniform = uniform_cdf(card).numpy()
    frames = max(length for _, _, length in chunks)
    # Grown as frames decode (doubling), never allocated for the frames a header claims: a lying file runs out of
    # bits (EOFError) first.
    codes = np.zeros((len(chunks), codebooks, min(frames, 1024)), dtype=np.int64)
    runner = DeterministicRunner(language_model, len(chunks))
    previous = torch.zeros(len(chunks), codebooks, 1, dtype=torch.long, device=device)  # 0: no previous frame
    for t in range(frames):
        if t == codes.shape[-1]:
            codes = np.concatenate([codes, np.zeros_like(codes)], axis=-1)[..., :frames]
        cdf = deterministic_cdf(runner(previous), with_risk=False)[:, 0].cpu().numpy()  # (B, K, card)
        for b, (decoder, risky, length) in enumerate(chunks):
            if t < length:  # a shorter chunk's stream has ended: the rest of its row is never read
                for k in range(codebooks):
                    codes[b, k, t] = decoder.pull(uniform if t * codebooks + k in risky else cdf[b, k])
        previous = torch.from_numpy(codes[:, :, t : t + 1] + 1).to(device)
    return [torch.from_numpy(codes[b, :, :length]) for b, (_, _, length) in enumerate(chunks)]


__all__ = ["FrameStepper", "encode_with_lm", "encode_deterministic", "decode_deterministic", "previous_frames"]
