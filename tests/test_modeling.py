import json
import logging

import pytest
import torch
import transformers
from safetensors.torch import load_file, save_file

from encodec_hf import EncodecFeatureExtractor, EncodecModel
from encodec_hf.chunking import conv_extra_padding, linear_overlap_add, num_frames, overlap_add_weights
from encodec_hf.layers import EncodecConv1d, EncodecLSTMLayers
from encodec_hf.testing import tiny_config, tiny_model

LENGTHS = [1, 2, 3, 5, 17, 359, 360, 361, 399, 400, 401, 721, 1000]  # tiny chunked model: chunk 400, stride 360


# -- arithmetic --------------------------------------------------------------------------------------------------


def test_conv_extra_padding_worked_example():
    assert conv_extra_padding(5, kernel_size=4, stride=2, padding_total=2) == 1
    assert conv_extra_padding(6, kernel_size=4, stride=2, padding_total=2) == 0
    assert conv_extra_padding(1, kernel_size=7, stride=1, padding_total=6) == 0
    assert conv_extra_padding(1, kernel_size=16, stride=8, padding_total=8) == 7


@pytest.mark.parametrize("stride", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("causal", [True, False])
def test_strided_conv_makes_ceil_frames(stride, causal):
    """With the extra padding, a conv of kernel 2*stride gives ceil(length / stride) frames at every length."""
    conv = EncodecConv1d(
        tiny_config(use_causal_conv=causal), 1, 1, kernel_size=2 * stride if stride > 1 else 3, stride=stride
    )
    for length in range(1, 40):
        assert conv(torch.randn(1, 1, length)).shape[-1] == -(-length // stride), length


def test_num_frames():
    assert [num_frames(n, 320) for n in (1, 320, 321, 333, 48_000)] == [1, 1, 2, 2, 150]


def test_overlap_add_weights_worked_example():
    torch.testing.assert_close(
        overlap_add_weights(4, torch.float64), torch.tensor([0.2, 0.4, 0.4, 0.2], dtype=torch.float64)
    )


def test_linear_overlap_add():
    stride = 6
    constant = [torch.full((2, 1, 10), 3.0), torch.full((2, 1, 10), 3.0), torch.full((2, 1, 4), 3.0)]
    out = linear_overlap_add(constant, stride)
    assert out.shape == (2, 1, 2 * stride + 4)
    torch.testing.assert_close(out, torch.full_like(out, 3.0))  # a weighted mean of equal values
    single = torch.randn(1, 2, 9)
    torch.testing.assert_close(linear_overlap_add([single], stride), single)
    # in the overlap the second chunk fades in linearly: at its first sample, weight w[0] / (w[6] + w[0])
    a, b = torch.zeros(1, 10), torch.ones(1, 10)
    mixed = linear_overlap_add([a, b], stride)
    w = overlap_add_weights(10, torch.float32)
    torch.testing.assert_close(mixed[0, stride], w[0] / (w[stride] + w[0]))
    with pytest.raises(ValueError):
        linear_overlap_add([], stride)


def test_overlap_add_in_bfloat16_keeps_edges():
    """transformers' overlap-add in bfloat16 rounds the edge weights and divides by zero; ours sums in float32."""
    chunks = [torch.ones(1, 2, 400, dtype=torch.bfloat16) for _ in range(3)]
    out = linear_overlap_add(chunks, 360)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    torch.testing.assert_close(out.float(), torch.ones_like(out, dtype=torch.float32))


# -- shapes and lengths ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_shapes_and_exact_lengths(chunked):
    model = tiny_model(chunked=chunked)
    channels = model.config.audio_channels
    for length in LENGTHS:
        x = torch.randn(2, channels, length) * 0.3
        with torch.no_grad():
            enc = model.encode(x, bandwidth=0.8)
            chunks = -(-length // 360) if chunked else 1
            frames = num_frames(min(length, 400), 4) if chunked else num_frames(length, 4)
            assert enc.audio_codes.shape == (chunks, 2, 2, frames), length
            assert enc.audio_codes.dtype == torch.long
            assert len(enc.audio_scales) == chunks
            assert all((s is None) != chunked for s in enc.audio_scales)
            out = model.decode(enc.audio_codes, enc.audio_scales, torch.ones(2, length)).audio_values
            assert out.shape == (2, channels, length), length
            assert model(x).audio_values.shape == (2, channels, length)
            # without a padding mask decode returns whole frames, as the original's decode does
            free = model.decode(
                enc.audio_codes, enc.audio_scales, last_frame_pad_length=enc.last_frame_pad_length
            ).audio_values
            assert free.shape[-1] >= length and free.shape[-1] - length < 4 * (2 if chunked else 1)
            torch.testing.assert_close(free[..., :length], out)


@pytest.mark.parametrize("chunked", [False, True])
def test_default_bandwidth_is_the_smallest(chunked):
    model = tiny_model(chunked=chunked)
    x = torch.randn(1, model.config.audio_channels, 50)
    assert model.encode(x).audio_codes.shape[2] == 1


@pytest.mark.parametrize("chunked", [False, True])
def test_batch_items_equal_single_items(chunked):
    model = tiny_model(chunked=chunked)
    channels = model.config.audio_channels
    clips = [torch.randn(channels, n) * 0.3 for n in (1, 361, 1000, 3, 721)]
    extractor = EncodecFeatureExtractor.from_model_config(model.config)
    batch = extractor([c.numpy() for c in clips], sampling_rate=400, return_tensors="pt")
    with torch.no_grad():
        enc = model.encode(batch["input_values"], batch["padding_mask"], bandwidth=0.8)
        out = model.decode(enc.audio_codes, enc.audio_scales, batch["padding_mask"]).audio_values
        assert out.shape[-1] == 1000
        for i, clip in enumerate(clips):
            alone = model.encode(clip[None], bandwidth=0.8)
            chunks, frames = alone.audio_codes.shape[0], alone.audio_codes.shape[-1]
            assert torch.equal(enc.audio_codes[:chunks, i, :, :frames], alone.audio_codes[:, 0])
            assert (enc.audio_codes[:chunks, i, :, frames:] == 0).all() and (enc.audio_codes[chunks:, i] == 0).all()
            if chunked:
                for k in range(chunks):
                    torch.testing.assert_close(enc.audio_scales[k][i], alone.audio_scales[k][0], rtol=0, atol=0)
            audio = model.decode(alone.audio_codes, alone.audio_scales, torch.ones(1, clip.shape[-1])).audio_values
            # Equal to float rounding: chunks of several items share a batch, which changes the order of sums.
            torch.testing.assert_close(
                out[i, :, : clip.shape[-1]], audio[0], rtol=0, atol=1e-6 * audio.abs().max().item()
            )
            assert (out[i, :, clip.shape[-1] :] == 0).all()
            forward = model(batch["input_values"], batch["padding_mask"], bandwidth=0.8).audio_values
            torch.testing.assert_close(forward, out)


def test_padding_mask_with_channel_axis_and_bool():
    model = tiny_model(chunked=True)
    x = torch.randn(2, 2, 500)
    mask = torch.ones(2, 500, dtype=torch.bool)
    mask[1, 300:] = False
    a = model.encode(x, mask).audio_codes
    b = model.encode(x, mask[:, None, :].expand(2, 2, 500).long()).audio_codes
    assert torch.equal(a, b)


def test_silence_encodes_and_decodes():
    for chunked in (False, True):
        model = tiny_model(chunked=chunked)
        x = torch.zeros(1, model.config.audio_channels, 800)
        out = model(x).audio_values
        assert torch.isfinite(out).all() and out.shape == x.shape


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_lstm_layers_are_nn_lstm_bit_for_bit(dtype):
    """The compile-friendly LSTM stack: nn.LSTM's parameter names and, loaded with its weights, its exact outputs
    and final state, from zeros and from a given state (streaming passes one)."""
    torch.manual_seed(0)
    reference = torch.nn.LSTM(24, 24, 2).to(dtype)
    ours = EncodecLSTMLayers(24, 24, 2).to(dtype)
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in reference.named_parameters()]
    ours.load_state_dict(reference.state_dict())
    sequence = torch.randn(37, 3, 24, dtype=dtype)  # (T, B, C)
    state = (torch.randn(2, 3, 24, dtype=dtype), torch.randn(2, 3, 24, dtype=dtype))
    with torch.no_grad():
        for args in [(sequence,), (sequence, state)]:
            expected, (expected_h, expected_c) = reference(*args)
            out, (h, c) = ours(*args)
            assert out.dtype == dtype and out.shape == (37, 3, 24)
            assert torch.equal(out, expected) and torch.equal(h, expected_h) and torch.equal(c, expected_c)


# -- checkpoints -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True])
def test_state_dict_matches_transformers(chunked):
    """Same keys and shapes as transformers' EncodecModel, so Hub folders load both ways."""
    ours = tiny_model(chunked=chunked)
    theirs = transformers.EncodecModel(transformers.EncodecConfig(**ours.config.to_diff_dict()))
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}


@pytest.mark.parametrize("chunked", [False, True])
def test_save_and_load_round_trip(tmp_path, chunked):
    model = tiny_model(chunked=chunked)
    model.save_pretrained(tmp_path)
    again = EncodecModel.from_pretrained(tmp_path).eval()
    x = torch.randn(1, model.config.audio_channels, 900)
    assert torch.equal(model.encode(x, bandwidth=0.8).audio_codes, again.encode(x, bandwidth=0.8).audio_codes)
    torch.testing.assert_close(model(x).audio_values, again(x).audio_values, rtol=0, atol=0)


def test_loads_legacy_weight_g_weight_v_keys(tmp_path):
    """Folders saved by older transformers hold weight_g / weight_v instead of parametrizations."""
    model = tiny_model()
    model.save_pretrained(tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    legacy = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in tensors.items()
    }
    assert any(k.endswith("weight_g") for k in legacy)
    save_file(legacy, tmp_path / "model.safetensors", metadata={"format": "pt"})
    again, info = EncodecModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def test_loads_in_transformers_and_back(tmp_path):
    model = tiny_model(chunked=True)
    model.save_pretrained(tmp_path)
    theirs, info = transformers.EncodecModel.from_pretrained(tmp_path, output_loading_info=True)
    assert not any(info.values())
    theirs.save_pretrained(tmp_path / "back")
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert config["model_type"] == "encodec"
    ours, info = EncodecModel.from_pretrained(tmp_path / "back", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    for key, value in model.state_dict().items():
        assert torch.equal(value, ours.state_dict()[key]), key


# -- bad input ---------------------------------------------------------------------------------------------------


def test_bad_encode_input():
    model = tiny_model(chunked=True)
    x = torch.randn(1, 2, 100)
    cases = [
        (lambda: model.encode(x, bandwidth=5.0), r"bandwidth 5.0 is not one of this model's bandwidths: 0.4, 0.8"),
        (lambda: model.encode(torch.randn(2, 100)), r"\(batch, channels, samples\)"),
        (lambda: model.encode(torch.randn(1, 1, 100)), "takes 2-channel audio, got 1"),
        (lambda: model.encode(torch.randn(1, 2, 0)), "empty"),
        (lambda: model.encode(torch.full((1, 2, 10), float("nan"))), "NaN or Inf"),
        (lambda: model.encode(torch.ones(1, 2, 10, dtype=torch.long)), "floating point"),
        (lambda: model.encode(x, torch.tensor([[0] * 50 + [1] * 50])), "prefix"),
        (lambda: model.encode(x, torch.tensor([[1] * 40 + [0] + [1] * 9 + [0] * 50])), "prefix"),
        (lambda: model.encode(x, torch.zeros(1, 100)), "no real sample"),
        (lambda: model.encode(x, torch.ones(2, 100)), "padding_mask must be shaped"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    long = torch.randn(3, 2, 30_011)  # one bad sample anywhere in a batch is found, on either channel
    for position, value in [((0, 0, 0), float("nan")), ((2, 1, 30_010), float("inf")), ((1, 0, 17_003), -float("inf"))]:
        bad = long.clone()
        bad[position] = value
        with pytest.raises(ValueError, match="NaN or Inf"):
            model.encode(bad)


def test_bad_decode_input():
    model = tiny_model(chunked=True)
    enc = model.encode(torch.randn(1, 2, 500), bandwidth=0.8)
    codes, scales = enc.audio_codes, enc.audio_scales
    cases = [
        (lambda: model.decode(codes + 16, scales), r"\[0, 16\)"),
        (lambda: model.decode(codes - 1, scales), r"\[0, 16\)"),
        (lambda: model.decode(codes.float(), scales), "integers"),
        (lambda: model.decode(codes[0], scales), "num_chunks, batch"),
        (lambda: model.decode(codes, scales[:1]), "1 entries for 2 chunks"),
        (lambda: model.decode(codes, [None, None]), "needs the scale"),
        (lambda: model.decode(codes, [torch.ones(3, 1)] * 2), "3 values for a batch of 1"),
        (lambda: model.decode(torch.cat([codes] * 2, dim=2), scales), "4 codebooks; this model has 2"),
        (lambda: model.decode(codes, scales, torch.ones(1, 5000)), "Pass the padding_mask that encode was given"),
        (lambda: model(torch.randn(1, 2, 10), audio_codes=codes), "without its partner"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    unchunked = tiny_model()
    with pytest.raises(ValueError, match="one chunk"):
        unchunked.decode(torch.zeros(2, 1, 1, 5, dtype=torch.long), [None, None])


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def test_decode_without_padding_mask_warns_on_chunked_models(tiny_chunked, caplog):
    logging.Logger.warning_once.cache_clear()  # transformers' once-only warnings: forget earlier tests' calls
    x = torch.randn(1, 2, 1000) * 0.3
    with torch.no_grad(), caplog.at_level(logging.WARNING):
        enc = tiny_chunked.encode(x, bandwidth=0.8)
        audio = tiny_chunked.decode(enc.audio_codes, enc.audio_scales).audio_values
    assert "decode without padding_mask returns (num_chunks - 1) x chunk_stride" in caplog.text
    assert audio.shape[-1] > 1000  # what the warning says: more than was encoded


def test_finite_input_gives_finite_scales_and_audio(tiny_chunked):
    x = torch.randn(1, 2, 1000) * 0.3
    x[0, 0, 123] = 1e20
    mask = torch.ones(1, 1000)
    with torch.no_grad():
        enc = tiny_chunked.encode(x, mask, bandwidth=0.8)
        audio = tiny_chunked.decode(enc.audio_codes, enc.audio_scales, mask).audio_values
    assert all(torch.isfinite(s).all() for s in enc.audio_scales)
    assert float(enc.audio_scales[0].max()) == pytest.approx(1e6)  # clamped at MAX_SCALE
    assert torch.isfinite(audio).all()
    normal = torch.randn(1, 2, 1000) * 0.3  # ordinary audio: scales unchanged by the clamp
    with torch.no_grad():
        scales = tiny_chunked.encode(normal, bandwidth=0.8).audio_scales
    expected = normal[..., :400].mean(dim=1).pow(2).mean().sqrt() + 1e-8
    assert torch.equal(scales[0].reshape(()), expected)
