"""The token layout language models train on and generate: worked examples, round trips, streams of any length,
scale tokens and their cost, padding that is never a code, and codes of another model refused."""

import datasets
import numpy as np
import pytest
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)

from encodec_hf import (
    PAD_TOKEN,
    EncodecConfig,
    EncodecFeatureExtractor,
    EncodecModel,
    codes_to_tokens,
    decode_tokens,
    scale_to_token,
    token_to_scale,
    tokenize_dataset,
    tokens_to_codes,
)
from encodec_hf.chunking import chunk_frames
from encodec_hf.testing import tiny_model

CONFIG_48K = EncodecConfig.from_preset("encodec_48khz")


def test_worked_examples_48khz():
    assert chunk_frames(100_000, CONFIG_48K) == [150, 150, 16]
    codes = np.random.default_rng(0).integers(0, 1024, (3, 4, 150))
    tokens = codes_to_tokens(codes, 100_000, CONFIG_48K)
    assert tokens.shape == (4, 316)
    np.testing.assert_array_equal(tokens[:, 150:300], codes[1])
    back, length = tokens_to_codes(tokens, CONFIG_48K)
    assert length == 100_160 and back.shape == (3, 4, 150)
    assert (back[2, :, 16:] == PAD_TOKEN).all() and np.array_equal(back[2, :, :16], codes[2, :, :16])
    assert tokens_to_codes(np.zeros((4, 300), dtype=np.int64), CONFIG_48K)[1] == 95_040
    assert chunk_frames(95_040, CONFIG_48K) == [150, 149]  # a valid plan: frame 150 of the last chunk unused


def test_24khz_layout_is_the_frames():
    config = EncodecConfig.from_preset("encodec_24khz")
    tokens = np.arange(8 * 10).reshape(8, 10) % 1024
    codes, length = tokens_to_codes(tokens, config)
    assert codes.shape == (1, 8, 10) and length == 3200
    np.testing.assert_array_equal(codes_to_tokens(codes, length, config), tokens)


@pytest.fixture(scope="module")
def chunked():
    return tiny_model(chunked=True)  # 400 Hz; chunks of 100 frames every 90 frames


@pytest.fixture(scope="module")
def row(chunked):
    clip = np.random.default_rng(0).standard_normal((2, 1234)).astype(np.float32) * 0.2
    dataset = datasets.Dataset.from_dict({"audio": [clip.tolist()], "rate": [400]})
    extractor = EncodecFeatureExtractor.from_model_config(chunked.config)
    return tokenize_dataset(dataset, chunked, extractor, 0.8, sampling_rate_column="rate")[0]


def test_stored_padding_is_never_a_code(row, chunked):
    codes = np.asarray(row["audio_codes"])
    real = chunk_frames(row["audio_length"], chunked.config)
    assert real[-1] < codes.shape[-1] and (codes[-1, :, real[-1] :] == PAD_TOKEN).all()
    assert (codes[-1, :, : real[-1]] >= 0).all()


def test_flat_stream_round_trip_decodes_like_the_row(row, chunked):
    tokens = codes_to_tokens(row["audio_codes"], row["audio_length"], chunked.config)
    from_row = decode_tokens(chunked, row)
    from_tokens = decode_tokens(chunked, tokens, audio_scales=row["audio_scales"], audio_length=row["audio_length"])
    np.testing.assert_array_equal(from_tokens, from_row)
    implied = decode_tokens(chunked, tokens, audio_scales=row["audio_scales"])  # length from tokens_to_codes
    assert implied.shape[-1] >= row["audio_length"] - chunked.config.hop_length
    np.testing.assert_array_equal(
        implied[:, : min(implied.shape[-1], row["audio_length"])],
        from_row[:, : min(implied.shape[-1], row["audio_length"])],
    )


@pytest.mark.parametrize("frames", [1, 2, 89, 90, 91, 99, 100, 101, 250, 700])
def test_generated_streams_of_any_length_decode(chunked, frames):
    tokens = np.random.default_rng(frames).integers(0, 16, (2, frames))
    codes, length = tokens_to_codes(tokens, chunked.config)
    audio = decode_tokens(chunked, tokens, audio_scales=[0.1] * codes.shape[0])
    assert audio.shape == (2, length) and np.isfinite(audio).all()
    by_chunks = decode_tokens(chunked, codes, audio_scales=[0.1] * codes.shape[0])  # chunk by chunk, pads marked
    np.testing.assert_array_equal(by_chunks, audio)


def test_scale_tokens_cost_at_most_half_a_step(chunked):
    scales = np.exp(np.random.default_rng(2).uniform(np.log(1e-4), np.log(5.0), 2000))
    tokens = scale_to_token(scales)
    assert tokens.min() >= 0 and tokens.max() < 1024
    relative = np.abs(token_to_scale(tokens) / scales - 1)
    assert relative.max() < 0.0068  # half a step of ln(1e6) / 1023
    codes = np.random.default_rng(3).integers(0, 16, (3, 2, 100))
    exact = decode_tokens(chunked, codes, audio_scales=scales[:3])
    quantized = decode_tokens(chunked, codes, scale_tokens=tokens[:3])
    snr = 10 * np.log10((exact**2).sum() / ((exact - quantized) ** 2).sum())
    assert snr > 43, snr


