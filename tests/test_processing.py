import logging

import numpy as np
import pytest
import torch
import transformers

from encodec_hf import (
    EncodecConfig,
    EncodecFeatureExtractor,
)
from encodec_hf.processing import chunk_sizes, convert_channels, plan_chunks, resample

# -- the chunk plan ---------------------------------------------------------------------------------------------


def test_chunk_sizes_worked_examples():
    assert chunk_sizes(1.0, 0.01, 48_000) == (48_000, 47_520)  # the 48 kHz model
    assert chunk_sizes(None, 0.01, 48_000) == (None, None)
    assert chunk_sizes(None, None, 24_000) == (None, None)  # the 24 kHz model
    assert chunk_sizes(0.5, None, 24_000) == (12_000, None)
    assert chunk_sizes(0.01, 0.99, 100) == (1, 1)  # int(0.01 * 1) = 0: the stride never drops below one sample


def test_plan_chunks_worked_examples():
    assert plan_chunks(100_000, 48_000, 47_520) == [(0, 48_000), (47_520, 48_000), (95_040, 4_960)]
    assert plan_chunks(48_000, 48_000, 47_520) == [(0, 48_000), (47_520, 480)]
    assert plan_chunks(1, 48_000, 47_520) == [(0, 1)]
    assert plan_chunks(12_345, None, None) == [(0, 12_345)]


