"""EnCodec's entropy-coding language model and arithmetic coder, as EnCodec 0.1.1 defines them.

The model predicts, for every codebook at once, the distribution of the next frame's code from the codes before
it: a 5-layer Transformer (dimension 200, 8 heads, feed-forward 800, GELU) over the sum of one embedding per
codebook, attending to at most `past_context` (3.5 s) frames back, with one output head per codebook. Arithmetic
coding with those distributions cuts the bit rate by 25-40 %.

The coder turns probabilities into integer ranges (`quantized_cdf`), so encoder and decoder must compute bit for
bit the same probabilities: this module keeps the original's operations and their order (a streaming step per
frame through `nn.TransformerEncoderLayer`), and its parameter names, so that its files and the original's decode
on either side. The arithmetic coder is integer arithmetic over a 24-bit range, as in the original.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

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
        while self.high - self.low + 1 < 2**self.bits:
            self.low, self.high, self.max_bit = self.low * 2, self.high * 2 + 1, self.max_bit + 1
        range_low = 0 if symbol == 0 else cdf[symbol - 1]
        range_high = cdf[symbol] - 1
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

    def pull(self, cdf: list[int]) -> int:
        while self.high - self.low + 1 < 2**self.bits:
            bit = self.read_bit()
            if bit is None:
                raise EOFError("the arithmetic-coded stream ended sooner than its metadata says")
            self.low, self.high = self.low * 2, self.high * 2 + 1
            self.current, self.max_bit = self.current * 2 + bit, self.max_bit + 1
        scale = (self.high - self.low + 1) / (2**self.bits)
        first, last = 0, len(cdf) - 1
        while first <= last:  # binary search for the symbol whose range holds `current`
            middle = (first + last) // 2
            low = self.low + int(math.ceil((cdf[middle - 1] if middle > 0 else 0) * scale))
            high = self.low + int(math.floor((cdf[middle] - 1) * scale))
            if self.current < low:
                last = middle - 1
            elif self.current > high:
                first = middle + 1
            else:
                self.low, self.high = low, high
                break
        else:
            raise ValueError("corrupted arithmetic-coded stream: no symbol matches it")
        for bit, position in self._drop_common_prefix():
            self.current -= bit << position
        return middle


__all__ = ["EncodecLanguageModel", "quantized_cdf", "ArithmeticEncoder",
           "ArithmeticDecoder", "WEIGHTS_NAME", "CONFIG_NAME"]
