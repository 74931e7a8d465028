"""The token layout language models train on and generate: worked examples, round trips, streams of any length,
scale tokens and their cost, padding that is never a code, and codes of another model refused."""

import datasets
import numpy as np
import pytest

from encodec_hf import (
    PAD_TOKEN,
    EncodecConfig,
    EncodecFeatureExtractor,
    codes_to_tokens,
    decode_tokens,
    scale_to_token,
    token_to_scale,
    tokenize_dataset,
    tokens_to_codes,
)
from encodec_hf.testing import tiny_model
from encodec_hf.tokenization import chunk_frames

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