@pytest.mark.parametrize("length", [1, 2, 359, 360, 361, 399, 400, 401, 719, 720, 721, 1000, 5 * 360 + 7])
def test_plan_chunks_invariants(length):
    chunk, stride = 400, 360
    plan = plan_chunks(length, chunk, stride)
    assert len(plan) == -(-length // stride)  # ceil(length / stride), as the original's range(0, length, stride)
    assert [start for start, _ in plan] == list(range(0, length, stride))
    # A chunk is full unless it reaches the clip's end; then it keeps only the real samples (never padded).
    # With fewer than chunk + stride samples that can be two chunks: 361 -> (0, 361), (360, 1).
    assert all(size == min(chunk, length - start) for start, size in plan)
    start, size = plan[-1]
    assert start + size == length and 1 <= size <= stride


def test_plan_chunks_rejects_empty():
    with pytest.raises(ValueError, match="at least one sample"):
        plan_chunks(0, 400, 360)


def test_extractor_chunk_plan_is_the_models():
    config = EncodecConfig.from_preset("encodec_48khz")
    extractor = EncodecFeatureExtractor.from_model_config(config)
    assert extractor.chunk_stride == config.chunk_stride == 47_520
    assert extractor.chunk_plan(100_000) == plan_chunks(100_000, config.chunk_length, config.chunk_stride)


# -- channels and rates -----------------------------------------------------------------------------------------


def test_convert_channels(rng):
    mono = rng.standard_normal((1, 50)).astype(np.float32)
    stereo = rng.standard_normal((2, 50)).astype(np.float32)
    np.testing.assert_array_equal(convert_channels(mono, 2), np.concatenate([mono, mono]))
    np.testing.assert_allclose(convert_channels(stereo, 1), stereo.mean(0, keepdims=True))
    assert convert_channels(stereo, 2) is stereo
    with pytest.raises(ValueError, match="only mono <-> stereo"):
        convert_channels(rng.standard_normal((3, 50)), 2)


def test_resample_keeps_a_tone():
    rate_in, rate_out, seconds, freq = 44_100, 24_000, 1.0, 440.0
    t = np.arange(int(rate_in * seconds)) / rate_in
    tone = np.sin(2 * np.pi * freq * t).astype(np.float32)[None]
    out = resample(tone, rate_in, rate_out)
    assert out.shape == (1, int(rate_out * seconds)) and out.dtype == np.float32
    expected = np.sin(2 * np.pi * freq * np.arange(out.shape[-1]) / rate_out)
    middle = slice(1000, -1000)  # away from the filter's edges
    assert np.abs(out[0, middle] - expected[middle]).max() < 1e-3


# -- the feature extractor ---------------------------------------------------------------------------------------


def extractor_24k():
    return EncodecFeatureExtractor.from_model_config(EncodecConfig.from_preset("encodec_24khz"))


def extractor_48k():
    return EncodecFeatureExtractor.from_model_config(EncodecConfig.from_preset("encodec_48khz"))


def test_batch_of_mixed_inputs_pads_to_longest(rng):
    clips = [
        rng.standard_normal(300).astype(np.float32),
        (rng.standard_normal((1, 100)) * 1000).astype(np.int16),
        torch.randn(2, 200, dtype=torch.float64),
    ]
    out = extractor_24k()(clips, sampling_rate=24_000, return_tensors="pt")
    assert out["input_values"].shape == (3, 1, 300) and out["input_values"].dtype == torch.float32
    assert out["padding_mask"].tolist() == [[1] * 300, [1] * 100 + [0] * 200, [1] * 200 + [0] * 100]
    np.testing.assert_allclose(out["input_values"][1, 0, :100].numpy(), clips[1][0] / 32768.0)
    np.testing.assert_allclose(
        out["input_values"][2, 0, :200].numpy(), clips[2].mean(0).numpy(), atol=1e-6
    )  # float32 mean
    assert out["input_values"][1, 0, 100:].abs().sum() == 0


def test_mono_becomes_stereo_for_the_48k_model(rng):
    clip = rng.standard_normal(1000).astype(np.float32)
    out = extractor_48k()(clip, sampling_rate=48_000, return_tensors="np")
    assert out["input_values"].shape == (1, 2, 1000)
    np.testing.assert_array_equal(out["input_values"][0, 0], out["input_values"][0, 1])


def test_other_rates_are_resampled(rng):
    clip = rng.standard_normal((2, 44_100)).astype(np.float32) * 0.1
    out = extractor_48k()(clip, sampling_rate=44_100, return_tensors="np")
    assert out["input_values"].shape == (1, 2, 48_000)
    expected = resample(clip, 44_100, 48_000)
    np.testing.assert_allclose(out["input_values"][0], expected, rtol=1e-6, atol=1e-7)


def test_datasets_forms(rng):
    """dict values and decoder objects with get_all_samples() (torchcodec's AudioDecoder interface)."""

    class Samples:
        def __init__(self, data, rate):
            self.data, self.sample_rate = data, rate

    class Decoder:  # stand-in for torchcodec.decoders.AudioDecoder, which needs a CUDA torch here
        def __init__(self, data, rate):
            self._samples = Samples(data, rate)

        def get_all_samples(self):
            return self._samples

    stereo = torch.randn(2, 480)
    out = extractor_48k()(
        [{"array": stereo.numpy(), "sampling_rate": 48_000}, Decoder(stereo, 24_000)], sampling_rate=48_000
    )
    assert out["input_values"].shape == (2, 2, 960)
    assert out["padding_mask"].sum(-1).tolist() == [480, 960]
    np.testing.assert_array_equal(out["input_values"][0, :, :480], stereo.numpy())


def test_padding_modes(rng):
    clips = [rng.standard_normal(100).astype(np.float32), rng.standard_normal(50).astype(np.float32)]
    fe = extractor_24k()
    assert fe(clips, sampling_rate=24_000, padding="max_length", max_length=120)["input_values"].shape == (2, 1, 120)
    assert fe(clips, sampling_rate=24_000, truncation=True, max_length=60)["input_values"].shape == (2, 1, 60)
    assert fe(clips[:1], sampling_rate=24_000, padding=False)["input_values"].shape == (1, 1, 100)
    with pytest.raises(ValueError, match="different lengths"):
        fe(clips, sampling_rate=24_000, padding=False)
    with pytest.raises(ValueError, match="more than max_length"):
        fe(clips, sampling_rate=24_000, padding="max_length", max_length=80)


@pytest.mark.parametrize(
    "clip, message",
    [
        (np.array([0.1, np.nan, 0.2], dtype=np.float32), "NaN or Inf"),
        (np.array([0.1, np.inf], dtype=np.float64), "NaN or Inf"),
        (np.zeros(0, dtype=np.float32), "empty"),
        (np.zeros((1, 2, 100), dtype=np.float32), "shape"),
        (np.zeros((3, 100), dtype=np.float32), "1 or 2 channels"),
        (np.zeros((100, 2), dtype=np.float32), "transpose"),
        (np.zeros(10, dtype=np.uint8), "dtype"),
        (np.array(["a", "b"]), "dtype"),
    ],
)
def test_bad_input(clip, message):
    with pytest.raises(ValueError, match=message):
        extractor_24k()(clip, sampling_rate=24_000)


def test_bad_input_names_the_clip(rng):
    good = rng.standard_normal(10).astype(np.float32)
    with pytest.raises(ValueError, match="clip 1"):
        extractor_24k()([good, np.full(10, np.nan, dtype=np.float32)], sampling_rate=24_000)


def test_odd_but_valid_input():
    fe = extractor_24k()
    assert fe(np.zeros(1, dtype=np.float32), sampling_rate=24_000)["input_values"].shape == (1, 1, 1)
    assert fe(np.zeros(500, dtype=np.int16), sampling_rate=24_000)["input_values"].max() == 0
    assert fe([0.0, 0.5, -0.5], sampling_rate=24_000)["input_values"].shape == (1, 1, 3)


def test_saves_and_loads_like_transformers(tmp_path):
    ours = extractor_48k()
    ours.save_pretrained(tmp_path)
    theirs = transformers.EncodecFeatureExtractor.from_pretrained(tmp_path)
    assert (theirs.feature_size, theirs.sampling_rate, theirs.chunk_length_s, theirs.overlap) == (2, 48_000, 1.0, 0.01)
    theirs.save_pretrained(tmp_path / "back")
    again = EncodecFeatureExtractor.from_pretrained(tmp_path / "back")
    assert (again.feature_size, again.sampling_rate, again.chunk_stride) == (2, 48_000, 47_520)


def test_undecoded_audio_cells_are_read_at_their_own_rates(tmp_path, caplog):
    """`Audio(decode=False)` cells, a path and raw bytes at different rates, in one call with no sampling_rate:
    each is read and resampled as the same audio given as an array with its rate; no rate warning."""
    import io
    import logging

    import soundfile as sf

    extractor = EncodecFeatureExtractor(feature_size=1, sampling_rate=400)
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal(800) * 0.2).astype(np.float32), (rng.standard_normal(300) * 0.2).astype(np.float32)
    sf.write(tmp_path / "a.wav", a, 800, subtype="FLOAT")
    buffer = io.BytesIO()
    sf.write(buffer, b, 400, format="WAV", subtype="FLOAT")
    cells = [{"bytes": None, "path": str(tmp_path / "a.wav")}, {"bytes": buffer.getvalue(), "path": None}]
    with caplog.at_level(logging.WARNING):
        out = extractor(cells, return_tensors="np")
    assert "sampling_rate" not in caplog.text
    expected = extractor([{"array": a, "sampling_rate": 800}, {"array": b, "sampling_rate": 400}], return_tensors="np")
    np.testing.assert_array_equal(out["input_values"], expected["input_values"])
    np.testing.assert_array_equal(out["padding_mask"], expected["padding_mask"])
    with pytest.raises(ValueError, match="'bytes' / 'path'"):
        extractor([{"something": 1}], sampling_rate=400)


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


