"""The .ecdc format without the language model: byte-identical to EnCodec 0.1.1, readable both ways, and a reader
that fails cleanly on anything else (fuzzed with hypothesis)."""

import io
import struct
import sys

import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from encodec_hf import EncodecModel
from encodec_hf.cli import main
from encodec_hf.ecdc import compress, decompress, pack_bits, unpack_bits, write_header
from encodec_hf.ecdc.container import HEADER
from encodec_hf.testing import original_language_model, requires_original, save_tiny_folder, speech_clip, tiny_model


def test_pack_bits_worked_example_and_round_trip():
    assert pack_bits([1, 2], 10) == bytes([0x01, 0x08, 0x00])
    rng = np.random.default_rng(0)
    for bits in (1, 3, 10, 11, 16):
        values = rng.integers(0, 1 << bits, 333)
        assert (unpack_bits(pack_bits(values, bits), bits, 333) == values).all()
    with pytest.raises(EOFError):
        unpack_bits(b"\x00", 10, 2)
    with pytest.raises(ValueError):
        pack_bits([1024], 10)


@requires_original()
def test_bit_packing_is_the_originals():
    from encodec import binary

    values = np.random.default_rng(1).integers(0, 1024, 1001)
    stream = io.BytesIO()
    packer = binary.BitPacker(10, stream)
    for value in values.tolist():
        packer.push(value)
    packer.flush()
    assert stream.getvalue() == pack_bits(values, 10)


@pytest.mark.parity
@pytest.mark.parametrize("name", ["encodec_24khz", "encodec_48khz"])
def test_byte_identical_to_the_original_and_reads_its_files(converted, name):
    original, folder = converted[name]
    original_compress = sys.modules["encodec.compress"]
    model = EncodecModel.from_pretrained(folder).eval()
    rate, channels = original.sample_rate, original.channels
    original.name = name  # random-weight models are named "unset"; the format records the model's name
    generator = torch.Generator().manual_seed(3)
    cases = [(length, bandwidth) for length in (1, 333, rate + 17) for bandwidth in original.target_bandwidths]
    cases.append((int(2.3 * rate), original.target_bandwidths[1]))  # several chunks, a short last one
    for length, bandwidth in cases:
        audio = torch.randn(channels, length, generator=generator) * 0.2
        original.set_target_bandwidth(bandwidth)
        with torch.no_grad():
            theirs = original_compress.compress(original, audio, use_lm=False)
            expected = original.decode(original.encode(audio[None]))[0, :, :length].numpy()
        ours = compress(model, audio.numpy(), rate, bandwidth=bandwidth)
        assert ours == theirs, (length, bandwidth)
        decoded, decoded_rate = decompress(theirs, model)
        assert decoded_rate == rate and decoded.shape == expected.shape
        assert np.linalg.norm(decoded - expected) / np.linalg.norm(expected) < 1e-5


@pytest.fixture(scope="module")
def tiny():
    return tiny_model(chunked=True)


@pytest.fixture(scope="module")
def good_file(tiny):
    audio = np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32) * 0.2
    return compress(tiny, audio, 400, bandwidth=0.8)


def test_round_trip(tiny, good_file):
    audio, rate = decompress(good_file, tiny)
    assert rate == 400 and audio.shape == (2, 1000) and audio.dtype == np.float32
    with torch.no_grad():
        x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1000)).astype(np.float32) * 0.2)[None]
        expected = tiny(x, bandwidth=0.8).audio_values[0].numpy()
    np.testing.assert_allclose(audio, expected, rtol=1e-5, atol=1e-6)


def rewrite(data: bytes, version: int | None = None, **changes) -> bytes:
    """The same file with its metadata (and version, if given) changed."""
    import json

    _, old_version, size = HEADER.unpack(data[: HEADER.size])
    metadata = json.loads(data[HEADER.size : HEADER.size + size])
    metadata.update(changes)
    stream = io.BytesIO()
    write_header(stream, metadata, old_version if version is None else version)
    return stream.getvalue() + data[HEADER.size + size :]