def test_codes_of_another_model_are_refused(chunked):
    causal = tiny_model()
    with pytest.raises(ValueError, match="does not normalise"):
        decode_tokens(causal, np.zeros((1, 2, 100), dtype=np.int64), audio_scales=[0.1])  # a 48 kHz-style chunk
    with pytest.raises(ValueError, match="at most 100"):
        decode_tokens(chunked, np.zeros((1, 2, 300), dtype=np.int64), audio_scales=[0.1])  # a causal model's clip
    with pytest.raises(ValueError, match="codebooks"):
        decode_tokens(chunked, np.zeros((3, 100), dtype=np.int64), audio_scales=[0.1])
    with pytest.raises(ValueError, match="one value per chunk"):
        decode_tokens(chunked, np.zeros((2, 250), dtype=np.int64), audio_scales=[0.1])
    with pytest.raises(ValueError, match="does not chunk"):
        decode_tokens(causal, np.zeros((2, 2, 10), dtype=np.int64))
    with pytest.raises(ValueError, match=r"scale tokens must lie in \[0, 1024\)"):
        decode_tokens(chunked, np.zeros((2, 50), dtype=np.int64), scale_tokens=[1024])


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def test_the_issue_example_seven_chunks_of_full_frames(tiny_chunked):
    """(7, Q, frames) chunks with one scale each, and the same as a flat stream: both decode (they raised)."""
    codes = np.random.default_rng(1).integers(0, 16, (7, 2, 100))
    audio = decode_tokens(tiny_chunked, codes, audio_scales=[0.2] * 7)
    flat = decode_tokens(tiny_chunked, codes_to_tokens(codes, 7 * 360, tiny_chunked.config), audio_scales=[0.2] * 7)
    assert audio.shape == flat.shape == (2, 7 * 360)
    np.testing.assert_array_equal(audio, flat)


@pytest.mark.slow
def test_the_issue_example_on_the_full_size_48khz_model():
    """decode_tokens(m48, codes (7, 4, 150), audio_scales=scales) raised a padding_mask error; a flat (4, 1050)
    stream raised a scale-count error. Both decode now, to 7 x 47,520 samples."""
    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig.from_preset("encodec_48khz")).eval()
    codes = np.random.default_rng(0).integers(0, 1024, (7, 4, 150))
    audio = decode_tokens(model, codes, audio_scales=[0.1] * 7)
    flat = decode_tokens(model, codes.transpose(1, 0, 2).reshape(4, 1050), audio_scales=[0.1] * 7)
    assert audio.shape == flat.shape == (2, 7 * 47_520)
    np.testing.assert_array_equal(audio, flat)


def test_one_full_chunk_decodes_without_a_length(tiny_chunked):
    """One chunk decoded only with audio_length <= 47,520 passed by hand. Without a length it now decodes to the
    stride (in EnCodec 0.1.1's plan a clip of a whole chunk's length has a second chunk, so one chunk covers at most
    the stride), and a length that needs more chunks than given is refused with the plan it needs."""
    codes = np.random.default_rng(4).integers(0, 16, (1, 2, 100))
    assert decode_tokens(tiny_chunked, codes, audio_scales=[0.2]).shape == (2, 360)
    assert decode_tokens(tiny_chunked, codes, audio_scales=[0.2], audio_length=300).shape == (2, 300)
    with pytest.raises(ValueError, match=r"audio_length 400 needs 2 chunk\(s\) of \[100, 10\] frames"):
        decode_tokens(tiny_chunked, codes, audio_scales=[0.2], audio_length=400)


def test_frames_past_a_chunks_end_are_marked_not_code_zero(tiny_chunked, tiny_chunked_extractor):
    """The last chunk's frames past its end were filled with code 0, a valid token; rows now hold PAD_TOKEN there."""
    clip = np.random.default_rng(5).standard_normal((2, 500)).astype(np.float32) * 0.2
    dataset = datasets.Dataset.from_dict({"audio": [clip.tolist()], "rate": [400]})
    codes = np.asarray(
        tokenize_dataset(dataset, tiny_chunked, tiny_chunked_extractor, 0.8, sampling_rate_column="rate")[0][
            "audio_codes"
        ]
    )
    assert codes.shape == (2, 2, 100)  # chunks at 0 and 360: the second holds 140 samples, 35 frames
    assert (codes[1, :, 35:] == PAD_TOKEN).all() and (codes[1, :, :35] >= 0).all()


def test_codes_of_the_other_model_are_refused(tiny_chunked):
    """24 kHz codes fed to the 48 kHz model with one scale, and one 48 kHz chunk on the 24 kHz model, decoded
    silently; both are refused now (test_token_layout.py::test_codes_of_another_model_are_refused has the rest)."""
    causal = tiny_model()
    with pytest.raises(ValueError, match="at most 100"):
        decode_tokens(tiny_chunked, np.zeros((1, 2, 300), dtype=np.int64), audio_scales=[0.1])
    with pytest.raises(ValueError, match="does not normalise"):
        decode_tokens(causal, np.zeros((1, 2, 100), dtype=np.int64), audio_scales=[0.1])


@pytest.mark.parametrize("form", [None, "numpy", "torch"])
def test_decode_tokens_takes_rows_and_batches_in_every_format(tiny_chunked, tiny_chunked_extractor, form):
    clips = [np.random.default_rng(i).standard_normal(300 * (i + 1)).astype(np.float32) * 0.2 for i in range(3)]
    dataset = datasets.Dataset.from_dict({"audio": clips, "rate": [400] * 3})
    tokenized = tokenize_dataset(dataset, tiny_chunked, tiny_chunked_extractor, 0.8, sampling_rate_column="rate")
    from encodec_hf import decode_tokens

    expected = [decode_tokens(tiny_chunked, tokenized[i]) for i in range(3)]
    shaped = tokenized.with_format(form) if form else tokenized
    for i in range(3):
        np.testing.assert_array_equal(decode_tokens(tiny_chunked, shaped[i]), expected[i])
    batch = decode_tokens(tiny_chunked, shaped[0:3])
    assert len(batch) == 3 and all(np.array_equal(a, b) for a, b in zip(batch, expected, strict=True))