@pytest.mark.parametrize(
    "rate, message",
    [
        (16, r"16 Hz is outside 1,000 to 384,000 Hz \(did you mean 16,000 Hz\?\)"),
        (500_000, "outside"),
        (True, "must be an integer"),
        (16_000.0, "must be an integer"),
    ],
)
def test_implausible_rates_are_refused_before_any_allocation(rate, message):
    tiny_chunked_extractor = EncodecFeatureExtractor.from_model_config(EncodecConfig.from_preset("encodec_48khz"))
    with pytest.raises(ValueError, match=message):
        tiny_chunked_extractor(np.zeros(48_000, dtype=np.float32), sampling_rate=rate)


def test_test_models_below_1_khz_take_their_own_rate(tiny_chunked_extractor):
    """The lower bound is min(1,000 Hz, the model's rate): a 400 Hz test model takes 400 Hz and more."""
    assert tiny_chunked_extractor(np.zeros(400, dtype=np.float32), sampling_rate=400)["input_values"].shape == (
        1,
        2,
        400,
    )
    with pytest.raises(ValueError, match="outside 400 to 384,000 Hz"):
        tiny_chunked_extractor(np.zeros(400, dtype=np.float32), sampling_rate=399)


def test_integer_pcm_stored_as_float_is_refused(tiny_chunked_extractor):
    loud = (np.sin(np.arange(4_000) / 10) * 29_797).astype(np.float32)
    with pytest.raises(ValueError, match="peaks at 29,797.*divide by 32768"):
        tiny_chunked_extractor(loud, sampling_rate=400)
    as_int16 = tiny_chunked_extractor(loud.astype(np.int16), sampling_rate=400)[
        "input_values"
    ]  # the integer array itself
    assert float(np.abs(as_int16).max()) < 1


def test_the_missing_rate_warning_is_true(tiny_chunked_extractor, caplog):
    clips = [{"array": np.zeros(400, dtype=np.float32), "sampling_rate": 800}]
    with caplog.at_level(logging.WARNING):
        tiny_chunked_extractor(clips)  # every clip carries its rate: nothing is assumed
    assert "No sampling_rate" not in caplog.text
    with caplog.at_level(logging.WARNING):
        tiny_chunked_extractor(np.zeros(400, dtype=np.float32))
    assert "No sampling_rate passed" in caplog.text


def test_undecoded_dataset_cells_are_taken_by_the_processor(tiny_chunked_extractor, tmp_path):
    """The processor rejected Audio(decode=False) cells ({'bytes', 'path'}); it reads them at their own rates."""
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((300, 2), dtype=np.float32) + 0.1, 1_000, format="WAV")
    sf.write(tmp_path / "b.wav", np.zeros(800, dtype=np.float32) + 0.1, 2_000)
    cells = [{"bytes": buffer.getvalue(), "path": None}, {"bytes": None, "path": str(tmp_path / "b.wav")}]
    inputs = tiny_chunked_extractor(cells, return_tensors="np")
    assert inputs["input_values"].shape == (2, 2, 160)  # 300 at 1 kHz and 800 at 2 kHz, both 0.3-0.4 s at 400 Hz
    assert inputs["padding_mask"].sum(axis=-1).tolist() == [120, 160]
