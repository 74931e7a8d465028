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

from .language_model import ArithmeticDecoder, ArithmeticEncoder, quantized_cdf
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


def _check_metadata(metadata: dict, model: EncodecModel) -> tuple[int, int, bool]:
    name, length, codebooks, use_lm = metadata["m"], metadata["al"], metadata["nc"], metadata["lm"]
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
    return length, codebooks, use_lm


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


def compress_codes(model: EncodecModel, audio_codes: torch.Tensor, audio_scales, audio_length: int,
                   use_lm: bool = False, container_version: int = VERSION) -> bytes:
    """The .ecdc bytes of one clip's codes, (num_chunks, 1, num_quantizers, frames) as `encode` returns them."""
    config = model.config
    plan = plan_chunks(audio_length, config.chunk_length, config.chunk_stride)
    if audio_codes.shape[0] != len(plan) or audio_codes.shape[1] != 1:
        raise ValueError(f"expected the codes of one clip of {audio_length} samples ({len(plan)} chunks), got "
                         f"shape {tuple(audio_codes.shape)}")
    language_model = _language_model(model) if use_lm else None
    stream = io.BytesIO()
    codebooks = audio_codes.shape[2]
    if container_version not in VERSIONS:
        raise ValueError(f"container_version must be 0 (EnCodec 0.1.1's) or 1 (CRC-framed chunks), got "
                         f"{container_version!r}")
    write_header(stream, {"m": model_name(model), "al": int(audio_length), "nc": int(codebooks), "lm": use_lm},
                 container_version)
    for index, (_, size) in enumerate(plan):
        payload = io.BytesIO()
        if config.normalize:
            payload.write(SCALE.pack(float(audio_scales[index].reshape(-1)[0])))
        frames = num_frames(size, config.hop_length)
        chunk = audio_codes[index, 0, :, :frames]  # (K, T)
        if language_model is not None:
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
             container_version: int = VERSION) -> bytes:
    """Compress one clip ((samples,) or (channels, samples), any rate) to .ecdc bytes (version 0, the original's,
    unless `container_version=1`)."""
    if use_lm:
        _language_model(model)  # fail before encoding when there is none
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
                          container_version=container_version)


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


def _read_chunk(source, reader, model, index: int, size: int, codebooks: int, language_model, step):
    """One chunk's pieces: (first frame, codes (K, n), scale or None), at most `step` frames a piece."""
    config = model.config
    scale = None
    if config.normalize:
        (value,) = SCALE.unpack(_read_exactly(source, SCALE.size, "scale"))
        if not np.isfinite(value) or value <= 0:
            raise ValueError(f"chunk {index}'s scale {value} is not a positive finite number")
        scale = torch.tensor([[value]], dtype=torch.float32)
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


def _chunk_pieces(stream, model: EncodecModel, version: int, length: int, codebooks: int, use_lm: bool,
                  step: int | None):
    """Read the chunks after the header: yields (chunk index, first frame, codes (K, n) or None for a damaged
    chunk of a version-1 file, scale or None), at most `step` frames a piece (None: whole chunks)."""
    config = model.config
    language_model = model.language_model.to(model.device) if use_lm else None
    shared = _BitReader(stream)
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
            yield index, 0, None, None  # damaged: the caller silences this chunk
            continue
        source = io.BytesIO(payload)
        for first, codes, scale in _read_chunk(source, _BitReader(source), model, index, size, codebooks,
                                               language_model, step):
            yield index, first, codes, scale
        if source.tell() != len(payload):
            raise ValueError(f"chunk {index} holds {len(payload) - source.tell()} bytes more than its codes")


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
    length, codebooks, use_lm = _check_metadata(metadata, model)
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
    for index, first, piece, scale in _chunk_pieces(stream, model, version, length, codebooks, use_lm, None):
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
    length, codebooks, use_lm = _check_metadata(metadata, model)
    config = model.config
    if config.chunk_length is None and not config.use_causal_conv:
        raise ValueError("decoding while reading needs a causal or a chunked model")
    decoder = model.stream_decoder(audio_length=length)
    step = None if config.chunk_length is not None else frames_per_step
    for index, _, codes, scale in _chunk_pieces(stream, model, version, length, codebooks, use_lm, step):
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
