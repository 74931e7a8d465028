"""Compress and decompress: audio to .ecdc bytes and back, in EnCodec 0.1.1's format (see `container`).

Files written here are byte-identical to the original's for the same weights and input, and the original's files
decode here. Reading checks every field against the model and the bytes available, so a truncated, corrupted,
foreign or lying file ends in a ValueError or EOFError, never a hang or garbage audio.
"""

from __future__ import annotations

import io
import zlib
from pathlib import Path

import numpy as np
import torch

from ..audio_io import read_audio, write_audio, write_bytes
from ..chunking import num_frames, plan_chunks
from ..modeling_encodec import EncodecModel
from ..processing import EncodecFeatureExtractor
from . import lm_coding
from .coder import ArithmeticDecoder
from .container import (
    FRAME,
    MIN_BITS_PER_CODE,
    SCALE,
    VERSION,
    VERSIONS,
    BitReader,
    EcdcHeader,
    PayloadBits,
    model_name,
    pack_bits,
    read_exactly,
    read_risky_positions,
)
from .lm_coding import FrameStepper, decode_deterministic, encode_deterministic, encode_with_lm


def _language_model(model: EncodecModel):
    if model.language_model is None:
        raise ValueError(
            "use_lm=True (--lm) needs the model's entropy-coding language model: convert it into the model's "
            "folder with `encodec-hf convert CHECKPOINT --model NAME --output DIR --lm-checkpoint LM.th`"
        )
    return model.language_model.to(model.device)


def _coding_mode(use_lm: bool, container_version: int, deterministic_lm: bool | None) -> bool:
    """Whether to code in the deterministic mode, after checking that the options fit together."""
    if container_version not in VERSIONS:
        raise ValueError(
            f"container_version must be 0 (EnCodec 0.1.1's) or 1 (CRC-framed chunks), got {container_version!r}"
        )
    deterministic = (use_lm and container_version == 1) if deterministic_lm is None else deterministic_lm
    if deterministic and not (use_lm and container_version == 1):
        raise ValueError(
            f"the deterministic language-model mode needs use_lm=True (--lm) and container_version=1 (--container 1) "
            f"(version 0 is the original's format, which cannot record it); got use_lm={use_lm}, "
            f"container_version={container_version}"
        )
    return deterministic


def compress_codes(
    model: EncodecModel,
    audio_codes: torch.Tensor,
    audio_scales,
    audio_length: int,
    use_lm: bool = False,
    container_version: int = VERSION,
    deterministic_lm: bool | None = None,
) -> bytes:
    """The .ecdc bytes of one clip's codes, (num_chunks, 1, num_quantizers, frames) as `encode` returns them.

    `deterministic_lm` (None: on for version-1 files with the language model) selects the language model's
    deterministic mode, which only version 1 can record.
    """
    config = model.config
    plan = plan_chunks(audio_length, config.chunk_length, config.chunk_stride)
    if audio_codes.shape[0] != len(plan) or audio_codes.shape[1] != 1:
        raise ValueError(
            f"expected the codes of one clip of {audio_length} samples ({len(plan)} chunks), got "
            f"shape {tuple(audio_codes.shape)}"
        )
    deterministic = _coding_mode(use_lm, container_version, deterministic_lm)
    language_model = _language_model(model) if use_lm else None
    stream = io.BytesIO()
    EcdcHeader(
        container_version, model_name(model), int(audio_length), int(audio_codes.shape[2]), use_lm, deterministic
    ).write(stream)
    chunks = [audio_codes[index, 0, :, : num_frames(size, config.hop_length)] for index, (_, size) in enumerate(plan)]
    if deterministic:
        with torch.inference_mode():
            coded = encode_deterministic(language_model, [chunk.to(model.device) for chunk in chunks])
    for index, chunk in enumerate(chunks):  # chunk: (K, T)
        payload = io.BytesIO()
        if config.normalize:
            payload.write(SCALE.pack(float(audio_scales[index].reshape(-1)[0])))
        if deterministic:
            payload.write(coded[index])
        elif language_model is not None:
            with torch.inference_mode():
                payload.write(encode_with_lm(language_model, chunk.to(model.device)))
        else:
            payload.write(pack_bits(chunk.cpu().numpy().T.reshape(-1), config.codebook_nbits))  # t-major
        data = payload.getvalue()
        if container_version == 1:
            stream.write(FRAME.pack(len(data), zlib.crc32(data)))
        stream.write(data)
    return stream.getvalue()