def test_bad_files(tiny, good_file):
    other = tiny_model(sampling_rate=800)
    cases = [
        (good_file[:-1], EOFError, "truncated"),
        (good_file[:5], EOFError, "header"),
        (b"", EOFError, "header"),
        (b"RIFF" + good_file[4:], ValueError, "not an EnCodec file"),
        (good_file[:4] + b"\x02" + good_file[5:], ValueError, "version 2 is not supported"),
        (good_file + b"\x00", ValueError, "more than its metadata accounts for"),
        (rewrite(good_file, al=10**12), ValueError, "audio length"),
        (rewrite(good_file, al=2000), EOFError, "truncated"),
        (rewrite(good_file, al=-5), ValueError, "audio length"),
        (rewrite(good_file, nc=7), ValueError, "codebook count"),
        # fewer codebooks than written: the reader runs out of chunks early, or reads code bytes as a scale
        (rewrite(good_file, nc=1), ValueError, "more than its metadata|is not a positive finite number"),
        (rewrite(good_file, lm=True), ValueError, "language model"),
        (rewrite(good_file, lm="yes"), ValueError, "'lm' field"),
        (rewrite(good_file, m="encodec_48khz"), ValueError, "made with 'encodec_48khz'"),
        (good_file[:5] + struct.pack("!I", 10**9) + good_file[9:], ValueError, "metadata"),
        (good_file[:9] + b"{not json" + good_file[18:], ValueError, "JSON"),
    ]
    for data, error, message in cases:
        with pytest.raises(error, match=message):
            decompress(data, tiny)
    with pytest.raises(ValueError, match="made with"):
        decompress(good_file, other)
    nan_scale = bytearray(good_file)
    start = HEADER.size + HEADER.unpack(good_file[: HEADER.size])[2]  # the first chunk's scale follows the metadata
    nan_scale[start : start + 4] = struct.pack("!f", float("nan"))
    with pytest.raises(ValueError, match="scale"):
        decompress(bytes(nan_scale), tiny)


@pytest.mark.slow
@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_fuzzed_files_fail_cleanly(tiny, good_file, data):
    """Mutated files decode to audio of the promised shape or raise ValueError / EOFError: nothing else."""
    mutated = bytearray(good_file)
    for _ in range(data.draw(st.integers(1, 4))):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        position = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if kind == "flip" and mutated:
            mutated[position] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set" and mutated:
            mutated[position] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            mutated[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and mutated:
            del mutated[position : position + data.draw(st.integers(1, 8))]
        elif kind == "truncate":
            del mutated[position:]
    try:
        audio, rate = decompress(bytes(mutated), tiny)
    except (ValueError, EOFError):
        return
    assert rate == 400 and audio.ndim == 2 and audio.shape[0] == 2 and np.isfinite(audio).all()


def test_cli_compress_decompress(tmp_path, tiny, capsys):
    import soundfile as sf

    folder = save_tiny_folder(tmp_path / "model", tiny)
    audio = np.random.default_rng(0).standard_normal((2000, 2)).astype(np.float32) * 0.2
    sf.write(tmp_path / "in.wav", audio, 400, subtype="FLOAT")
    assert (
        main(["compress", str(tmp_path / "in.wav"), str(tmp_path / "x.ecdc"), "--model", str(folder), "-b", "0.8"]) == 0
    )
    out = capsys.readouterr().out
    size = (tmp_path / "x.ecdc").stat().st_size
    assert f"{size:,} bytes for 5.00 s" in out and f"{8 * size / 5 / 1000:.2f} kbps" in out
    assert main(["decompress", str(tmp_path / "x.ecdc"), str(tmp_path / "out.wav"), "--model", str(folder)]) == 0
    written, rate = sf.read(tmp_path / "out.wav", always_2d=True)
    assert rate == 400 and written.shape == (2000, 2)
    decoded, _ = decompress((tmp_path / "x.ecdc").read_bytes(), tiny)
    np.testing.assert_allclose(written.T, np.clip(decoded, -0.99, 0.99), atol=1 / 32768 + 1e-6)
    assert main(["decompress", str(tmp_path / "x.ecdc"), str(tmp_path / "loud.wav"), "--model", str(folder), "-r"]) == 0
    loud, _ = sf.read(tmp_path / "loud.wav", always_2d=True)
    assert np.abs(loud).max() <= 0.99 + 1e-4
    capsys.readouterr()
    for args, message in [
        (["compress", str(tmp_path / "in.wav"), str(tmp_path / "x.ecdc"), "--model", str(folder)], "pass -f"),
        (
            ["compress", str(tmp_path / "in.wav"), str(tmp_path / "y.ecdc"), "--model", str(folder), "--lm"],
            "language model",
        ),
        (
            ["decompress", str(tmp_path / "in.wav"), str(tmp_path / "z.wav"), "--model", str(folder)],
            "not an EnCodec file",
        ),
    ]:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert message in err and err.strip().count("\n") == 0, err


# -- with the entropy-coding language model -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def with_lm(converted, tmp_path_factory):
    """{name: (original model with a random LM attached, our folder converted with --lm-checkpoint)}."""
    from encodec_hf.convert_encodec import convert_checkpoint

    out = {}
    for name in ("encodec_24khz", "encodec_48khz"):
        original, _ = converted[name]
        lm = original_language_model(original)
        root = tmp_path_factory.mktemp(f"{name}-lm")
        torch.save(original.state_dict(), root / "model.th")
        torch.save(lm.state_dict(), root / "lm.th")
        convert_checkpoint(root / "model.th", name, root / "hf", lm_checkpoint=root / "lm.th")
        out[name] = (original, lm, root / "hf")
    return out


def _speech(rate: int, channels: int, seconds: float) -> torch.Tensor:
    """Real speech (espeak-ng) at `rate`, `channels` channels, cut or looped to `seconds`."""
    import shutil

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it as root)")
    return speech_clip(rate, channels, seconds)


