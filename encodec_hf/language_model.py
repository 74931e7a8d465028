"""EnCodec's entropy-coding language model and arithmetic coder, as EnCodec 0.1.1 defines them.

The model predicts, for every codebook at once, the distribution of the next frame's code from the codes before
it: a 5-layer Transformer (dimension 200, 8 heads, feed-forward 800, GELU) over the sum of one embedding per
codebook, attending to at most `past_context` (3.5 s) frames back, with one output head per codebook. Arithmetic
coding with those distributions cuts the bit rate by 25-40 %.

The coder turns probabilities into integer ranges (`quantized_cdf`), so encoder and decoder must compute bit for
bit the same probabilities: this module keeps the original's operations and their order (a streaming step per
frame through `nn.TransformerEncoderLayer`), and its parameter names, so that its files and the original's decode
on either side. The arithmetic coder is integer arithmetic over a 24-bit range, as in the original.

Version-1 files use a deterministic mode instead (`DeterministicRunner`, `deterministic_cdf`): float64
probabilities, floored coarsely, so that batching, teacher forcing, threads or another machine no longer change
the bytes; see the comment above `PRECISION`.
"""

from __future__ import annotations

import bisect
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

WEIGHTS_NAME = "language_model.safetensors"
CONFIG_NAME = "language_model_config.json"
TOTAL_RANGE_BITS = 24