def compress(
    model: EncodecModel,
    audio,
    sampling_rate: int,
    bandwidth: float | None = None,
    use_lm: bool = False,
    feature_extractor: EncodecFeatureExtractor | None = None,
    container_version: int = VERSION,
    deterministic_lm: bool | None = None,
    progress=None,
    fast_encoding: bool | None = None,
) -> bytes:
    """Compress one clip ((samples,) or (channels, samples), any rate) to .ecdc bytes (version 0, the original's,
    unless `container_version=1`; version 1 with `use_lm` codes in the language model's deterministic mode unless
    `deterministic_lm=False`). `fast_encoding` and `progress` go to `model.encode` (the default, exact encoding,
    gives the original's bytes)."""
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
        encoded = model.encode(
            inputs["input_values"].to(model.device), bandwidth=bandwidth, progress=progress, fast_encoding=fast_encoding
        )
    return compress_codes(
        model,
        encoded.audio_codes,
        encoded.audio_scales,
        length,
        use_lm=use_lm,
        container_version=container_version,
        deterministic_lm=deterministic_lm,
    )


def _read_scale(source, config, index: int):
    """A chunk's scale as a (1, 1) tensor, or None for models that do not normalise."""
    if not config.normalize:
        return None
    (value,) = SCALE.unpack(read_exactly(source, SCALE.size, "scale"))
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
        stepper = FrameStepper(language_model, codebooks, model.device)
    for first in range(0, frames, piece):
        count = min(piece, frames - first)
        if language_model is None:
            values = reader.read_values(count * codebooks, config.codebook_nbits)
            if values.max(initial=0) >= config.codebook_size:
                raise ValueError(f"chunk {index} holds codes beyond the codebook size {config.codebook_size}")
            codes = torch.from_numpy(values.reshape(count, codebooks).T.copy())
        else:
            # Grown as frames decode, never allocated for what the header claims: a file that claims hours runs out
            # of bits (EOFError) long before its codes would fill such a buffer.
            codes = torch.zeros(codebooks, min(count, 1024), dtype=torch.long)
            with torch.inference_mode():
                for t in range(count):
                    if t == codes.shape[1]:
                        codes = torch.cat([codes, torch.zeros_like(codes)], dim=1)[:, :count]
                    for k, cdf in enumerate(stepper.cdfs()):
                        codes[k, t] = decoder.pull(cdf)
                    stepper.advance(codes[:, t])
        yield first, codes, scale
    reader.end_chunk()


def _plain_chunk_bytes(config, size: int, codebooks: int) -> int:
    """The exact size of a chunk's version-0 bytes without the language model."""
    return (SCALE.size if config.normalize else 0) + (
        num_frames(size, config.hop_length) * codebooks * config.codebook_nbits + 7
    ) // 8