@pytest.mark.parity
@pytest.mark.parametrize(
    ("name", "source", "bandwidth", "threads"),
    [
        ("encodec_24khz", "noise", 6.0, 2),
        ("encodec_48khz", "noise", 6.0, 1),
        ("encodec_24khz", "speech", 6.0, 1),
        ("encodec_48khz", "speech", 12.0, 2),
    ],
)
def test_language_model_files_match_the_original_both_ways(with_lm, name, source, bandwidth, threads, monkeypatch):
    """The official language-model architecture (5 layers of 200, 8 heads, 3.5 s of context): files byte for
    byte the original's, on noise and on real speech, at 1 and 2 threads, and each side reads the other's."""
    original, lm, folder = with_lm[name]
    original_compress = sys.modules["encodec.compress"]
    monkeypatch.setattr(original, "name", name)
    monkeypatch.setattr(original, "get_lm_model", lambda: lm)  # the original downloads its LM; ours is random
    monkeypatch.setitem(original_compress.MODELS, name, lambda: original)  # and builds its model by name
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = EncodecModel.from_pretrained(folder).eval()
        assert model.language_model is not None
        if source == "noise":
            generator = torch.Generator().manual_seed(9)
            audio = torch.randn(original.channels, int(1.1 * original.sample_rate), generator=generator) * 0.2
        else:
            audio = _speech(original.sample_rate, original.channels, 3.1)
        original.set_target_bandwidth(bandwidth)
        with torch.no_grad():
            theirs = original_compress.compress(original, audio, use_lm=True)
        ours = compress(model, audio.numpy(), original.sample_rate, bandwidth=bandwidth, use_lm=True)
        assert ours == theirs  # byte for byte
        plain = compress(model, audio.numpy(), original.sample_rate, bandwidth=bandwidth)
        assert len(ours) != len(plain)  # the coded stream really is a different encoding of the same codes
        decoded, _ = decompress(theirs, model)
        reference, _ = decompress(plain, model)
        np.testing.assert_array_equal(decoded, reference)  # same codes, same audio
        with torch.no_grad():
            their_view, _ = original_compress.decompress(ours)
        assert np.linalg.norm(their_view.numpy() - reference) / np.linalg.norm(reference) < 1e-5
    finally:
        torch.set_num_threads(previous_threads)


@pytest.mark.parity
@pytest.mark.parametrize("name", ["encodec_24khz", "encodec_48khz"])
def test_deterministic_mode_on_the_full_size_models(with_lm, name):
    """The official architecture (5 layers, 1024 entries, 3.5 s of context) in the deterministic mode: the file
    decodes to the codes the model encoded, and few positions are risky."""
    from encodec_hf.language_model import DeterministicRunner

    _, _, folder = with_lm[name]
    model = EncodecModel.from_pretrained(folder).eval()
    rate, channels = model.config.sampling_rate, model.config.audio_channels
    audio = np.random.default_rng(4).standard_normal((channels, int(2.2 * rate))).astype(np.float32) * 0.2
    coded = compress(model, audio, rate, bandwidth=6.0, use_lm=True, container_version=1)
    plain = compress(model, audio, rate, bandwidth=6.0)
    np.testing.assert_array_equal(decompress(coded, model)[0], decompress(plain, model)[0])
    codes = torch.randint(0, 1025, (2, 8, 60))
    with torch.inference_mode():
        probabilities = DeterministicRunner(model.language_model, 2, max_block=60)(codes)
        reference, _, _ = model.language_model(codes, None, 0)  # the original's float32 computation
    assert (probabilities - reference.permute(0, 3, 2, 1).double()).abs().max() < 1e-5


