"""Streaming: concatenated streams equal offline encode and decode for any split; the start-up delay; bad use."""

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)

from encodec_hf import (
    EncodecConfig,
    EncodecModel,
)
from encodec_hf.streaming import STARTUP_DELAY_FRAMES
from encodec_hf.testing import requires_original, save_tiny_folder, tiny_config, tiny_model


def split_push(stream, tensor, sizes_seed, max_piece, *extra):
    """Push `tensor` in random pieces along its last axis; return everything the stream gave, flush included."""
    generator = torch.Generator().manual_seed(sizes_seed)
    outputs, position = [], 0
    while position < tensor.shape[-1]:
        size = int(torch.randint(1, max_piece + 1, (1,), generator=generator))
        outputs.append(stream.push(tensor[..., position : position + size], *extra))
        position += size
    outputs.append(stream.flush())
    return outputs


@pytest.fixture(scope="module")
def model_24k(converted):
    _, folder = converted["encodec_24khz"]
    return EncodecModel.from_pretrained(folder).eval()


@pytest.mark.parametrize("length", [1, 5, 37, 319, 320, 1000, 24_000 + 7])
@pytest.mark.parametrize("seed", [0, 1])
def test_causal_streams_equal_offline(model_24k, length, seed):
    x = torch.randn(2, 1, length, generator=torch.Generator().manual_seed(length + seed)) * 0.2
    with torch.inference_mode():
        offline = model_24k.encode(x, bandwidth=6.0).audio_codes[0]  # (B, Q, F)
        reference = model_24k.decode(offline[None], [None], torch.ones(2, length)).audio_values
        codes = torch.cat(split_push(model_24k.stream_encoder(bandwidth=6.0, batch_size=2), x, seed, 700), dim=-1)
        audio = torch.cat(
            split_push(model_24k.stream_decoder(batch_size=2, audio_length=length), offline, seed, 9), dim=-1
        )
    # A stream rounds its shorter windows in another order, so a code whose two nearest entries are almost equally
    # near may flip, and the residual quantizer carries a flip into every later codebook of that frame. Measured:
    # on AMD EPYC none; on an Intel Xeon with AMX, 1 frame of 152 at length 24,007 with seed 0 (the same before and
    # after the streaming layers moved into the layers' own forward). At most 1 frame in 100.
    assert codes.shape == offline.shape
    frames_differing = (codes != offline).any(dim=1).float().mean()
    assert frames_differing <= 0.01
    assert audio.shape == reference.shape
    assert ((audio - reference).norm() / reference.norm()) < 1e-5


def test_tiny_causal_streams_one_sample_at_a_time():
    model = tiny_model()
    x = torch.randn(1, 1, 203) * 0.3
    with torch.inference_mode():
        offline = model.encode(x, bandwidth=0.8).audio_codes[0]
        codes = torch.cat(split_push(model.stream_encoder(bandwidth=0.8), x, 0, 1), dim=-1)
        decoded = torch.cat(split_push(model.stream_decoder(), offline, 0, 1), dim=-1)  # whole frames
        reference = model.decode(offline[None], [None]).audio_values
    assert torch.equal(codes, offline)
    # float rounding differs (windows against whole-clip channels_last kernels): allow 1e-6 of the peak, since
    # random weights make the audio's scale arbitrary (about 10 here)
    torch.testing.assert_close(decoded, reference, rtol=1e-5, atol=1e-6 * float(reference.abs().max()))


