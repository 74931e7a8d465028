"""The .ecdc container: header, metadata, chunk framing, bit packing and varints.

Layout, as EnCodec 0.1.1 writes it (`encodec/binary.py`, `encodec/compress.py`):

    header   b"ECDC" | version (uint8, 0) | metadata length (uint32, big-endian)   struct "!4sBI"
    metadata JSON: {"m": model name, "al": audio length in samples, "nc": codebooks, "lm": false}
    chunks   for each chunk of the model's chunk plan:
               scale as a big-endian float32 (models that normalise: the 48 kHz one)
               codes frame by frame, codebook by codebook, each in codebook_nbits (10) bits, packed
               least-significant bit first and padded to a whole byte at the chunk's end

Version 1, opt-in, frames every chunk as `payload length (uint32) | CRC32 of the payload (uint32) | payload`, the
payload being the chunk's version-0 bytes: a damaged byte then loses one chunk, not the rest of the file. With the
language model, version-1 files use its deterministic mode (metadata "dlm": 1); see `lm_coding`.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass

import numpy as np

MAGIC = b"ECDC"
HEADER = struct.Struct("!4sBI")
SCALE = struct.Struct("!f")
VERSION = 0
VERSIONS = (0, 1)
FRAME = struct.Struct("!II")  # version 1: payload length, CRC32 of the payload
MAX_METADATA_BYTES = 1 << 16  # the original's metadata is about 60 bytes; a larger claim is corruption
MAX_SECONDS = 24 * 3600  # refuse files that claim more than a day of audio rather than allocate for it
# Arithmetic coding spends about 7 bits per code on real audio (6 -> 4.1 kbps); no stream spends less than this,
# so a file claiming more codes than its bytes could carry at this rate is lying about its length.
MIN_BITS_PER_CODE = 0.01
DETERMINISTIC_SCHEME = 1  # metadata "dlm": the deterministic language-model mode's version


def model_name(model) -> str:
    """The name the format records: encodec_24khz, encodec_32khz or encodec_48khz, from the configuration."""
    rate = model.config.sampling_rate
    return f"encodec_{rate // 1000}khz" if rate % 1000 == 0 else f"encodec_{rate}hz"


# -- bit packing -------------------------------------------------------------------------------------------------
# Vectorised with numpy; the original pushes one value at a time through a Python loop.


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative ints into `bits` bits each, least-significant bit first, padded to a whole byte.

    Example, bits=10: [1, 2] -> bits 1000000000 0100000000 (+4 zero bits) -> bytes 0x01 0x08 0x00.
    """
    values = np.asarray(values, dtype=np.int64).reshape(-1)
    if values.size and (values.min() < 0 or values.max() >= 1 << bits):
        raise ValueError(f"values must lie in [0, {1 << bits}) to be packed in {bits} bits")
    bit_matrix = (values[:, None] >> np.arange(bits)) & 1  # (N, bits), least significant first
    return np.packbits(bit_matrix.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """The first `count` values of `bits` bits each from `data` (the inverse of `pack_bits`)."""
    return BitReader(io.BytesIO(data)).read_values(count, bits)


def write_varint(stream, value: int) -> None:
    """An unsigned LEB128 integer: 7 bits a byte, least significant first, the top bit set on all but the last.

    Example: 0 -> 00; 300 = 0b10_0101100 -> ac 02.
    """
    if value < 0:
        raise ValueError(f"varints are unsigned, got {value}")
    while True:
        byte, value = value & 0x7F, value >> 7
        stream.write(bytes([byte | (0x80 if value else 0)]))
        if not value:
            return


def read_varint(stream, limit: int) -> int:
    """The next varint from `stream`, refused (ValueError) above `limit`; EOFError if the stream ends inside it."""
    value, shift = 0, 0
    while True:
        (byte,) = read_exactly(stream, 1, "a varint")
        value |= (byte & 0x7F) << shift
        if value > limit:
            raise ValueError(f"a varint in the file exceeds {limit}: the file is damaged")
        if not byte & 0x80:
            return value
        shift += 7


# -- header --------------------------------------------------------------------------------------------------------


def write_header(stream, metadata: dict, version: int = VERSION) -> None:
    body = json.dumps(metadata).encode("utf-8")  # default separators, as the original: byte-identical files
    stream.write(HEADER.pack(MAGIC, version, len(body)))
    stream.write(body)


def read_exactly(stream, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"the file ended inside the {what}: {size} bytes expected, {len(data)} found")
    return data


def read_header(stream) -> tuple[int, dict]:
    """The version and metadata of an .ecdc stream; ValueError for anything that is not an ECDC header."""
    magic, version, size = HEADER.unpack(read_exactly(stream, HEADER.size, "header"))
    if magic != MAGIC:
        raise ValueError(f"not an EnCodec file: it starts with {magic!r}, not {MAGIC!r}")
    if version not in VERSIONS:
        raise ValueError(f"ECDC version {version} is not supported (this reader knows versions 0 and 1)")
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"the header claims {size} bytes of metadata; at most {MAX_METADATA_BYTES} are plausible")
    try:
        metadata = json.loads(read_exactly(stream, size, "metadata").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the file's metadata is not valid JSON: {error}") from error
    except RecursionError as error:  # JSON nested thousands deep: no real header is
        raise ValueError("the file's metadata is nested too deeply to be an EnCodec header") from error
    if not isinstance(metadata, dict) or not {"m", "al", "nc", "lm"} <= set(metadata):
        raise ValueError(f"the file's metadata lacks its fields m, al, nc, lm: {metadata!r}")
    return version, metadata


@dataclass(frozen=True)
class EcdcHeader:
    """What an .ecdc file's header says, checked field by field (`from_metadata`) and against a model (`check`)."""

    version: int
    model: str  # "m": encodec_24khz, encodec_32khz or encodec_48khz
    audio_length: int  # "al": samples at the model's rate
    codebooks: int  # "nc"
    use_lm: bool  # "lm": arithmetic-coded with the language model
    deterministic: bool = False  # "dlm": the language model's deterministic mode (version 1 only)

    def metadata(self) -> dict:
        """The JSON metadata, keys in the original's order (files stay byte-identical)."""
        metadata = {"m": self.model, "al": int(self.audio_length), "nc": int(self.codebooks), "lm": self.use_lm}
        if self.deterministic:
            metadata["dlm"] = DETERMINISTIC_SCHEME
        return metadata

    def write(self, stream) -> None:
        write_header(stream, self.metadata(), self.version)

    @classmethod
    def read(cls, stream) -> "EcdcHeader":
        return cls.from_metadata(*read_header(stream))

    @classmethod
    def from_metadata(cls, version: int, metadata: dict) -> "EcdcHeader":
        name, length, codebooks, use_lm = metadata["m"], metadata["al"], metadata["nc"], metadata["lm"]
        scheme = metadata.get("dlm")
        if scheme is not None and (scheme != DETERMINISTIC_SCHEME or version != 1 or use_lm is not True):
            raise ValueError(
                f"the file's deterministic language-model mode {scheme!r} (version {version}, lm "
                f"{use_lm!r}) is not one this reader knows: mode {DETERMINISTIC_SCHEME}, in version-1 "
                f"files with lm true"
            )
        if not isinstance(name, str):
            raise ValueError(f"the file's model name {name!r} is not a string")
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(f"the file's audio length {length!r} is not a plausible number of samples")
        if not isinstance(codebooks, int) or isinstance(codebooks, bool) or codebooks < 1:
            raise ValueError(f"the file's codebook count {codebooks!r} is not a positive integer")
        if not isinstance(use_lm, bool):
            raise ValueError(f"the file's 'lm' field is {use_lm!r}, not a boolean")
        return cls(version, name, length, codebooks, use_lm, scheme is not None)

    def check(self, model) -> None:
        """Refuse a file this model cannot decode, before anything is allocated for it."""
        if self.model != model_name(model):
            raise ValueError(f"the file was made with {self.model!r}; this model is {model_name(model)!r}")
        if self.audio_length > MAX_SECONDS * model.config.sampling_rate:
            raise ValueError(f"the file's audio length {self.audio_length!r} is not a plausible number of samples")
        if self.codebooks > model.config.num_quantizers:
            raise ValueError(f"the file's codebook count {self.codebooks!r} is not in 1..{model.config.num_quantizers}")
        if self.use_lm and model.language_model is None:
            raise ValueError(
                "the file was entropy-coded with EnCodec's language model, and this model's folder has "
                "none (convert it with `encodec-hf convert ... --lm-checkpoint LM.th`)"
            )


class BitReader:
    """Reads bits from a byte stream as they are needed, least significant first; a chunk's data ends on a whole
    byte, so `end_chunk` drops the padding bits of its last byte."""

    def __init__(self, stream):
        self.stream = stream
        self.spare = np.zeros(0, dtype=np.uint8)

    def read(self, count: int) -> np.ndarray:
        needed = count - self.spare.size
        if needed > 0:
            data = read_exactly(self.stream, (needed + 7) // 8, "codes")
            self.spare = np.concatenate([self.spare, np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little")])
        out, self.spare = self.spare[:count], self.spare[count:]
        return out

    def read_values(self, count: int, bits: int) -> np.ndarray:
        matrix = self.read(count * bits).reshape(count, bits).astype(np.int64)
        return (matrix << np.arange(bits)).sum(axis=1)

    def read_bit(self) -> int | None:
        try:
            return int(self.read(1)[0])
        except EOFError:
            return None

    def end_chunk(self) -> None:
        self.spare = np.zeros(0, dtype=np.uint8)


class PayloadBits:
    """The bits of an in-memory payload, least significant first, one at a time (a list: the arithmetic decoder
    reads about 7 bits a code, and numpy's per-call cost would dominate)."""

    def __init__(self, data: bytes):
        self.bits = np.unpackbits(np.frombuffer(data, np.uint8), bitorder="little").tolist()
        self.used = 0

    def read_bit(self) -> int | None:
        if self.used == len(self.bits):
            return None
        self.used += 1
        return self.bits[self.used - 1]

    def bytes_used(self) -> int:
        return (self.used + 7) // 8


def read_risky_positions(source, count_limit: int) -> set[int]:
    """The deterministic mode's list of risky positions: a count, then the gaps between positions."""
    positions, position = set(), -1
    for _ in range(read_varint(source, count_limit)):
        position += 1 + read_varint(source, count_limit)
        if position >= count_limit:
            raise ValueError(f"a risky position {position} lies beyond the chunk's {count_limit} codes")
        positions.add(position)
    return positions


__all__ = [
    "EcdcHeader",
    "pack_bits",
    "unpack_bits",
    "write_varint",
    "read_varint",
    "write_header",
    "read_header",
    "model_name",
    "MAGIC",
    "VERSION",
    "VERSIONS",
]