def test_language_model_needed_and_converted_strictly(tmp_path, good_file):
    from encodec_hf.convert_encodec import convert_language_model
    from encodec_hf.language_model import EncodecLanguageModel

    tiny = tiny_model(chunked=True)
    with pytest.raises(ValueError, match="--lm-checkpoint"):
        compress(tiny, np.zeros((2, 100), np.float32), 400, bandwidth=0.8, use_lm=True)
    with pytest.raises(ValueError, match="has none"):
        decompress(rewrite(good_file, lm=True), tiny)
    lm = EncodecLanguageModel.for_model(tiny.config)
    state = lm.state_dict()
    torch.save({k: v for k, v in state.items() if k != "linears.0.bias"}, tmp_path / "missing.th")
    with pytest.raises(ValueError, match="missing tensor 'linears.0.bias'"):
        convert_language_model(tmp_path / "missing.th", tiny.config, tmp_path)
    torch.save(dict(state, extra=torch.zeros(1)), tmp_path / "extra.th")
    with pytest.raises(ValueError, match="unused tensor 'extra'"):
        convert_language_model(tmp_path / "extra.th", tiny.config, tmp_path)
    torch.save(dict(state, **{"emb.0.weight": torch.zeros(3, 200)}), tmp_path / "shape.th")
    with pytest.raises(ValueError, match="shape mismatch for 'emb.0.weight'"):
        convert_language_model(tmp_path / "shape.th", tiny.config, tmp_path)


@pytest.fixture(scope="module")
def tiny_with_lm(tmp_path_factory):
    from encodec_hf.language_model import EncodecLanguageModel

    folder = save_tiny_folder(tmp_path_factory.mktemp("tiny-lm") / "model")
    torch.manual_seed(1)
    EncodecLanguageModel.for_model(EncodecModel.from_pretrained(folder).config).eval().save_pretrained(
        folder / "language_model"
    )
    model = EncodecModel.from_pretrained(folder).eval()
    audio = np.random.default_rng(0).standard_normal((2, 500)).astype(np.float32) * 0.2  # 2 chunks, 225 frames
    return model, compress(model, audio, 400, bandwidth=0.8, use_lm=True), compress(model, audio, 400, bandwidth=0.8)


def test_language_model_file_with_a_lying_length(tiny_with_lm):
    """No byte count bounds an entropy-coded file: its claimed length is checked against what its bytes could
    carry before anything is allocated."""
    model, coded, _ = tiny_with_lm
    with pytest.raises(ValueError, match="audio length 30000000 is not plausible"):
        decompress(rewrite(coded, al=30_000_000), model)


def test_language_model_round_trip_and_streaming(tiny_with_lm):
    from encodec_hf.ecdc import decompress_iter

    model, coded, plain = tiny_with_lm
    decoded, _ = decompress(coded, model)
    np.testing.assert_array_equal(decoded, decompress(plain, model)[0])
    streamed = np.concatenate(list(decompress_iter(io.BytesIO(coded), model)), axis=-1)
    assert np.linalg.norm(streamed - decoded) / np.linalg.norm(decoded) < 1e-5


