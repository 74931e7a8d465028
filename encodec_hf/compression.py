"""Compressed files in EnCodec 0.1.1's .ecdc format, version 0, without the entropy-coding language model.

Layout, as EnCodec 0.1.1 writes it (`encodec/binary.py`, `encodec/compress.py`):

    header   b"ECDC" | version (uint8, 0) | metadata length (uint32, big-endian)   struct "!4sBI"
    metadata JSON: {"m": model name, "al": audio length in samples, "nc": codebooks, "lm": false}
    chunks   for each chunk of the model's chunk plan:
               scale as a big-endian float32 (models that normalise: the 48 kHz one)
               codes frame by frame, codebook by codebook, each in codebook_nbits (10) bits, packed
               least-significant bit first and padded to a whole byte at the chunk's end

Version 1, opt-in (`container_version=1`), frames every chunk as `payload length (uint32) | CRC32 of the payload
(uint32) | payload`, the payload being the chunk's version-0 bytes: a damaged byte then loses one chunk (its samples
come out silent and a warning names it), not the rest of the file. Version 0 stays the default, for the original.
With the language model, version-1 files use its deterministic mode (metadata "dlm": 1, see
`language_model.deterministic_cdf`): float64 probabilities floored to 2**-16, so the file decodes the same on any
machine and in any batch, and the chunks are coded as one batch. Such a chunk's payload is

    scale (float32, models that normalise) | risky count (varint) | gaps between risky positions (varints)
    | the arithmetic-coded bits, padded to a whole byte

where a position is t * codebooks + k in coding order, and the gaps are each position minus the previous one minus
one (the first: the position itself). Risky positions are coded with the uniform distribution.

Files written here are byte-identical to the original's for the same weights and input, and the original's files
decode here. Reading checks every field against the model and the bytes available, so a truncated, corrupted,
foreign or lying file ends in a ValueError or EOFError, never a hang or garbage audio.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from .language_model import (ArithmeticDecoder, ArithmeticEncoder, DeterministicRunner, deterministic_cdf,
                             quantized_cdf, uniform_cdf)
from .modeling_encodec import EncodecModel, num_frames
from .processing import EncodecFeatureExtractor, plan_chunks

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
LM_DECODE_BATCH = 32  # chunks stepped together when decoding deterministic files (about 2.4 MB of cache each)
LM_ENCODE_ELEMENTS = 1 << 22  # float64 probabilities held at once when encoding (32 MB)
LM_BLOCK_FRAMES = 256  # frames a teacher-forced language-model pass covers
CDF_ELEMENTS = 1 << 18  # probabilities turned into ranges at once (2 MB of float64: large tensors cost page faults)


def model_name(model: EncodecModel) -> str:
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
    return _BitReader(io.BytesIO(data)).read_values(count, bits)


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
        (byte,) = _read_exactly(stream, 1, "a varint")
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


def _read_exactly(stream, size: int, what: str) -> bytes:
    data = stream.read(size)
    if len(data) != size:
        raise EOFError(f"the file ended inside the {what}: {size} bytes expected, {len(data)} found")
    return data


def read_header(stream) -> tuple[int, dict]:
    """The version and metadata of an .ecdc stream; ValueError for anything that is not an ECDC header."""
    magic, version, size = HEADER.unpack(_read_exactly(stream, HEADER.size, "header"))
    if magic != MAGIC:
        raise ValueError(f"not an EnCodec file: it starts with {magic!r}, not {MAGIC!r}")
    if version not in VERSIONS:
        raise ValueError(f"ECDC version {version} is not supported (this reader knows versions 0 and 1)")
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"the header claims {size} bytes of metadata; at most {MAX_METADATA_BYTES} are plausible")
    try:
        metadata = json.loads(_read_exactly(stream, size, "metadata").decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"the file's metadata is not valid JSON: {error}") from error
    if not isinstance(metadata, dict) or not {"m", "al", "nc", "lm"} <= set(metadata):
        raise ValueError(f"the file's metadata lacks its fields m, al, nc, lm: {metadata!r}")
    return version, metadata


def _check_metadata(metadata: dict, model: EncodecModel, version: int) -> tuple[int, int, bool, bool]:
    """(audio length, codebooks, language model used, its deterministic mode used) after checking each field."""
    name, length, codebooks, use_lm = metadata["m"], metadata["al"], metadata["nc"], metadata["lm"]
    scheme = metadata.get("dlm")
    if scheme is not None and (scheme != DETERMINISTIC_SCHEME or version != 1 or use_lm is not True):
        raise ValueError(f"the file's deterministic language-model mode {scheme!r} (version {version}, lm {use_lm!r}) "
                         f"is not one this reader knows: mode {DETERMINISTIC_SCHEME}, in version-1 files with lm true")
    if name != model_name(model):
        raise ValueError(f"the file was made with {name!r}; this model is {model_name(model)!r}")
    if not isinstance(length, int) or isinstance(length, bool) or not 1 <= length <= MAX_SECONDS * model.config.sampling_rate:
        raise ValueError(f"the file's audio length {length!r} is not a plausible number of samples")
    if not isinstance(codebooks, int) or isinstance(codebooks, bool) or not 1 <= codebooks <= model.config.num_quantizers:
        raise ValueError(f"the file's codebook count {codebooks!r} is not in 1..{model.config.num_quantizers}")
    if not isinstance(use_lm, bool):
        raise ValueError(f"the file's 'lm' field is {use_lm!r}, not a boolean")
    if use_lm and model.language_model is None:
        raise ValueError("the file was entropy-coded with EnCodec's language model, and this model's folder has none "
                         "(convert it with `encodec-hf convert ... --lm-checkpoint LM.th`)")
    return length, codebooks, use_lm, scheme is not None


# -- compress / decompress -------------------------------------------------------------------------------------------


def _language_model(model: EncodecModel):
    if model.language_model is None:
        raise ValueError("use_lm=True needs the model's entropy-coding language model: convert it into the model's "
                         "folder with `encodec-hf convert CHECKPOINT --model NAME --output DIR --lm-checkpoint LM.th`")
    return model.language_model.to(model.device)


def _encode_with_lm(language_model, chunk: torch.Tensor) -> bytes:
    """Arithmetic-code one chunk's codes (K, T), stepping the language model frame by frame as the original does
    (its probabilities must be bit for bit the decoder's)."""
    bits: list[int] = []
    coder = ArithmeticEncoder(bits.append)
    states, offset = None, 0
    previous = torch.zeros(1, chunk.shape[0], 1, dtype=torch.long, device=chunk.device)  # 0: no previous frame
    for t in range(chunk.shape[1]):
        probabilities, states, offset = language_model(previous, states, offset)  # (1, card, K, 1)
        previous = 1 + chunk[None, :, t : t + 1]
        for k, value in enumerate(chunk[:, t].tolist()):
            coder.push(value, quantized_cdf(probabilities[0, :, k, 0]))
    coder.flush()
    return pack_bits(np.array(bits, dtype=np.int64), 1)


def _encode_deterministic(language_model, chunks: list[torch.Tensor]) -> list[bytes]:
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
                span = slice(begin + offset, begin + offset + step)
                cdf, risky[:, span] = deterministic_cdf(probabilities[:, offset : offset + step])
                symbols = codes[:, :, span].transpose(1, 2).unsqueeze(-1)  # (B, t, K, 1)
                ends[:, span] = cdf.gather(-1, symbols)[..., 0].long()  # cdf[symbol]
                starts[:, span] = torch.where(symbols[..., 0] > 0,
                                              cdf.gather(-1, (symbols - 1).clamp(min=0))[..., 0].long(), 0)
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


def _coding_mode(use_lm: bool, container_version: int, deterministic_lm: bool | None) -> bool:
    """Whether to code in the deterministic mode, after checking that the options fit together."""
    if container_version not in VERSIONS:
        raise ValueError(f"container_version must be 0 (EnCodec 0.1.1's) or 1 (CRC-framed chunks), got "
                         f"{container_version!r}")
    deterministic = (use_lm and container_version == 1) if deterministic_lm is None else deterministic_lm
    if deterministic and not (use_lm and container_version == 1):
        raise ValueError(f"the deterministic language-model mode needs use_lm=True and container_version=1 "
                         f"(version 0 is the original's format, which cannot record it); got use_lm={use_lm}, "
                         f"container_version={container_version}")
    return deterministic


def compress_codes(model: EncodecModel, audio_codes: torch.Tensor, audio_scales, audio_length: int,
                   use_lm: bool = False, container_version: int = VERSION,
                   deterministic_lm: bool | None = None) -> bytes:
    """The .ecdc bytes of one clip's codes, (num_chunks, 1, num_quantizers, frames) as `encode` returns them.

    `deterministic_lm` (None: on for version-1 files with the language model) selects the language model's
    deterministic mode, which only version 1 can record.
    """
    config = model.config
    plan = plan_chunks(audio_length, config.chunk_length, config.chunk_stride)
    if audio_codes.shape[0] != len(plan) or audio_codes.shape[1] != 1:
        raise ValueError(f"expected the codes of one clip of {audio_length} samples ({len(plan)} chunks), got "
                         f"shape {tuple(audio_codes.shape)}")
    deterministic = _coding_mode(use_lm, container_version, deterministic_lm)
    language_model = _language_model(model) if use_lm else None
    stream = io.BytesIO()
    codebooks = audio_codes.shape[2]
    metadata = {"m": model_name(model), "al": int(audio_length), "nc": int(codebooks), "lm": use_lm}
    if deterministic:
        metadata["dlm"] = DETERMINISTIC_SCHEME
    write_header(stream, metadata, container_version)
    chunks = [audio_codes[index, 0, :, : num_frames(size, config.hop_length)] for index, (_, size) in enumerate(plan)]
    if deterministic:
        with torch.inference_mode():
            coded = _encode_deterministic(language_model, [chunk.to(model.device) for chunk in chunks])
    for index, chunk in enumerate(chunks):  # chunk: (K, T)
        payload = io.BytesIO()
        if config.normalize:
            payload.write(SCALE.pack(float(audio_scales[index].reshape(-1)[0])))
        if deterministic:
            payload.write(coded[index])
        elif language_model is not None:
            with torch.inference_mode():
                payload.write(_encode_with_lm(language_model, chunk.to(model.device)))
        else:
            payload.write(pack_bits(chunk.cpu().numpy().T.reshape(-1), config.codebook_nbits))  # t-major
        data = payload.getvalue()
        if container_version == 1:
            stream.write(FRAME.pack(len(data), zlib.crc32(data)))
        stream.write(data)
    return stream.getvalue()


def compress(model: EncodecModel, audio, sampling_rate: int, bandwidth: float | None = None,
             use_lm: bool = False, feature_extractor: EncodecFeatureExtractor | None = None,
             container_version: int = VERSION, deterministic_lm: bool | None = None) -> bytes:
    """Compress one clip ((samples,) or (channels, samples), any rate) to .ecdc bytes (version 0, the original's,
    unless `container_version=1`; version 1 with `use_lm` codes in the language model's deterministic mode unless
    `deterministic_lm=False`)."""
    _coding_mode(use_lm, container_version, deterministic_lm)  # fail before encoding
    if use_lm:
        _language_model(model)
    config = model.config
    bandwidth = config.target_bandwidths[0] if bandwidth is None else config.check_bandwidth(bandwidth)
    extractor = feature_extractor or EncodecFeatureExtractor.from_model_config(config)
    inputs = extractor(audio, sampling_rate=sampling_rate, return_tensors="pt")
    if inputs["input_values"].shape[0] != 1:
        raise ValueError("compress takes one clip; compress a batch clip by clip")
    length = inputs["input_values"].shape[-1]
    with torch.inference_mode():
        encoded = model.encode(inputs["input_values"].to(model.device), bandwidth=bandwidth)
    return compress_codes(model, encoded.audio_codes, encoded.audio_scales, length, use_lm=use_lm,
                          container_version=container_version, deterministic_lm=deterministic_lm)


class _BitReader:
    """Reads bits from a byte stream as they are needed, least significant first; a chunk's data ends on a whole
    byte, so `end_chunk` drops the padding bits of its last byte."""

    def __init__(self, stream):
        self.stream = stream
        self.spare = np.zeros(0, dtype=np.uint8)

    def read(self, count: int) -> np.ndarray:
        needed = count - self.spare.size
        if needed > 0:
            data = _read_exactly(self.stream, (needed + 7) // 8, "codes")
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


def _read_scale(source, config, index: int):
    """A chunk's scale as a (1, 1) tensor, or None for models that do not normalise."""
    if not config.normalize:
        return None
    (value,) = SCALE.unpack(_read_exactly(source, SCALE.size, "scale"))
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"chunk {index}'s scale {value} is not a positive finite number")
    return torch.tensor([[value]], dtype=torch.float32)


def _read_chunk(source, reader, model, index: int, size: int, codebooks: int, language_model, step):
    """One chunk's pieces: (first frame, codes (K, n), scale or None), at most `step` frames a piece."""
    config = model.config
    scale = _read_scale(source, config, index)
    frames = num_frames(size, config.hop_length)
    piece = frames if step is None else max(1, step)
    if language_model is not None:
        decoder = ArithmeticDecoder(reader.read_bit)
        states, offset = None, 0
        previous = torch.zeros(1, codebooks, 1, dtype=torch.long, device=model.device)
    for first in range(0, frames, piece):
        count = min(piece, frames - first)
        if language_model is None:
            values = reader.read_values(count * codebooks, config.codebook_nbits)
            if values.max(initial=0) >= config.codebook_size:
                raise ValueError(f"chunk {index} holds codes beyond the codebook size {config.codebook_size}")
            codes = torch.from_numpy(values.reshape(count, codebooks).T.copy())
        else:
            codes = torch.zeros(codebooks, count, dtype=torch.long)
            with torch.inference_mode():
                for t in range(count):
                    probabilities, states, offset = language_model(previous, states, offset)
                    for k in range(codebooks):
                        codes[k, t] = decoder.pull(quantized_cdf(probabilities[0, :, k, 0]))
                    previous = 1 + codes[None, :, t : t + 1].to(model.device)
        yield first, codes, scale
    reader.end_chunk()


def _plain_chunk_bytes(config, size: int, codebooks: int) -> int:
    """The exact size of a chunk's version-0 bytes without the language model."""
    return (SCALE.size if config.normalize else 0) + \
        (num_frames(size, config.hop_length) * codebooks * config.codebook_nbits + 7) // 8


def _read_risky_positions(source, count_limit: int) -> set[int]:
    """The deterministic mode's list of risky positions: a count, then the gaps between positions."""
    positions, position = set(), -1
    for _ in range(read_varint(source, count_limit)):
        position += 1 + read_varint(source, count_limit)
        if position >= count_limit:
            raise ValueError(f"a risky position {position} lies beyond the chunk's {count_limit} codes")
        positions.add(position)
    return positions


class _PayloadBits:
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


def _decode_deterministic(language_model, chunks: list, codebooks: int) -> list[torch.Tensor]:
    """Codes (K, T_i) of chunks [(arithmetic decoder, risky positions, frames T_i)] coded in the deterministic
    mode: the language model steps all of them together, one frame at a time."""
    device = next(language_model.parameters()).device
    card = language_model.linears[0].out_features
    uniform = uniform_cdf(card).numpy()
    frames = max(length for _, _, length in chunks)
    codes = np.zeros((len(chunks), codebooks, frames), dtype=np.int64)
    runner = DeterministicRunner(language_model, len(chunks))
    previous = torch.zeros(len(chunks), codebooks, 1, dtype=torch.long, device=device)  # 0: no previous frame
    for t in range(frames):
        cdf = deterministic_cdf(runner(previous), with_risk=False)[:, 0].cpu().numpy()  # (B, K, card)
        for b, (decoder, risky, length) in enumerate(chunks):
            if t < length:  # a shorter chunk's stream has ended: the rest of its row is never read
                for k in range(codebooks):
                    codes[b, k, t] = decoder.pull(uniform if t * codebooks + k in risky else cdf[b, k])
        previous = torch.from_numpy(codes[:, :, t : t + 1] + 1).to(device)
    return [torch.from_numpy(codes[b, :, :length]) for b, (_, _, length) in enumerate(chunks)]


def _chunk_pieces(stream, model: EncodecModel, version: int, length: int, codebooks: int, use_lm: bool,
                  step: int | None, deterministic: bool = False, lm_batch: int = LM_DECODE_BATCH):
    """Read the chunks after the header: yields (chunk index, first frame, codes (K, n) or None for a damaged
    chunk of a version-1 file, scale or None), at most `step` frames a piece (None: whole chunks). Deterministic
    files are decoded `lm_batch` chunks at a time."""
    config = model.config
    language_model = model.language_model.to(model.device) if use_lm else None
    shared = _BitReader(stream)
    pending = []  # deterministic mode: (index, scale, bits, risky positions, frames)

    def decode_pending():
        if not pending:
            return
        decoders = [(ArithmeticDecoder(bits.read_bit), risky, frames) for _, _, bits, risky, frames in pending]
        decoded = _decode_deterministic(language_model, decoders, codebooks)
        for (index, scale, bits, _, _), codes in zip(pending, decoded, strict=True):
            if bits.bytes_used() != len(bits.bits) // 8:
                raise ValueError(f"chunk {index} holds {len(bits.bits) // 8 - bits.bytes_used()} bytes more than "
                                 f"its codes")
            yield index, 0, codes, scale
        pending.clear()

    for index, (_, size) in enumerate(plan_chunks(length, config.chunk_length, config.chunk_stride)):
        if version == 0:
            for first, codes, scale in _read_chunk(stream, shared, model, index, size, codebooks, language_model, step):
                yield index, first, codes, scale
            continue
        claimed, checksum = FRAME.unpack(_read_exactly(stream, FRAME.size, f"chunk {index}'s frame"))
        expected = None if use_lm else _plain_chunk_bytes(config, size, codebooks)
        # A damaged length would lose the frames after it; without the language model the size is known.
        payload_size = expected if expected is not None else claimed
        if expected is None and claimed > 64 + 4 * _plain_chunk_bytes(config, size, codebooks):
            raise ValueError(f"chunk {index}'s frame claims {claimed} bytes, more than a chunk can hold: the file "
                             f"is damaged beyond this point")
        payload = _read_exactly(stream, payload_size, f"chunk {index}")
        if claimed != payload_size or zlib.crc32(payload) != checksum:
            yield from decode_pending()  # keep the chunks in order
            yield index, 0, None, None  # damaged: the caller silences this chunk
            continue
        source = io.BytesIO(payload)
        if deterministic:
            scale = _read_scale(source, config, index)
            frames = num_frames(size, config.hop_length)
            risky = _read_risky_positions(source, frames * codebooks)
            pending.append((index, scale, _PayloadBits(source.read()), risky, frames))
            if len(pending) >= lm_batch:
                yield from decode_pending()
            continue
        for first, codes, scale in _read_chunk(source, _BitReader(source), model, index, size, codebooks,
                                               language_model, step):
            yield index, first, codes, scale
        if source.tell() != len(payload):
            raise ValueError(f"chunk {index} holds {len(payload) - source.tell()} bytes more than its codes")
    yield from decode_pending()


def decompress(data: bytes, model: EncodecModel, on_damage: str = "silence") -> tuple[np.ndarray, int]:
    """Decode .ecdc bytes with `model`: float32 audio (channels, samples) and its sample rate.

    `on_damage` applies to version-1 files, whose chunks carry a CRC32: "silence" (default) decodes the other
    chunks, silences the damaged ones and logs a warning naming them; "raise" raises a ValueError instead.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"decompress takes bytes, got {type(data).__name__}")
    if on_damage not in ("silence", "raise"):
        raise ValueError(f"on_damage must be 'silence' or 'raise', got {on_damage!r}")
    stream = io.BytesIO(bytes(data))
    version, metadata = read_header(stream)
    length, codebooks, use_lm, deterministic = _check_metadata(metadata, model, version)
    config = model.config
    plan = plan_chunks(length, config.chunk_length, config.chunk_stride)
    # Before allocating anything, the bytes must be able to hold what the metadata claims.
    remaining = len(data) - stream.tell()
    if not use_lm:
        needed = sum(_plain_chunk_bytes(config, size, codebooks) + (FRAME.size if version == 1 else 0)
                     for _, size in plan)
        if needed > remaining:
            raise EOFError(f"the file is truncated: its metadata needs {needed} bytes of codes, {remaining} remain")
    else:
        claimed = codebooks * sum(num_frames(size, config.hop_length) for _, size in plan)
        if claimed * MIN_BITS_PER_CODE > 8 * remaining:
            raise ValueError(f"the file claims {claimed} codes in {remaining} bytes, more than arithmetic coding can "
                             f"pack: its audio length {length} is not plausible")
    frames = num_frames(min(length, config.chunk_length or length), config.hop_length)
    codes = torch.zeros(len(plan), 1, codebooks, frames, dtype=torch.long)
    scales = [torch.ones(1, 1)] * len(plan)
    damaged = []
    for index, first, piece, scale in _chunk_pieces(stream, model, version, length, codebooks, use_lm, None,
                                                    deterministic):
        if piece is None:
            if on_damage == "raise":
                raise ValueError(f"chunk {index} of the file is damaged (its CRC32 does not match)")
            damaged.append(index)
            continue
        codes[index, 0, :, first : first + piece.shape[-1]] = piece
        scales[index] = scale
    left = len(data) - stream.tell()
    if left:
        raise ValueError(f"the file has {left} bytes more than its metadata accounts for")
    mask = torch.ones(1, length, dtype=torch.bool, device=model.device)
    with torch.inference_mode():
        audio = model.decode(codes.to(model.device), scales if config.normalize else None, mask).audio_values
    audio = audio[0].float().cpu().numpy()
    if damaged:
        from transformers.utils import logging

        for index in damaged:
            start, size = plan[index]
            audio[:, start : start + size] = 0.0
        logging.get_logger(__name__).warning(f"damaged chunk(s) {damaged} of the .ecdc file decoded as silence")
    return audio, config.sampling_rate


def decompress_iter(stream, model: EncodecModel, frames_per_step: int = 8):
    """Decode an .ecdc file object while it is being read: yields float32 (channels, n) pieces of audio as soon
    as they are final, reading only the bytes they need. Concatenated, the pieces are `decompress`'s audio
    (within 1e-5; chunk by chunk for the 48 kHz model, `frames_per_step` frames at a time for causal ones).
    """
    version, metadata = read_header(stream)
    length, codebooks, use_lm, deterministic = _check_metadata(metadata, model, version)
    config = model.config
    if config.chunk_length is None and not config.use_causal_conv:
        raise ValueError("decoding while reading needs a causal or a chunked model")
    decoder = model.stream_decoder(audio_length=length)
    step = None if config.chunk_length is not None else frames_per_step
    # deterministic files: one chunk at a time, so that audio comes out as each chunk's bytes arrive
    for index, _, codes, scale in _chunk_pieces(stream, model, version, length, codebooks, use_lm, step,
                                                deterministic, lm_batch=1):
        if codes is None:
            raise ValueError(f"chunk {index} of the file is damaged (its CRC32 does not match)")
        piece = decoder.push(codes[None].to(model.device), scale)
        if piece.shape[-1]:
            yield piece[0].cpu().numpy()
    piece = decoder.flush()
    if piece.shape[-1]:
        yield piece[0].cpu().numpy()


def compress_file(model: EncodecModel, source: str | Path, target: str | Path, bandwidth: float | None = None,
                  use_lm: bool = False) -> int:
    """Compress an audio file (anything soundfile reads) to an .ecdc file; returns the bytes written."""
    import soundfile

    audio, rate = soundfile.read(str(source), dtype="float32", always_2d=True)
    data = compress(model, audio.T, rate, bandwidth=bandwidth, use_lm=use_lm)
    Path(target).write_bytes(data)
    return len(data)


def decompress_file(model: EncodecModel, source: str | Path) -> tuple[np.ndarray, int]:
    return decompress(Path(source).read_bytes(), model)


__all__ = ["compress", "decompress", "decompress_iter", "compress_codes", "compress_file", "decompress_file", "pack_bits",
           "unpack_bits", "read_header", "write_header", "model_name"]