def test_startup_delay(model_24k):
    """After n samples, at least floor(n / 320) - D frames are out; after k frames, (k - D) x 320 samples."""
    x = torch.randn(1, 1, 24_000, generator=torch.Generator().manual_seed(0)) * 0.2
    worst_encoder = worst_decoder = 0
    with torch.inference_mode():
        encoder, frames_out = model_24k.stream_encoder(bandwidth=6.0), 0
        for end in range(40, 24_001, 40):
            frames_out += encoder.push(x[..., end - 40 : end]).shape[-1]
            worst_encoder = max(worst_encoder, end // 320 - frames_out)
        codes = model_24k.encode(x, bandwidth=6.0).audio_codes[0]
        decoder, samples_out = model_24k.stream_decoder(), 0
        for k in range(codes.shape[-1]):
            samples_out += decoder.push(codes[..., k : k + 1]).shape[-1]
            worst_decoder = max(worst_decoder, (k + 1) * 320 - samples_out)
    assert worst_encoder == STARTUP_DELAY_FRAMES
    assert worst_decoder == STARTUP_DELAY_FRAMES * 320


@pytest.mark.parametrize("length", [1, 48_000, 47_700, 100_000])
def test_chunk_streams_of_the_48k_model(converted, length):
    _, folder = converted["encodec_48khz"]
    model = EncodecModel.from_pretrained(folder).eval()
    x = torch.randn(1, 2, length, generator=torch.Generator().manual_seed(length)) * 0.2
    with torch.inference_mode():
        offline = model.encode(x, bandwidth=6.0)
        # each chunk alone with the original's operations, in both: bit for bit
        reference = model.decode(
            offline.audio_codes, offline.audio_scales, torch.ones(1, length), fast_decoding=False
        ).audio_values
        encoder = model.stream_encoder(bandwidth=6.0)
        chunks = []
        for piece in split_push(encoder, x, 0, 30_011):
            chunks += piece
        decoder = model.stream_decoder(audio_length=length, fast_decoding=False)
        audio = torch.cat([decoder.push(codes, scale) for codes, scale in chunks] + [decoder.flush()], dim=-1)
    assert len(chunks) == offline.audio_codes.shape[0]
    for index, (codes, scale) in enumerate(chunks):
        assert torch.equal(codes, offline.audio_codes[index, :, :, : codes.shape[-1]])
        assert torch.equal(scale, offline.audio_scales[index])
    assert torch.equal(audio, reference)


def test_bad_use():
    causal = tiny_model()
    encoder = causal.stream_encoder(bandwidth=0.8)
    with pytest.raises(ValueError, match="takes 1-channel audio, got 2 channels"):
        encoder.push(torch.zeros(1, 2, 10))
    with pytest.raises(ValueError, match=r"takes a batch of 1, got 2 \(shape \(2, 1, 10\)\)"):
        encoder.push(torch.zeros(2, 1, 10))
    with pytest.raises(ValueError, match="NaN"):
        encoder.push(torch.full((1, 1, 10), float("nan")))
    encoder.push(torch.zeros(1, 1, 10))
    encoder.flush()
    with pytest.raises(ValueError, match="flushed"):
        encoder.push(torch.zeros(1, 1, 10))
    decoder = causal.stream_decoder()
    with pytest.raises(ValueError, match="codebooks"):
        decoder.push(torch.zeros(1, 5, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        decoder.push(torch.full((1, 2, 3), 16, dtype=torch.long))
    with pytest.raises(ValueError, match="batch of 1"):
        decoder.push(torch.zeros(2, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="bandwidth"):
        causal.stream_encoder(bandwidth=3.0)
    chunked = tiny_model(chunked=True)
    with pytest.raises(ValueError, match="scales"):
        chunked.stream_decoder().push(torch.zeros(1, 2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="causal"):
        EncodecModel(tiny_config(use_causal_conv=False)).stream_encoder()  # neither causal nor chunked


class RecordingReader:
    """A file object that remembers how far it has been read."""

    def __init__(self, data: bytes):
        import io

        self.stream, self.size, self.high_water = io.BytesIO(data), len(data), 0

    def read(self, size=-1):
        out = self.stream.read(size)
        self.high_water = self.stream.tell()
        return out


@pytest.mark.parametrize("chunked", [False, True])
def test_ecdc_decodes_while_it_is_read(chunked):

    from encodec_hf.ecdc import compress, decompress, decompress_iter

    model = tiny_model(chunked=chunked)
    model.set_inference_defaults(fast_decoding=False)
    channels = model.config.audio_channels
    audio = np.random.default_rng(0).standard_normal((channels, 1500)).astype(np.float32) * 0.2
    data = compress(model, audio, 400, bandwidth=0.8)
    reference, _ = decompress(data, model)
    reader = RecordingReader(data)
    pieces, read_when_first = [], None
    for piece in decompress_iter(reader, model, frames_per_step=5):
        if read_when_first is None:
            read_when_first = reader.high_water
        pieces.append(piece)
    assert read_when_first < reader.size  # audio came out before the whole file was read
    streamed = np.concatenate(pieces, axis=-1)
    assert streamed.shape == reference.shape
    assert np.linalg.norm(streamed - reference) / np.linalg.norm(reference) < 1e-5
    with pytest.raises(EOFError):
        list(decompress_iter(RecordingReader(data[:-3]), model))


def test_several_streams_run_at_once_on_one_model():
    """Two encoder and two decoder streams on one model, pushed in turn, each equal to its stream alone."""
    model = tiny_model()
    clips = [torch.randn(1, 1, 500, generator=torch.Generator().manual_seed(seed)) * 0.3 for seed in (0, 1)]
    with torch.inference_mode():
        alone = [torch.cat(split_push(model.stream_encoder(bandwidth=0.8), clip, 0, 37), dim=-1) for clip in clips]
        encoders = [model.stream_encoder(bandwidth=0.8) for _ in clips]
        decoders = [model.stream_decoder(audio_length=500) for _ in clips]
        codes, audio = [[], []], [[], []]
        for start in range(0, 500, 37):
            for k, clip in enumerate(clips):  # interleaved: each stream's state must be its own
                piece = encoders[k].push(clip[..., start : start + 37])
                codes[k].append(piece)
                audio[k].append(decoders[k].push(piece))
        for k in range(2):
            last = encoders[k].flush()
            codes[k].append(last)
            audio[k] += [decoders[k].push(last), decoders[k].flush()]
        reference = [model.decode(c[None], [None], torch.ones(1, 500)).audio_values for c in alone]
    for k in range(2):
        assert torch.equal(torch.cat(codes[k], dim=-1), alone[k])
        streamed = torch.cat(audio[k], dim=-1)
        assert streamed.shape == (1, 1, 500)
        torch.testing.assert_close(streamed, reference[k], rtol=1e-5, atol=1e-6 * float(reference[k].abs().max()))


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True])
def test_stream_example_runs_on_every_kind_of_model(tmp_path, chunked):
    import subprocess
    import sys
    from pathlib import Path

    import soundfile as sf

    example = Path(__file__).resolve().parent.parent / "examples" / "stream.py"
    folder = save_tiny_folder(tmp_path / "model", tiny_model(chunked=chunked))
    channels = 2 if chunked else 1
    sf.write(tmp_path / "in.wav", (np.random.default_rng(0).standard_normal((1234, channels)) * 0.2), 400)
    result = subprocess.run(
        [
            sys.executable,
            str(example),
            str(tmp_path / "in.wav"),
            str(tmp_path / "out.wav"),
            "--model",
            str(folder),
            "--frames-per-push",
            "3",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sf.info(str(tmp_path / "out.wav")).frames == 1234 and "real-time factor" in result.stdout
    help_text = subprocess.run([sys.executable, str(example), "--help"], capture_output=True, text=True).stdout
    assert "chunk by chunk" in help_text and "--frames-per-push" in help_text


def test_long_causal_clips_decode_in_pieces_within_1e5(monkeypatch):
    """Past LONG_DECODE_FRAMES a causal clip goes through the decoder in pieces (bounded memory): the same audio as
    decoding it whole, within 1e-5, for piece boundaries anywhere."""
    import encodec_hf.modeling_encodec as modeling

    model = tiny_model()
    x = torch.randn(2, 1, 4003, generator=torch.Generator().manual_seed(3)) * 0.3  # 1,001 frames
    mask = torch.ones(2, 4003)
    with torch.inference_mode():
        enc = model.encode(x, mask, bandwidth=0.8)
        whole = model.decode(enc.audio_codes, enc.audio_scales, mask, fast_decoding=False).audio_values
        monkeypatch.setattr(modeling, "LONG_DECODE_FRAMES", 100)
        for piece in (7, 250):
            monkeypatch.setattr(modeling, "DECODE_PIECE_FRAMES", piece)
            pieces = model.decode(enc.audio_codes, enc.audio_scales, mask).audio_values
            assert pieces.shape == whole.shape
            assert ((pieces - whole).norm() / whole.norm()) < 1e-5, piece


def test_long_causal_clips_encode_in_pieces_to_the_same_codes(monkeypatch):
    """Past LONG_ENCODE_FRAMES the exact path encodes a causal clip in pieces (bounded memory): the same codes as
    encoding it whole, for piece boundaries anywhere, and the progress moves piece by piece."""
    import encodec_hf.modeling_encodec as modeling

    model = tiny_model()
    x = torch.randn(2, 1, 4003, generator=torch.Generator().manual_seed(4)) * 0.3  # 1,001 frames
    mask = torch.ones(2, 4003)
    mask[1, 3000:] = 0
    with torch.inference_mode():
        whole = model.encode(x, mask, bandwidth=0.8).audio_codes
        monkeypatch.setattr(modeling, "LONG_ENCODE_FRAMES", 100)
        for piece in (7, 250):
            monkeypatch.setattr(modeling, "ENCODE_PIECE_FRAMES", piece)
            reports = []
            pieces = model.encode(x, mask, bandwidth=0.8, progress=lambda *a, seen=reports: seen.append(a[1:]))
            pieces = pieces.audio_codes
            assert torch.equal(pieces, whole), piece
            assert len(reports) >= (4003 + 3000) // (4 * piece) and reports[-1] == (2, 2)  # a report a piece


@requires_original()
@pytest.mark.slow
def test_long_24khz_clips_encode_in_pieces_to_the_originals_codes(converted):
    """The full-size 24 kHz model on 62 s of noise (past the 60 s threshold: 13 pieces of 5 s, the last short) give
    EnCodec 0.1.1's codes."""
    original, folder = converted["encodec_24khz"]
    model = EncodecModel.from_pretrained(folder).eval()
    audio = torch.randn(1, 1, 62 * 24_000, generator=torch.Generator().manual_seed(5)) * 0.2
    original.set_target_bandwidth(6.0)
    with torch.no_grad():
        theirs = original.encode(audio)[0][0]  # (1, Q, F)
        ours = model.encode(audio, bandwidth=6.0).audio_codes[0]
    assert torch.equal(ours, theirs)


MEMORY_PROBE = """
import sys, torch
from encodec_hf import EncodecModel
def peak_mb():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) / 1024
model = EncodecModel.from_pretrained(sys.argv[1]).eval()
size = int(sys.argv[2])
base = peak_mb()
with torch.inference_mode():
    WORK
print(peak_mb() - base, length)
"""
ENCODE_SECONDS = """audio = torch.randn(1, 1, size * 24000, generator=torch.Generator().manual_seed(0)) * 0.2
    length = model.encode(audio, bandwidth=1.5).audio_codes.shape[-1]"""
DECODE_FRAMES = """codes = torch.randint(0, 1024, (1, 1, 2, size), generator=torch.Generator().manual_seed(0))
    length = model.decode(codes, [None]).audio_values.shape[-1]"""


def peak_growth_mb(folder, work: str, size: int) -> tuple[float, int]:
    """How much a fresh process's peak resident memory (VmHWM, its own: getrusage's ru_maxrss would carry the
    peak of the pytest process that started it across exec) grows while it runs `work` on `size`, and the length
    of what it made."""
    import subprocess
    import sys

    code = MEMORY_PROBE.replace("WORK", work)
    out = subprocess.run([sys.executable, "-c", code, str(folder), str(size)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    grown, length = out.stdout.split()
    return float(grown), int(length)


@pytest.fixture
def full_size_24khz_folder(tmp_path):
    folder = tmp_path / "model"
    EncodecModel(EncodecConfig.from_preset("encodec_24khz")).save_pretrained(folder)
    return folder


@pytest.mark.slow
def test_memory_of_a_long_encode_is_bounded(full_size_24khz_folder):
    """The 24 kHz architecture: two minutes encoded in pieces raise the peak memory less than one minute encoded
    whole (whole, two minutes would take about twice as much)."""
    one_minute, frames = peak_growth_mb(full_size_24khz_folder, ENCODE_SECONDS, 60)
    two_minutes, more_frames = peak_growth_mb(full_size_24khz_folder, ENCODE_SECONDS, 120)
    assert (frames, more_frames) == (60 * 75, 120 * 75)
    assert one_minute > 100, one_minute  # the measurement sees the encode at all
    assert two_minutes < one_minute, (one_minute, two_minutes)


@pytest.mark.slow
def test_memory_of_a_long_decode_is_bounded(full_size_24khz_folder):
    """The 24 kHz architecture (random weights): three minutes, decoded in pieces, raise the peak memory less than
    1.5 x one minute decoded whole."""
    one_minute, samples = peak_growth_mb(full_size_24khz_folder, DECODE_FRAMES, 4500)
    three_minutes, more_samples = peak_growth_mb(full_size_24khz_folder, DECODE_FRAMES, 13_500)
    assert (samples, more_samples) == (4500 * 320, 13_500 * 320)
    assert one_minute > 100, one_minute  # the measurement sees the decode at all
    assert three_minutes < 1.5 * one_minute, (one_minute, three_minutes)


def test_stepwise_lstm_matches_torch_lstm():
    """The matrix-product steps a stream's short pushes use give torch.lstm's outputs and state within float
    rounding, from a fresh or a carried state."""
    from encodec_hf.layers import EncodecLSTMLayers

    torch.manual_seed(0)
    layers = EncodecLSTMLayers(16, 16, 2)
    for param in layers.parameters():
        torch.nn.init.uniform_(param, -0.3, 0.3)
    sequence = torch.randn(3, 2, 16)
    state = (torch.randn(2, 2, 16), torch.randn(2, 2, 16))
    with torch.no_grad():
        for start in (None, state):
            out, (hidden, cell) = layers(sequence, start)
            steps, (step_hidden, step_cell) = layers(sequence, start, stepwise=True)
            torch.testing.assert_close(steps, out, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(step_hidden, hidden, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(step_cell, cell, rtol=1e-6, atol=1e-6)


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def test_a_one_frame_push_does_not_run_torch_lstm(monkeypatch):
    """24 kHz frame streams ran below real time; most of a push went to torch.lstm's per-call cost (3 ms on CPU for
    the 24 kHz LSTM). A push of a few frames steps the LSTM with matrix products (the timing itself:
    docs/streaming.md); offline encoding keeps torch.lstm, the original's kernel."""
    model = tiny_model()
    calls = []
    real = torch.lstm
    monkeypatch.setattr(torch, "lstm", lambda *args: calls.append(1) or real(*args))
    encoder = model.stream_encoder(bandwidth=0.8)
    x = torch.randn(1, 1, 40) * 0.3
    for start in range(0, 40, 4):  # one frame (hop 4) a push
        encoder.push(x[..., start : start + 4])
    assert calls == []
    with torch.no_grad():
        model.encode(x, bandwidth=0.8)
    assert calls