@pytest.mark.slow
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_fuzzed_language_model_files_fail_cleanly(tiny_with_lm, data):
    model, coded, _ = tiny_with_lm
    mutated = bytearray(coded)
    position = data.draw(st.integers(0, len(mutated) - 1))
    kind = data.draw(st.sampled_from(["flip", "truncate", "insert"]))
    if kind == "flip":
        mutated[position] ^= 1 << data.draw(st.integers(0, 7))
    elif kind == "truncate":
        del mutated[position:]
    else:
        mutated[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        audio, _ = decompress(bytes(mutated), model)
    except (ValueError, EOFError):
        return
    assert audio.shape[0] == 2 and np.isfinite(audio).all()


# -- version 1: chunks framed with their length and a CRC32 --------------------------------------------------------


@pytest.fixture(scope="module")
def framed(tiny):
    audio = np.random.default_rng(2).standard_normal((2, 1000)).astype(np.float32) * 0.2  # 3 chunks
    return (
        audio,
        compress(tiny, audio, 400, bandwidth=0.8),
        compress(tiny, audio, 400, bandwidth=0.8, container_version=1),
    )


def chunk_offsets(tiny, data):
    """Where each framed chunk's payload starts, read from the frames."""
    from encodec_hf.ecdc.container import FRAME

    position = HEADER.size + HEADER.unpack(data[: HEADER.size])[2]
    offsets = []
    while position < len(data):
        size, _ = FRAME.unpack(data[position : position + FRAME.size])
        offsets.append(position + FRAME.size)
        position += FRAME.size + size
    return offsets


def test_version_1_round_trip(tiny, framed):
    _, plain, data = framed
    assert data[4] == 1 and len(data) == len(plain) + 3 * 8
    np.testing.assert_array_equal(decompress(data, tiny)[0], decompress(plain, tiny)[0])


def test_a_damaged_byte_loses_one_chunk(tiny, framed, caplog):
    from encodec_hf.processing import plan_chunks

    _, plain, data = framed
    reference, _ = decompress(plain, tiny)
    offsets = chunk_offsets(tiny, data)
    damaged = bytearray(data)
    damaged[offsets[1] + 5] ^= 0x40  # one bit in the second chunk's codes
    audio, _ = decompress(bytes(damaged), tiny)
    ((start, size),) = [plan_chunks(1000, 400, 360)[1]]
    assert (audio[:, start : start + size] == 0).all()
    np.testing.assert_array_equal(audio[:, :start], reference[:, :start])
    np.testing.assert_array_equal(audio[:, start + size :], reference[:, start + size :])
    with pytest.raises(ValueError, match="chunk 1 of the file is damaged"):
        decompress(bytes(damaged), tiny, on_damage="raise")
    # a damaged length field: without the language model the chunk's size is known, so the rest stays in sync
    length_damaged = bytearray(data)
    length_damaged[offsets[0] - 8] ^= 0x01
    audio, _ = decompress(bytes(length_damaged), tiny)
    start, size = plan_chunks(1000, 400, 360)[0]
    assert (audio[:, :size] == 0).all()
    np.testing.assert_array_equal(audio[:, size:], reference[:, size:])


def test_version_1_with_the_language_model(tiny_with_lm):
    model, coded, plain = tiny_with_lm
    audio = np.random.default_rng(0).standard_normal((2, 500)).astype(np.float32) * 0.2
    framed_lm = compress(model, audio, 400, bandwidth=0.8, use_lm=True, container_version=1)
    np.testing.assert_array_equal(decompress(framed_lm, model)[0], decompress(plain, model)[0])
    damaged = bytearray(framed_lm)
    damaged[-3] ^= 0x10  # the last chunk's stream
    decoded, _ = decompress(bytes(damaged), model)
    assert np.isfinite(decoded).all() and (decoded[:, -10:] == 0).all()


def mutate(data: bytes, draw) -> bytes:
    """1 to 3 random edits of `data`: a flipped bit, up to 6 inserted bytes, or up to 6 deleted."""
    mutated = bytearray(data)
    for _ in range(draw.draw(st.integers(1, 3))):
        position = draw.draw(st.integers(0, max(0, len(mutated) - 1)))
        kind = draw.draw(st.sampled_from(["flip", "insert", "delete"]))
        if kind == "flip" and mutated:
            mutated[position] ^= 1 << draw.draw(st.integers(0, 7))
        elif kind == "insert":
            mutated[position:position] = draw.draw(st.binary(min_size=1, max_size=6))
        elif mutated:
            del mutated[position : position + draw.draw(st.integers(1, 6))]
    return bytes(mutated)


@pytest.mark.slow
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_fuzzed_version_1_files_fail_cleanly(tiny, framed, data):
    try:
        audio, _ = decompress(mutate(framed[2], data), tiny)
    except (ValueError, EOFError):
        return
    assert audio.shape == (2, 1000) and np.isfinite(audio).all()


# -- the language model's deterministic mode (version 1) -----------------------------------------------------------


def test_deterministic_cdf_worked_example():
    from encodec_hf.ecdc.coder import deterministic_cdf

    cdf, risky = deterministic_cdf(torch.tensor([[0.3, 0.7], [0.25, 0.75]], dtype=torch.float64))
    assert cdf[0].tolist() == [5032960, 16776959] and risky.tolist() == [False, True]
    with pytest.raises(ValueError, match="float64"):
        deterministic_cdf(torch.tensor([0.5, 0.5]))


def test_deterministic_cdf_is_the_originals_formula_in_integers():
    """With probabilities already on the 2**-16 grid, the ranges are `quantized_cdf`'s (the original's formula)."""
    from encodec_hf.ecdc.coder import deterministic_cdf, quantized_cdf

    generator = torch.Generator().manual_seed(0)
    for card, temperature in ((1024, 1.0), (1024, 8.0), (16, 3.0)):
        pdf = torch.softmax(temperature * torch.randn(50, card, generator=generator, dtype=torch.float64), -1)
        cdf, risky = deterministic_cdf(pdf.clone())
        grid = (pdf * 2**16).floor() / 2**16
        for row in range(50):
            assert cdf[row].long().tolist() == quantized_cdf(grid[row], roundoff=2**-16), (card, row)
            assert int(cdf[row, -1]) <= 2**24
        near = ((pdf * 2**16 - (pdf * 2**16).round()).abs() < 2**-24) & ((pdf * 2**16).round() >= 1)
        assert risky.tolist() == near.any(-1).tolist()


def test_deterministic_runner_is_the_language_model_in_float64():
    """Teacher-forced blocks of any size, one frame at a time, batched or alone: the same probabilities up to
    float64 rounding, and the original's streaming computation (our module, float32) up to float32 rounding; a
    short past context makes the attention window slide."""
    from encodec_hf.language_model import DeterministicRunner, EncodecLanguageModel, EncodecLanguageModelConfig

    torch.manual_seed(0)
    lm = EncodecLanguageModel(EncodecLanguageModelConfig(num_codebooks=4, codebook_size=64, past_context=7)).eval()
    previous = torch.randint(0, 65, (3, 3, 40))  # (B, K, T): 3 of the 4 codebooks, as a file at a lower bandwidth
    with torch.inference_mode():
        whole = DeterministicRunner(lm, 3, max_block=40)(previous)  # (B, T, K, card)
        runner = DeterministicRunner(lm, 3, max_block=6)
        blocks = torch.cat([runner(previous[..., t : t + 6]) for t in range(0, 40, 6)], dim=1)
        runner = DeterministicRunner(lm, 1)
        alone = torch.cat([runner(previous[1:2, :, t : t + 1]) for t in range(40)], dim=1)
        states, offset, steps = None, 0, []
        for t in range(40):
            probabilities, states, offset = lm(previous[..., t : t + 1], states, offset)
            steps.append(probabilities)
    module = torch.cat(steps, dim=-1).permute(0, 3, 2, 1).double()  # (B, card, K, T) -> (B, T, K, card)
    assert whole.dtype == torch.float64 and whole.shape == (3, 40, 3, 64)
    assert (whole - blocks).abs().max() < 1e-14 and (whole[1:2] - alone).abs().max() < 1e-14
    assert (whole - module).abs().max() < 1e-5
    with pytest.raises(ValueError, match="blocks of at most 6 frames"):
        DeterministicRunner(lm, 3, max_block=6)(previous[..., :7])


@pytest.fixture(scope="module")
def deterministic(tiny_with_lm):
    model, _, plain = tiny_with_lm
    audio = np.random.default_rng(0).standard_normal((2, 500)).astype(np.float32) * 0.2
    return model, audio, compress(model, audio, 400, bandwidth=0.8, use_lm=True, container_version=1), plain


def metadata_of(data: bytes) -> dict:
    import json

    size = HEADER.unpack(data[: HEADER.size])[2]
    return json.loads(data[HEADER.size : HEADER.size + size])


def test_deterministic_files_round_trip(deterministic):
    from encodec_hf.ecdc import decompress_iter

    model, audio, coded, plain = deterministic
    assert coded[4] == 1 and metadata_of(coded)["dlm"] == 1
    reference, _ = decompress(plain, model)
    np.testing.assert_array_equal(decompress(coded, model)[0], reference)  # the same codes
    streamed = np.concatenate(list(decompress_iter(io.BytesIO(coded), model)), axis=-1)
    assert np.abs(streamed - reference).max() < 1e-5
    exact = compress(model, audio, 400, bandwidth=0.8, use_lm=True, container_version=1, deterministic_lm=False)
    assert "dlm" not in metadata_of(exact)
    np.testing.assert_array_equal(decompress(exact, model)[0], reference)
    with pytest.raises(ValueError, match=r"needs use_lm=True \(--lm\) and container_version=1"):
        compress(model, audio, 400, bandwidth=0.8, use_lm=True, deterministic_lm=True)


def test_deterministic_bytes_do_not_depend_on_batching_or_threads(deterministic, monkeypatch):
    """The point of the mode: however the work is grouped, the bytes are the same, and any grouping decodes."""
    import encodec_hf.ecdc.lm_coding as compression

    model, audio, coded, plain = deterministic
    reference, _ = decompress(plain, model)
    threads = torch.get_num_threads()
    monkeypatch.setattr(compression, "LM_ENCODE_ELEMENTS", 1)  # one chunk at a time
    monkeypatch.setattr(compression, "LM_BLOCK_FRAMES", 7)  # teacher forcing in short blocks
    monkeypatch.setattr(compression, "CDF_ELEMENTS", 1)  # ranges a frame at a time
    try:
        torch.set_num_threads(1)
        assert compress(model, audio, 400, bandwidth=0.8, use_lm=True, container_version=1) == coded
    finally:
        torch.set_num_threads(threads)
    for batch in (1, 2):
        monkeypatch.setattr(compression, "LM_DECODE_BATCH", batch)
        np.testing.assert_array_equal(decompress(coded, model)[0], reference)


def test_risky_positions_are_listed_and_coded_uniformly(deterministic, monkeypatch):
    """With a wide guard most distributions are risky: the file lists them, and both sides agree."""
    import encodec_hf.ecdc.coder as coder
    from encodec_hf.ecdc.container import FRAME, read_varint

    model, audio, coded, plain = deterministic
    assert coded[HEADER.size + HEADER.unpack(coded[: HEADER.size])[2] + FRAME.size + 4] == 0  # none here
    monkeypatch.setattr(coder, "GUARD", 0.2)
    wide = compress(model, audio, 400, bandwidth=0.8, use_lm=True, container_version=1)
    first_chunk = HEADER.size + HEADER.unpack(wide[: HEADER.size])[2] + FRAME.size + 4  # after frame and scale
    count = read_varint(io.BytesIO(wide[first_chunk:]), 10**6)
    assert count > 50  # of 2 codebooks x 100 frames
    np.testing.assert_array_equal(decompress(wide, model)[0], decompress(plain, model)[0])


def test_varint_worked_example_and_limits():
    from encodec_hf.ecdc.container import read_varint, write_varint

    for value, encoded in ((0, b"\x00"), (127, b"\x7f"), (300, b"\xac\x02")):
        stream = io.BytesIO()
        write_varint(stream, value)
        assert stream.getvalue() == encoded and read_varint(io.BytesIO(encoded), 300) == value
    with pytest.raises(ValueError, match="exceeds 299"):
        read_varint(io.BytesIO(b"\xac\x02"), 299)
    with pytest.raises(EOFError):
        read_varint(io.BytesIO(b"\xac"), 300)
    with pytest.raises(ValueError, match="unsigned"):
        write_varint(io.BytesIO(), -1)


def test_bad_deterministic_files(deterministic):
    from encodec_hf.ecdc.container import FRAME

    model, _, coded, plain = deterministic
    for bad, match in (
        (rewrite(coded, dlm=2), "mode 2"),
        (rewrite(coded, version=0), "version 0"),
        (rewrite(plain, dlm=1), "lm False"),
    ):
        with pytest.raises(ValueError, match=match):
            decompress(bad, model)
    # a risky position beyond the chunk's codes, with a CRC32 that matches
    import zlib

    start = HEADER.size + HEADER.unpack(coded[: HEADER.size])[2]
    size, _ = FRAME.unpack(coded[start : start + FRAME.size])
    payload = bytearray(coded[start + FRAME.size : start + FRAME.size + size])
    payload[4:5] = b"\x02\x96\x01\x3c"  # 2 risky positions, gaps 150 and 60: 150, 211 (chunk 0: 2 x 100 codes)
    forged = (
        coded[:start]
        + FRAME.pack(len(payload), zlib.crc32(payload))
        + bytes(payload)
        + coded[start + FRAME.size + size :]
    )
    with pytest.raises(ValueError, match="211 lies beyond the chunk's 200 codes"):
        decompress(forged, model)


@pytest.mark.slow
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_fuzzed_deterministic_files_fail_cleanly(deterministic, data):
    model, _, coded, _ = deterministic
    try:
        audio, _ = decompress(mutate(coded, data), model)
    except (ValueError, EOFError):
        return
    assert audio.shape[0] == 2 and np.isfinite(audio).all()


def test_cli_deterministic_files(tmp_path, deterministic, capsys):
    import soundfile as sf

    model, audio, coded, plain = deterministic
    folder = save_tiny_folder(tmp_path / "model", model)
    model.language_model.save_pretrained(folder / "language_model")
    sf.write(tmp_path / "in.wav", audio.T, 400, subtype="FLOAT")
    assert (
        main(
            [
                "compress",
                str(tmp_path / "in.wav"),
                str(tmp_path / "x.ecdc"),
                "--model",
                str(folder),
                "-b",
                "0.8",
                "--lm",
                "--container",
                "1",
            ]
        )
        == 0
    )
    assert "kbps" in capsys.readouterr().out
    assert (tmp_path / "x.ecdc").read_bytes() == coded
    assert main(["decompress", str(tmp_path / "x.ecdc"), str(tmp_path / "out.wav"), "--model", str(folder)]) == 0
    written, _ = sf.read(tmp_path / "out.wav", always_2d=True)
    reference, _ = decompress(plain, model)
    np.testing.assert_allclose(written.T, np.clip(reference, -0.99, 0.99), atol=1 / 32768 + 1e-6)


def test_deterministic_mode_on_a_chunk_longer_than_a_block():
    """A chunk of more frames than one teacher-forced block (LM_BLOCK_FRAMES, 256), with ranges computed in steps
    longer than the block (tiny codebooks): failed with a shape mismatch before the step was bounded by the block."""
    from encodec_hf import EncodecLanguageModel

    model = tiny_model()
    torch.manual_seed(2)
    model.language_model = EncodecLanguageModel.for_model(model.config).eval()
    audio = (np.random.default_rng(4).standard_normal(1700) * 0.2).astype(np.float32)  # 425 frames
    coded = compress(model, audio, 400, bandwidth=0.8, use_lm=True, container_version=1)
    plain = compress(model, audio, 400, bandwidth=0.8)
    np.testing.assert_array_equal(decompress(coded, model)[0], decompress(plain, model)[0])


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


LYING_FILE_SCRIPT = r"""
import io, sys, numpy as np
from encodec_hf import decompress
from encodec_hf.ecdc.container import EcdcHeader, model_name
from encodec_hf.language_model import EncodecLanguageModel, EncodecLanguageModelConfig
from encodec_hf.testing import tiny_model

model = tiny_model(target_bandwidths=[0.4, 0.8, 12.8])  # 32 codebooks
config = EncodecLanguageModelConfig(num_codebooks=32, codebook_size=16, past_context=7, dim=10, num_heads=2)
model.language_model = EncodecLanguageModel(config).eval()
length = 24 * 3600 * model.config.sampling_rate  # a day: 8.64 million frames, 276 million codes claimed
stream = io.BytesIO()
EcdcHeader(0, model_name(model), length, 32, True, False).write(stream)
stream.write(np.random.default_rng(0).integers(0, 256, 350_000, dtype=np.uint8).tobytes())  # 2.8 Mbit: plausible


import torch

largest = [0]  # bytes of the largest zero-filled buffer asked for (calloc'd pages would not show in the RSS)
real_zeros = torch.zeros


def zeros(*shape, **kwargs):
    tensor = real_zeros(*shape, **kwargs)
    largest[0] = max(largest[0], tensor.numel() * tensor.element_size())
    return tensor


torch.zeros = zeros
try:
    decompress(stream.getvalue(), model)
except (EOFError, ValueError) as error:
    print("refused:", type(error).__name__, str(error).splitlines()[0])
print("largest_mb", largest[0] / 2**20)
"""


def test_a_file_claiming_a_day_is_refused_before_allocating(tiny_chunked):
    """The reader accepted claims of up to 24 h and allocated for them; a claim the bytes cannot hold is refused
    before any allocation."""
    import io

    from encodec_hf.ecdc.container import EcdcHeader, model_name

    stream = io.BytesIO()
    EcdcHeader(0, model_name(tiny_chunked), 24 * 3600 * 400, 2, False, False).write(stream)
    stream.write(b"\x00" * 1000)
    with pytest.raises(EOFError, match="truncated"):
        decompress(stream.getvalue(), tiny_chunked)


def test_a_file_of_huge_samples_reads_back(tiny_chunked):
    audio = (np.random.default_rng(0).standard_normal((2, 900)) * 0.2).astype(np.float32)
    audio[1, 10] = 1e20
    x = torch.from_numpy(audio)[None]
    mask = torch.ones(1, 900)
    with torch.no_grad():
        enc = tiny_chunked.encode(x, mask, bandwidth=0.8)
    from encodec_hf.ecdc import compress_codes

    data = compress_codes(tiny_chunked, enc.audio_codes, enc.audio_scales, 900)
    decoded, _ = decompress(data, tiny_chunked)
    assert np.isfinite(decoded).all()


@pytest.mark.slow  # decodes 350 KB of arithmetic-coded noise with a language model
def test_a_language_model_file_claiming_a_day_allocates_only_what_it_decodes(tmp_path):
    """Issue 18: 260 KB of random bytes claiming 24 h allocated 3.1 GB before being rejected. The codes buffer now
    grows with the frames decoded (the same file's claim would have taken 276 M x 8 bytes = 2.2 GB, 2,109 MB in this
    test before the change)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", LYING_FILE_SCRIPT], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: " in done.stdout  # noise: "no symbol matches it", or the bits end first
    largest = float(done.stdout.split("largest_mb")[1])
    assert largest < 10, done.stdout


def test_decompress_iter_refuses_trailing_bytes_as_decompress_does(tiny_chunked):
    import io

    from encodec_hf.ecdc import compress, decompress_iter

    data = compress(tiny_chunked, np.zeros((2, 500), dtype=np.float32), 400, bandwidth=0.8) + b"\x00"
    with pytest.raises(ValueError, match="more than its metadata"):
        decompress(data, tiny_chunked)
    with pytest.raises(ValueError, match="beyond what its metadata accounts for"):
        list(decompress_iter(io.BytesIO(data), tiny_chunked))