def _chunk_pieces(
    stream,
    model: EncodecModel,
    version: int,
    length: int,
    codebooks: int,
    use_lm: bool,
    step: int | None,
    deterministic: bool = False,
    lm_batch: int | None = None,
):
    """Read the chunks after the header: yields (chunk index, first frame, codes (K, n) or None for a damaged
    chunk of a version-1 file, scale or None), at most `step` frames a piece (None: whole chunks). Deterministic
    files are decoded `lm_batch` chunks at a time (None: `lm_coding.LM_DECODE_BATCH`, read at each call)."""
    lm_batch = lm_coding.LM_DECODE_BATCH if lm_batch is None else lm_batch
    config = model.config
    language_model = model.language_model.to(model.device) if use_lm else None
    shared = BitReader(stream)
    pending = []  # deterministic mode: (index, scale, bits, risky positions, frames)

    def decode_pending():
        if not pending:
            return
        decoders = [(ArithmeticDecoder(bits.read_bit), risky, frames) for _, _, bits, risky, frames in pending]
        decoded = decode_deterministic(language_model, decoders, codebooks)
        for (index, scale, bits, _, _), codes in zip(pending, decoded, strict=True):
            if bits.bytes_used() != len(bits.bits) // 8:
                raise ValueError(
                    f"chunk {index} holds {len(bits.bits) // 8 - bits.bytes_used()} bytes more than its codes"
                )
            yield index, 0, codes, scale
        pending.clear()

    for index, (_, size) in enumerate(plan_chunks(length, config.chunk_length, config.chunk_stride)):
        if version == 0:
            for first, codes, scale in _read_chunk(stream, shared, model, index, size, codebooks, language_model, step):
                yield index, first, codes, scale
            continue
        claimed, checksum = FRAME.unpack(read_exactly(stream, FRAME.size, f"chunk {index}'s frame"))
        expected = None if use_lm else _plain_chunk_bytes(config, size, codebooks)
        # A damaged length would lose the frames after it; without the language model the size is known.
        payload_size = expected if expected is not None else claimed
        if expected is None and claimed > 64 + 4 * _plain_chunk_bytes(config, size, codebooks):
            raise ValueError(
                f"chunk {index}'s frame claims {claimed} bytes, more than a chunk can hold: the file "
                f"is damaged beyond this point"
            )
        payload = read_exactly(stream, payload_size, f"chunk {index}")
        if claimed != payload_size or zlib.crc32(payload) != checksum:
            yield from decode_pending()  # keep the chunks in order
            yield index, 0, None, None  # damaged: the caller silences this chunk
            continue
        source = io.BytesIO(payload)
        if deterministic:
            scale = _read_scale(source, config, index)
            frames = num_frames(size, config.hop_length)
            risky = read_risky_positions(source, frames * codebooks)
            pending.append((index, scale, PayloadBits(source.read()), risky, frames))
            if len(pending) >= lm_batch:
                yield from decode_pending()
            continue
        for first, codes, scale in _read_chunk(
            source, BitReader(source), model, index, size, codebooks, language_model, step
        ):
            yield index, first, codes, scale
        if source.tell() != len(payload):
            raise ValueError(f"chunk {index} holds {len(payload) - source.tell()} bytes more than its codes")
    yield from decode_pending()