def sin_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000) -> torch.Tensor:
    """Cosine and sine position features, (1, T, dim) for positions (1, T, 1), as the original builds them."""
    half = dim // 2
    scale = torch.arange(half, device=positions.device).view(1, 1, -1)
    if positions.dtype == torch.float64:  # the deterministic mode: float64 throughout
        scale = scale.to(torch.float64)
    phase = positions / (max_period ** (scale / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class StreamingTransformerLayer(nn.TransformerEncoderLayer):
    """A post-norm Transformer layer whose attention also sees the previous steps' inputs (`past`), at most
    `past_context` positions back."""

    def forward(self, x: torch.Tensor, past: torch.Tensor, past_context: int):  # type: ignore[override]
        attended = x
        x = self.norm1(x + self._attention(x, past, past_context))
        x = self.norm2(x + self._ff_block(x))
        return x, attended

    def _attention(self, x: torch.Tensor, past: torch.Tensor, past_context: int) -> torch.Tensor:
        steps, history = x.shape[1], past.shape[1]
        keys = torch.cat([past, x], dim=1)  # (B, H + T, C)
        query_positions = torch.arange(history, steps + history, device=x.device).view(-1, 1)
        key_positions = torch.arange(steps + history, device=x.device).view(1, -1)
        delta = query_positions - key_positions
        allowed = (delta >= 0) & (delta <= past_context)
        return self.dropout1(self.self_attn(x, keys, keys, attn_mask=~allowed, need_weights=False)[0])


class StreamingTransformer(nn.Module):
    def __init__(self, dim: int, hidden_scale: float, num_heads: int, num_layers: int, past_context: int,
                 max_period: float = 10000):
        super().__init__()
        self.past_context, self.max_period = past_context, max_period
        self.norm_in = nn.LayerNorm(dim)
        self.layers = nn.ModuleList([
            StreamingTransformerLayer(dim, num_heads, int(dim * hidden_scale), activation=F.gelu, batch_first=True,
                                      dropout=0.0)
            for _ in range(num_layers)])

    def forward(self, x: torch.Tensor, states: list | None, offset: int):
        batch, steps, channels = x.shape
        if states is None:  # the original starts every layer's past with one zero step
            states = [torch.zeros_like(x[:, :1]) for _ in range(1 + len(self.layers))]
        positions = torch.arange(steps, device=x.device).view(1, -1, 1) + offset
        x = self.norm_in(x) + sin_embedding(positions, channels, self.max_period)
        new_states = []
        # the original keeps one state more than it has layers (the last is never read): zip stops at the layers
        for state, layer in zip(states, self.layers, strict=False):
            x, attended = layer(x, state, self.past_context)
            new_states.append(torch.cat([state, attended], dim=1)[:, -self.past_context :, :])
        return x, new_states, offset + steps


class EncodecLanguageModel(nn.Module):
    """Distributions of each frame's codes given the frames before it.

    Args:
        num_codebooks: codebooks the model predicts (the compression model's, e.g. 32 at 24 kHz).
        codebook_size: entries per codebook (1024).
        past_context: frames the attention looks back (int(3.5 x frame rate)).
    """

    def __init__(self, num_codebooks: int, codebook_size: int, past_context: int, dim: int = 200,
                 num_layers: int = 5, num_heads: int = 8, hidden_scale: float = 4.0):
        super().__init__()
        self.config = dict(num_codebooks=num_codebooks, codebook_size=codebook_size, past_context=past_context,
                           dim=dim, num_layers=num_layers, num_heads=num_heads, hidden_scale=hidden_scale)
        self.transformer = StreamingTransformer(dim, hidden_scale, num_heads, num_layers, past_context)
        # index 0 of each embedding means "no previous frame" (the first step); code c is index c + 1
        self.emb = nn.ModuleList([nn.Embedding(codebook_size + 1, dim) for _ in range(num_codebooks)])
        self.linears = nn.ModuleList([nn.Linear(dim, codebook_size) for _ in range(num_codebooks)])

    @classmethod
    def for_model(cls, model_config) -> "EncodecLanguageModel":
        """The original's architecture for an EnCodec configuration."""
        return cls(model_config.num_quantizers, model_config.codebook_size, int(3.5 * model_config.frame_rate))

    def forward(self, indices: torch.Tensor, states=None, offset: int = 0):
        """indices (B, K, T), previous codes + 1 (0 at the start) -> probabilities (B, card, K, T), states, offset."""
        x = sum(self.emb[k](indices[:, k]) for k in range(indices.shape[1]))
        out, states, offset = self.transformer(x, states, offset)
        logits = torch.stack([self.linears[k](out) for k in range(indices.shape[1])], dim=1).permute(0, 3, 1, 2)
        return torch.softmax(logits, dim=1), states, offset

    def save(self, folder: str | Path) -> None:
        from safetensors.torch import save_file

        folder = Path(folder)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, folder / WEIGHTS_NAME,
                  metadata={"format": "pt"})
        (folder / CONFIG_NAME).write_text(json.dumps(self.config, indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> "EncodecLanguageModel":
        from safetensors.torch import load_file

        folder = Path(folder)
        model = cls(**json.loads((folder / CONFIG_NAME).read_text()))
        model.load_state_dict(load_file(folder / WEIGHTS_NAME), strict=True)
        return model.eval()


# -- arithmetic coding -----------------------------------------------------------------------------------------------


def quantized_cdf(pdf: torch.Tensor, total_range_bits: int = TOTAL_RANGE_BITS, roundoff: float = 1e-8,
                  min_range: int = 2) -> list[int]:
    """Integer cumulative ranges for `pdf` over [0, 2**total_range_bits), each symbol at least `min_range` wide.

    As the original: the pdf is floored to multiples of `roundoff`, mixed with a uniform distribution so that no
    symbol's range falls under `min_range`, then floored to integers.
    """
    pdf = (pdf.detach() / roundoff).floor() * roundoff
    total = 2**total_range_bits
    alpha = min_range * len(pdf) / total
    ranges = (((1 - alpha) * total) * pdf).floor().long() + min_range
    return torch.cumsum(ranges, dim=-1).tolist()


class _Range:
    """The current range [low, high] of an arithmetic coder, held to `max_bit + 1` bits."""

    low = high = 0
    max_bit = -1

    def _drop_common_prefix(self):
        """Yield (bit, position) for each leading bit low and high share, removing it: the range only narrows,
        so those bits are settled."""
        while self.max_bit >= 0:
            top = self.low >> self.max_bit
            if top != self.high >> self.max_bit:
                break
            self.low -= top << self.max_bit
            self.high -= top << self.max_bit
            self.max_bit -= 1
            yield top, self.max_bit + 1


class ArithmeticEncoder(_Range):
    """Integer arithmetic coder over a `total_range_bits` range; bits go out through `write_bit`."""

    def __init__(self, write_bit, total_range_bits: int = TOTAL_RANGE_BITS):
        self.write_bit, self.bits = write_bit, total_range_bits

    def _flush_common_prefix(self):
        for bit, _ in self._drop_common_prefix():
            self.write_bit(bit)

    def push(self, symbol: int, cdf: list[int]) -> None:
        self.push_range(0 if symbol == 0 else cdf[symbol - 1], cdf[symbol])

    def push_range(self, start: int, end: int) -> None:
        """Code the symbol whose cumulative range is [start, end) (cdf[symbol - 1], cdf[symbol])."""
        while self.high - self.low + 1 < 2**self.bits:
            self.low, self.high, self.max_bit = self.low * 2, self.high * 2 + 1, self.max_bit + 1
        range_low, range_high = start, end - 1
        scale = (self.high - self.low + 1) / (2**self.bits)  # a float, as in the original
        self.low, self.high = self.low + int(math.ceil(range_low * scale)), self.low + int(math.floor(range_high * scale))
        if self.low > self.high:
            raise ValueError("arithmetic coding ran out of range (the distribution gave a symbol no room)")
        self._flush_common_prefix()

    def flush(self) -> None:
        while self.max_bit >= 0:
            self.write_bit((self.low >> self.max_bit) & 1)
            self.max_bit -= 1


class ArithmeticDecoder(_Range):
    """The inverse of `ArithmeticEncoder`; bits come in through `read_bit` (None at the end of the stream)."""

    def __init__(self, read_bit, total_range_bits: int = TOTAL_RANGE_BITS):
        self.read_bit, self.bits = read_bit, total_range_bits
        self.current = 0

    def _bounds(self, cdf, symbol: int, scale: float) -> tuple[int, int]:
        low = self.low + int(math.ceil((int(cdf[symbol - 1]) if symbol > 0 else 0) * scale))
        return low, self.low + int(math.floor((int(cdf[symbol]) - 1) * scale))

    def _holds(self, cdf, symbol: int, scale: float) -> bool:
        low, high = self._bounds(cdf, symbol, scale)
        return low <= self.current <= high

    def pull(self, cdf) -> int:
        """The next symbol, given the cumulative ranges `cdf` (a list or a 1-d integer array)."""
        while self.high - self.low + 1 < 2**self.bits:
            bit = self.read_bit()
            if bit is None:
                raise EOFError("the arithmetic-coded stream ended sooner than its metadata says")
            self.low, self.high = self.low * 2, self.high * 2 + 1
            self.current, self.max_bit = self.current * 2 + bit, self.max_bit + 1
        scale = (self.high - self.low + 1) / (2**self.bits)
        # The symbol whose range [low + ceil(cdf[s - 1] * scale), low + floor((cdf[s] - 1) * scale)] holds
        # `current`: the ranges are disjoint and increasing, so at most one does. A search of the cdf for
        # (current - low) / scale lands on it or next to it; the exact integer test decides, and a binary search
        # (the original's) covers anything else.
        target = (self.current - self.low) / scale
        guess = int(np.searchsorted(cdf, target, side="right")) if isinstance(cdf, np.ndarray) else \
            bisect.bisect_right(cdf, target)
        for middle in (guess, guess - 1, guess + 1):
            if 0 <= middle < len(cdf) and self._holds(cdf, middle, scale):
                break
        else:
            first, last = 0, len(cdf) - 1
            while first <= last:
                middle = (first + last) // 2
                low, high = self._bounds(cdf, middle, scale)
                if self.current < low:
                    last = middle - 1
                elif self.current > high:
                    first = middle + 1
                else:
                    break
            else:
                raise ValueError("corrupted arithmetic-coded stream: no symbol matches it")
        self.low, self.high = self._bounds(cdf, middle, scale)
        for bit, position in self._drop_common_prefix():
            self.current -= bit << position
        return middle


# -- deterministic mode ----------------------------------------------------------------------------------------------
# The original's probabilities are float32 results of whatever kernels the machine has: another CPU, thread count
# or batch size rounds them differently, and the arithmetic coder turns the smallest difference into other bytes.
# The deterministic mode (version-1 files) makes the coded ranges a function of the codes alone, up to an error far
# below what float64 arithmetic can produce:
#   1. the language model runs in float64, so two machines or two batch shapes differ by ~1e-15 in a probability;
#   2. each probability p is floored to a multiple of 2**-PRECISION, and the ranges are the original's formula
#      (`quantized_cdf` with roundoff 2**-PRECISION) computed in integers, exactly;
#   3. a distribution with any p * 2**PRECISION within GUARD of a whole number (a floor that a tiny error could
#      flip) is "risky": the encoder lists its position in the file and both sides code that symbol with the
#      uniform distribution instead. About 3 codes in 10,000 are risky (random weights), costing ~3 bits more each.
# Then the decoder's floors match the encoder's whenever the two float64 computations differ by less than
# GUARD * 2**-PRECISION = 9e-13 in a probability, some 20,000 times the differences measured here (4e-17 between
# teacher forcing and stepping, batched and alone, 1 and 2 threads).

PRECISION = 16
GUARD = 2.0**-24


def deterministic_cdf(probabilities: torch.Tensor, with_risk: bool = True):
    """Integer cumulative ranges and riskiness for float64 probabilities (..., card).

    Returns (cdf (..., card), whole numbers over [0, 2**TOTAL_RANGE_BITS] held exactly in float64, and risky
    (...) bool), or the cdf alone with `with_risk=False` (the decoder reads the risky positions from the file).
    `probabilities` is overwritten (these tensors are large when encoding and made per step when decoding).

    Each p is floored to n = floor(p * 2**16); the range is floor(n * (2**24 - 2 * card) / 2**16) + 2, the
    original's formula (`quantized_cdf` with roundoff 2**-16 and alpha = 2 * card / 2**24). Every step is exact
    in float64: n < 2**17, n * (2**24 - 2 * card) < 2**41, and the sums stay under 2**25.

    Example, card 2, p = (0.3, 0.7): p * 2**16 = (19660.8, 45875.2), n = (19660, 45875), fractions .8 and .2 (not
    risky); ranges = 19660 * (2**24 - 4) // 2**16 + 2 = 5032960 and 45875 * (2**24 - 4) // 2**16 + 2 = 11743999;
    cdf = (5032960, 16776959). p = (0.25, 0.75) is risky: 16384.0 sits on a whole number, where an error of 1e-15
    below would floor to 16383.
    """
    if probabilities.dtype != torch.float64:
        raise ValueError(f"deterministic ranges need float64 probabilities, got {probabilities.dtype}")
    card = probabilities.shape[-1]
    scaled = probabilities.mul_(2.0**PRECISION)  # exact: a power of two
    floors = torch.floor(scaled)
    if with_risk:
        fraction = scaled.sub_(floors)
        risky = (((fraction < GUARD) & (floors >= 1)) | (fraction > 1 - GUARD)).any(dim=-1)
    ranges = floors.mul_((2**TOTAL_RANGE_BITS - 2 * card) / 2**PRECISION).floor_().add_(2)
    cdf = torch.cumsum(ranges, dim=-1)
    return (cdf, risky) if with_risk else cdf


def uniform_cdf(card: int) -> torch.Tensor:
    """The ranges of the uniform distribution, for risky positions: each symbol 2**24 // card wide."""
    return torch.arange(1, card + 1, dtype=torch.long) * (2**TOTAL_RANGE_BITS // card)


class DeterministicRunner:
    """The language model in float64 over a batch of independent streams, a block of frames per call, with the
    attention's keys and values cached: blocks of T frames when all codes are known (encoding), one frame at a
    time when each frame's codes come from the previous step (decoding). Both give the same probabilities up to
    float64 rounding, whatever the block size or batch, which `deterministic_cdf` makes exact.

    Indexing: the original starts each layer's past with one zero step, so the sequence a layer attends over is
    S = (zero step, frame 0, frame 1, ...); the query of frame t (S index t + 1) sees S indices
    t + 1 - past_context .. t + 1.
    """

    def __init__(self, language_model: EncodecLanguageModel, batch: int, max_block: int = 1):
        transformer = language_model.transformer
        device = next(language_model.parameters()).device
        self.weights = {name: value.detach().to(torch.float64)
                        for name, value in language_model.state_dict().items()}
        codebooks = len(language_model.emb)
        self.card = language_model.linears[0].out_features
        self.num_layers = len(transformer.layers)
        self.num_heads = transformer.layers[0].self_attn.num_heads
        self.dim = transformer.norm_in.normalized_shape[0]
        self.eps = transformer.norm_in.eps
        self.past_context, self.max_period = transformer.past_context, transformer.max_period
        # all output heads as one matrix, so that a step is one product: (K * card, C), codebook-major
        self.heads = torch.cat([self.weights.pop(f"linears.{k}.weight") for k in range(codebooks)])
        self.head_bias = torch.cat([self.weights.pop(f"linears.{k}.bias") for k in range(codebooks)])
        self.embeddings = torch.cat([self.weights.pop(f"emb.{k}.weight") for k in range(codebooks)])  # (K*(card+1), C)
        self.positions = torch.zeros(1, 0, self.dim, dtype=torch.float64, device=device)
        self.frames = 0  # frames consumed so far
        # Key/value buffers with room for the window and one block; `self.cached` entries are filled. Writing in
        # place rather than concatenating keeps a step from copying the whole cache.
        head_dim = self.dim // self.num_heads
        self.capacity = self.past_context + max(1, max_block)
        self.cached = 1
        self.keys, self.values = [], []
        for layer in range(self.num_layers):
            keys = torch.empty(batch, self.num_heads, self.capacity, head_dim, dtype=torch.float64, device=device)
            values = torch.empty_like(keys)
            bias = self.weights[f"transformer.layers.{layer}.self_attn.in_proj_bias"]
            # the zero step's key and value: the projection of zeros is the bias
            keys[:, :, 0] = bias[self.dim : 2 * self.dim].view(self.num_heads, head_dim)
            values[:, :, 0] = bias[2 * self.dim :].view(self.num_heads, head_dim)
            self.keys.append(keys)
            self.values.append(values)

    def _layer_norm(self, x, name):
        return F.layer_norm(x, (self.dim,), self.weights[f"{name}.weight"], self.weights[f"{name}.bias"], self.eps)

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, K, T), the previous frames' codes + 1 (0 before the first frame) -> float64 probabilities
        (B, T, K, card) of frames `self.frames` .. `self.frames + T - 1`."""
        w = self.weights
        batch, codebooks, steps = indices.shape  # a file may use fewer codebooks than the model predicts
        if steps > self.capacity - self.past_context:
            raise ValueError(f"blocks of at most {self.capacity - self.past_context} frames, got {steps}")
        if self.cached + steps > self.capacity:  # keep the window, drop what no query can reach any more
            keep = min(self.cached, self.past_context)
            for buffer in self.keys + self.values:
                buffer[:, :, :keep] = buffer[:, :, self.cached - keep : self.cached].clone()
            self.cached = keep
        # one lookup in all codebooks' tables at once: row k * (card + 1) + index
        offsets = torch.arange(codebooks, device=indices.device).view(1, -1, 1) * (self.card + 1)
        x = F.embedding(indices + offsets, self.embeddings).sum(dim=1)  # (B, K, T, C) -> (B, T, C)
        if self.frames + steps > self.positions.shape[1]:  # position features, computed once for many frames
            count = max(2 * self.positions.shape[1], self.frames + steps)
            self.positions = sin_embedding(torch.arange(count, dtype=torch.float64, device=x.device).view(1, -1, 1),
                                           self.dim, self.max_period)  # (1, count, C)
        x = self._layer_norm(x, "transformer.norm_in") + self.positions[:, self.frames : self.frames + steps]
        heads, head_dim = self.num_heads, self.dim // self.num_heads
        cached, total = self.cached, self.cached + steps
        # S indices relative to the buffer's start: the block's queries are cached .. total - 1
        delta = torch.arange(cached, total, device=x.device).view(-1, 1) - torch.arange(total, device=x.device)
        allowed = (delta >= 0) & (delta <= self.past_context)  # (T, total)
        allowed = None if bool(allowed.all()) else allowed  # one step inside the window: nothing to mask
        for layer in range(self.num_layers):
            name = f"transformer.layers.{layer}"
            qkv = F.linear(x, w[f"{name}.self_attn.in_proj_weight"], w[f"{name}.self_attn.in_proj_bias"])
            q, k, v = qkv.view(batch, steps, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # each (B, h, T, d)
            self.keys[layer][:, :, cached:total] = k
            self.values[layer][:, :, cached:total] = v
            keys, values = self.keys[layer][:, :, :total], self.values[layer][:, :, :total]
            attention = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)  # (B, h, T, d)
            attention = F.linear(attention.transpose(1, 2).reshape(batch, steps, self.dim),
                                 w[f"{name}.self_attn.out_proj.weight"], w[f"{name}.self_attn.out_proj.bias"])
            x = self._layer_norm(x + attention, f"{name}.norm1")
            hidden = F.gelu(F.linear(x, w[f"{name}.linear1.weight"], w[f"{name}.linear1.bias"]))
            x = self._layer_norm(x + F.linear(hidden, w[f"{name}.linear2.weight"], w[f"{name}.linear2.bias"]),
                                 f"{name}.norm2")
        self.cached = total
        self.frames += steps
        used = codebooks * self.card
        if batch * steps <= 8:  # measured: for a few rows MKL is twice as fast with the weights as left operand
            logits = torch.addmm(self.head_bias[:used, None], self.heads[:used], x.reshape(-1, self.dim).T).T
        else:
            logits = F.linear(x, self.heads[:used], self.head_bias[:used])  # (B, T, K * card)
        return torch.softmax(logits.reshape(batch, steps, codebooks, self.card), dim=-1)


__all__ = ["EncodecLanguageModel", "quantized_cdf", "ArithmeticEncoder", "ArithmeticDecoder", "WEIGHTS_NAME",
           "CONFIG_NAME", "DeterministicRunner", "deterministic_cdf", "uniform_cdf"]
