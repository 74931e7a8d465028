"""Audio files in and out, for the command line, the .ecdc file functions and dataset tokenization alike.

soundfile (libsndfile) reads and writes every format it knows (WAV, FLAC, OGG/Vorbis, MP3 with libsndfile >= 1.1);
audio is float32 shaped (channels, samples), as the feature extractor takes it.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path

import numpy as np

SUBTYPES = {"pcm16": "PCM_16", "float": "FLOAT"}


def read_audio(source: str | Path | bytes | io.IOBase) -> tuple[np.ndarray, int]:
    """Read a file (a path, the file's bytes, or a file object): float32 (channels, samples) and its rate.

    Raises ValueError with the source named when soundfile cannot read it.
    """
    import soundfile

    data, rate = _with_soundfile(source, lambda opened: soundfile.read(opened, dtype="float32", always_2d=True))
    return np.ascontiguousarray(data.T), int(rate)  # (T, C) -> (C, T)


def audio_seconds(source: str | Path) -> float:
    """A file's duration in seconds, from its header (nothing decoded); errors as `read_audio`'s."""
    import soundfile

    return float(_with_soundfile(source, soundfile.info).duration)


def _with_soundfile(source, call):
    """`call(source)` in the form soundfile takes; a ValueError naming the source when soundfile cannot read it."""
    import soundfile

    if isinstance(source, (bytes, bytearray)):
        name = "the audio bytes"
    else:  # a path as given; a file object by its name
        name = repr(str(source if isinstance(source, (str, Path)) else getattr(source, "name", source)))
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, Path):
        source = str(source)
    if isinstance(source, str) and not os.path.exists(source):
        raise ValueError(f"cannot read audio from {name}: no such file")  # libsndfile would say "System error"
    try:
        return call(source)
    except (OSError, RuntimeError, soundfile.LibsndfileError) as error:
        raise ValueError(f"cannot read audio from {name}: {error}") from error


@contextlib.contextmanager
def atomic_target(target: str | Path):
    """A temporary path beside `target` (same folder, same extension) to write to; renamed over `target` when the
    block ends without error, removed otherwise. A full disk or a kill then leaves the old file (or none), never a
    truncated one."""
    target = Path(target)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(handle)
    try:
        yield Path(name)
        os.replace(name, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


def write_bytes(target: str | Path, data: bytes) -> None:
    """Write `data` to `target` atomically (`atomic_target`)."""
    with atomic_target(target) as temporary:
        temporary.write_bytes(data)


def write_audio(target: str | Path, audio, sample_rate: int, subtype: str = "pcm16") -> None:
    """Write (channels, samples) float audio: 16-bit PCM clipped to +-0.99 as EnCodec 0.1.1 saves it ("pcm16", the
    default), or 32-bit float unclipped ("float"). The format follows the file name's extension (WAV, FLAC, ...).

    Raises ValueError with the target named when soundfile cannot write it.
    """
    import soundfile

    if subtype not in SUBTYPES:
        raise ValueError(f"subtype must be one of {', '.join(SUBTYPES)}, got {subtype!r}")
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 2:
        raise ValueError(f"write_audio takes audio shaped (channels, samples), got shape {audio.shape}")
    if subtype == "pcm16":
        audio = np.clip(audio, -0.99, 0.99)
    try:
        with atomic_target(target) as temporary:
            soundfile.write(str(temporary), audio.T, sample_rate, subtype=SUBTYPES[subtype])
    except (OSError, RuntimeError, TypeError, ValueError, soundfile.LibsndfileError) as error:
        raise ValueError(f"cannot write audio to {str(target)!r}: {error}") from error


__all__ = ["read_audio", "write_audio", "write_bytes", "atomic_target"]