def decompress(data: bytes, model: EncodecModel, on_damage: str = "silence", progress=None) -> tuple[np.ndarray, int]:
    """Decode .ecdc bytes with `model`: float32 audio (channels, samples) and its sample rate.

    `on_damage` applies to version-1 files, whose chunks carry a CRC32: "silence" (default) decodes the other
    chunks, silences the damaged ones and logs a warning naming them; "raise" raises a ValueError instead.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ValueError(f"decompress takes bytes, got {type(data).__name__}")
    if on_damage not in ("silence", "raise"):
        raise ValueError(f"on_damage must be 'silence' or 'raise', got {on_damage!r}")
    stream = io.BytesIO(bytes(data))
    header = EcdcHeader.read(stream)
    header.check(model)
    version, length, codebooks, use_lm = header.version, header.audio_length, header.codebooks, header.use_lm
    config = model.config
    plan = plan_chunks(length, config.chunk_length, config.chunk_stride)
    # Before allocating anything, the bytes must be able to hold what the metadata claims.
    remaining = len(data) - stream.tell()
    if not use_lm:
        needed = sum(
            _plain_chunk_bytes(config, size, codebooks) + (FRAME.size if version == 1 else 0) for _, size in plan
        )
        if needed > remaining:
            raise EOFError(f"the file is truncated: its metadata needs {needed} bytes of codes, {remaining} remain")
    else:
        claimed = codebooks * sum(num_frames(size, config.hop_length) for _, size in plan)
        if claimed * MIN_BITS_PER_CODE > 8 * remaining:
            raise ValueError(
                f"the file claims {claimed} codes in {remaining} bytes, more than arithmetic coding can "
                f"pack: its audio length {length} is not plausible"
            )
    frames = num_frames(min(length, config.chunk_length or length), config.hop_length)
    scales = [torch.ones(1, 1)] * len(plan)
    damaged, pieces = [], []
    for index, first, piece, scale in _chunk_pieces(
        stream, model, version, length, codebooks, use_lm, None, header.deterministic
    ):
        if piece is None:
            if on_damage == "raise":
                raise ValueError(f"chunk {index} of the file is damaged (its CRC32 does not match)")
            damaged.append(index)
            continue
        pieces.append((index, first, piece))
        scales[index] = scale
    left = len(data) - stream.tell()
    if left:
        raise ValueError(f"the file has {left} bytes more than its metadata accounts for")
    # Allocated once every chunk has been read: the file held all these codes, so its length was true.
    codes = torch.zeros(len(plan), 1, codebooks, frames, dtype=torch.long)
    for index, first, piece in pieces:
        codes[index, 0, :, first : first + piece.shape[-1]] = piece
    del pieces
    mask = torch.ones(1, length, dtype=torch.bool, device=model.device)
    with torch.inference_mode():
        audio = model.decode(
            codes.to(model.device), scales if config.normalize else None, mask, progress=progress
        ).audio_values
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
    header = EcdcHeader.read(stream)
    header.check(model)
    version, length, codebooks, use_lm = header.version, header.audio_length, header.codebooks, header.use_lm
    config = model.config
    if config.chunk_length is None and not config.use_causal_conv:
        raise ValueError("decoding while reading needs a causal or a chunked model")
    decoder = model.stream_decoder(audio_length=length)
    step = None if config.chunk_length is not None else frames_per_step
    # deterministic files: one chunk at a time, so that audio comes out as each chunk's bytes arrive
    for index, _, codes, scale in _chunk_pieces(
        stream, model, version, length, codebooks, use_lm, step, header.deterministic, lm_batch=1
    ):
        if codes is None:
            raise ValueError(f"chunk {index} of the file is damaged (its CRC32 does not match)")
        piece = decoder.push(codes[None].to(model.device), scale)
        if piece.shape[-1]:
            yield piece[0].cpu().numpy()
    if stream.read(1):  # as decompress: bytes beyond what the metadata accounts for mean a damaged file
        raise ValueError("the file has bytes beyond what its metadata accounts for")
    piece = decoder.flush()
    if piece.shape[-1]:
        yield piece[0].cpu().numpy()


def compress_file(
    model: EncodecModel,
    source: str | Path,
    target: str | Path,
    bandwidth: float | None = None,
    use_lm: bool = False,
    **options,
) -> int:
    """Compress an audio file (anything soundfile reads) to an .ecdc file, written atomically (a failed write
    keeps the old file); returns the bytes written. `options` are `compress`'s (`feature_extractor`,
    `container_version`, `deterministic_lm`, `progress`, `fast_encoding`)."""
    audio, rate = read_audio(source)
    data = compress(model, audio, rate, bandwidth=bandwidth, use_lm=use_lm, **options)
    write_bytes(target, data)
    return len(data)


def decompress_file(
    model: EncodecModel, source: str | Path, target: str | Path | None = None
) -> tuple[np.ndarray, int]:
    """Decode an .ecdc file: float32 audio (channels, samples) and its rate, also written to `target` (16-bit
    WAV, clipped to +-0.99 as EnCodec 0.1.1 saves it) when given."""
    audio, rate = decompress(Path(source).read_bytes(), model)
    if target is not None:
        write_audio(target, audio, rate)
    return audio, rate


__all__ = ["compress", "decompress", "decompress_iter", "compress_codes", "compress_file", "decompress_file"]
