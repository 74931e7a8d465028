"""EnCodec's arithmetic coder and the distributions it codes with, as EnCodec 0.1.1 defines them.

The coder is integer arithmetic over a 24-bit range (`TOTAL_RANGE_BITS`), as in the original
(`encodec/quantization/ac.py`). `quantized_cdf` turns a probability vector into integer ranges the original's way;
`deterministic_cdf` is this package's deterministic mode (version-1 files), whose ranges do not depend on float
rounding; `uniform_cdf` codes the positions that mode marks as risky.
"""

from __future__ import annotations

import bisect
import math

import numpy as np
import torch

TOTAL_RANGE_BITS = 24


def quantized_cdf(
    pdf: torch.Tensor, total_range_bits: int = TOTAL_RANGE_BITS, roundoff: float = 1e-8, min_range: int = 2
) -> list[int]:
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
        self.low, self.high = (
            self.low + int(math.ceil(range_low * scale)),
            self.low + int(math.floor(range_high * scale)),
        )
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
        guess = (
            int(np.searchsorted(cdf, target, side="right"))
            if isinstance(cdf, np.ndarray)
            else bisect.bisect_right(cdf, target)
        )
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


__all__ = [
    "quantized_cdf",
    "deterministic_cdf",
    "uniform_cdf",
    "ArithmeticEncoder",
    "ArithmeticDecoder",
    "TOTAL_RANGE_BITS",
    "PRECISION",
]
