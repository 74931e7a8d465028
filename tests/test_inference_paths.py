"""The inference paths: exact (the original's operations) and fast (channels_last, batched), folded weight norm,
reduced precision. Speed itself is measured in benchmarks/, never here."""

import pytest
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)

from encodec_hf import (
    EncodecModel,
)
from encodec_hf.testing import tiny_model

LENGTHS = [1, 5, 361, 721, 1000]


def relative_error(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("chunked", [False, True])
def test_fast_decoding_stays_within_1e5_of_exact(chunked):
    model = tiny_model(chunked=chunked)
    for length in LENGTHS:
        x = torch.randn(3, model.config.audio_channels, length) * 0.3
        mask = torch.ones(3, length)
        with torch.no_grad():
            enc = model.encode(x, mask, bandwidth=0.8)
            exact = model.decode(enc.audio_codes, enc.audio_scales, mask, fast_decoding=False).audio_values
            fast = model.decode(enc.audio_codes, enc.audio_scales, mask, fast_decoding=True).audio_values
        assert fast.shape == exact.shape
        assert relative_error(fast, exact) < 1e-5, length


@pytest.mark.parametrize("chunked", [False, True])
def test_fast_encoding_rarely_flips_a_code(chunked):
    model = tiny_model(chunked=chunked)
    x = torch.randn(2, model.config.audio_channels, 3000) * 0.3
    with torch.no_grad():
        exact = model.encode(x, bandwidth=0.8).audio_codes
        fast = model.encode(x, bandwidth=0.8, fast_encoding=True)
        audio = model.decode(fast.audio_codes, fast.audio_scales, torch.ones(2, 3000)).audio_values
    assert fast.audio_codes.shape == exact.shape
    assert (fast.audio_codes != exact).float().mean() < 0.01
    assert audio.shape == x.shape and torch.isfinite(audio).all()


def test_cached_weights_follow_parameter_changes():
    """Weight norm is folded once for the fast path, and refolded when a parameter changes."""
    model = tiny_model()
    x = torch.randn(1, 1, 200)
    last = model.decoder.layers[-1].conv  # the decoder's final conv: its output is the audio
    bias = last.bias.detach().clone().view(1, -1, 1)
    with torch.no_grad():
        codes = model.encode(x, bandwidth=0.8).audio_codes
        before = model.decode(codes, [None], torch.ones(1, 200)).audio_values
        last.parametrizations.weight.original0.mul_(2.0)  # g doubles, so W x doubles
        after = model.decode(codes, [None], torch.ones(1, 200)).audio_values
    torch.testing.assert_close(after - bias, 2 * (before - bias), rtol=1e-5, atol=1e-6)
    assert any("parametrizations.weight.original0" in key for key in model.state_dict())


def test_training_mode_gradients_flow():
    model = tiny_model(chunked=True).train()
    x = torch.randn(1, 2, 500, requires_grad=True)
    embeddings = model.encoder(x, channels_last=True)
    embeddings.sum().backward()
    assert x.grad is not None and model.encoder.layers[0].conv.weight.grad is not None  # group-norm model: plain conv
    weight_normed = tiny_model().train()
    weight_normed.decoder(torch.randn(1, 8, 20), channels_last=True).sum().backward()
    assert weight_normed.decoder.layers[0].conv.parametrizations.weight.original1.grad is not None


def snr_db(reference, estimate):
    return (10 * torch.log10(reference.pow(2).sum() / (reference - estimate).pow(2).sum())).item()


@pytest.mark.parametrize("source", ["noise", "speech"])
@pytest.mark.parametrize("name", ["encodec_48khz", "encodec_24khz"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_end_to_end(converted, name, dtype, source, request):
    """float16 and bfloat16 on the full-size models, on noise and on real speech (loud syllables overflowed float16
    once): finite, and within the stated distance of float32."""
    _, folder = converted[name]
    full = EncodecModel.from_pretrained(folder).eval()
    low = EncodecModel.from_pretrained(folder, dtype=dtype).eval()
    assert low.dtype == dtype
    rate, channels = full.config.sampling_rate, full.config.audio_channels
    if source == "noise":
        x = torch.randn(1, channels, int(1.2 * rate), generator=torch.Generator().manual_seed(0)) * 0.2
    else:
        x = request.getfixturevalue("speech")(rate, channels, 2.3)[None]
    mask = torch.ones(1, x.shape[-1])
    with torch.no_grad():
        enc = full.encode(x, mask, bandwidth=6.0)
        reference = full.decode(enc.audio_codes, enc.audio_scales, mask).audio_values
        decoded = low.decode(enc.audio_codes, enc.audio_scales, mask).audio_values  # same codes, low precision
        low_enc = low.encode(x, mask, bandwidth=6.0)
        roundtrip = low(x, mask, bandwidth=6.0).audio_values
        # audio in the model's own precision too, as after `model.half()`: the scales' clamp must fit the dtype
        low_input = low.encode(x.to(dtype), mask, bandwidth=6.0)
        low_input_audio = low.decode(low_input.audio_codes, low_input.audio_scales, mask).audio_values
    assert torch.isfinite(low_input_audio.float()).all() and snr_db(reference, low_input_audio.float()) > 10
    assert decoded.dtype == torch.float32 and torch.isfinite(decoded).all() and torch.isfinite(roundtrip).all()
    assert snr_db(reference, decoded) > 25
    assert low_enc.audio_codes.shape == enc.audio_codes.shape
    assert all(torch.isfinite(s).all() for s in low_enc.audio_scales if s is not None)


@pytest.mark.slow
@pytest.mark.parametrize("chunked", [False, True])
def test_torch_compile_runs_encoder_and_decoder_without_graph_breaks(chunked):
    """`fullgraph=True` makes any graph break an error: the hot path (convolutions, LSTM, norms, padding, folded
    weight norm) must trace whole, in the fast layout, over chunks of different lengths (recompiling for them)."""
    torch._dynamo.reset()
    model = tiny_model(chunked=chunked)
    model.set_inference_defaults(fast_encoding=True)
    x = torch.randn(2, model.config.audio_channels, 1000) * 0.3  # chunked: two full chunks and a shorter one
    mask = torch.ones(2, 1000)
    with torch.no_grad():
        eager = model.encode(x, mask, bandwidth=0.8)
        eager_audio = model.decode(eager.audio_codes, eager.audio_scales, mask).audio_values
        model.encoder.compile(fullgraph=True)
        model.decoder.compile(fullgraph=True)
        compiled_codes = model.encode(x, mask, bandwidth=0.8).audio_codes
        decoded = model.decode(eager.audio_codes, eager.audio_scales, mask).audio_values  # compiled decoder
    torch._dynamo.reset()
    assert compiled_codes.shape == eager.audio_codes.shape
    assert (compiled_codes != eager.audio_codes).float().mean() < 0.01
    # the compiled decoder on the eager codes: same audio up to float rounding
    assert relative_error(decoded, eager_audio) < 1e-5
    assert any(key.endswith("lstm.weight_ih_l0") for key in model.state_dict())  # keys unchanged by compile


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def test_a_long_24khz_decode_goes_through_the_decoder_in_pieces(monkeypatch):
    """A 56 KB file of 10 minutes needed 6.7 GB: the decoder ran on the whole clip. Long causal clips now go through
    it in pieces carrying the streaming state (memory figures: test_streaming.py, docs/performance.md)."""
    from encodec_hf import modeling_encodec

    model = tiny_model()
    codes = torch.randint(0, 16, (1, 1, 2, 300), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        whole = model.decode(codes, [None]).audio_values
        monkeypatch.setattr(modeling_encodec, "LONG_DECODE_FRAMES", 100)
        monkeypatch.setattr(modeling_encodec, "DECODE_PIECE_FRAMES", 37)
        calls = []
        real = model.decoder.forward
        monkeypatch.setattr(model.decoder, "forward", lambda *a, **k: calls.append(1) or real(*a, **k))
        pieces = model.decode(codes, [None]).audio_values
    assert len(calls) > 1
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-5 * float(whole.abs().max()))
