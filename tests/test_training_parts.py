"""Training parts (issue 13): codebooks that learn (parity with EnCodec 0.1.1), the training forward, the losses, the
balancer and the discriminator (parity with audiocraft 1.3.0), the mel spectrogram (against librosa), gradients
and bad input."""

import importlib.machinery
import math
import sys
import types

import numpy as np
import pytest
import torch
from torch import nn

from encodec_hf import EncodecModel
from encodec_hf.testing import (
    import_original_encodec,
    load_audiocraft_file,
    requires_audiocraft,
    requires_original,
    tiny_config,
    tiny_model,
)
from encodec_hf.training import (
    SISNR,
    Balancer,
    EncodecDiscriminatorConfig,
    EncodecMultiScaleSTFTDiscriminator,
    FeatureMatchingLoss,
    MelSpectrogram,
    MultiScaleMelSpectrogramLoss,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    l1_loss,
)
from encodec_hf.training.losses import mel_filters, spectrogram_padding

CODEBOOK_BUFFERS = ("inited", "cluster_size", "embed", "embed_avg")


def pair(seed=0, shape=(2, 1, 3000), noise=0.3, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    reference = torch.randn(shape, generator=generator, dtype=dtype) * 0.5
    return reference + noise * torch.randn(shape, generator=generator, dtype=dtype), reference


# -- codebooks that learn ----------------------------------------------------------------------------------------


@requires_original()
@pytest.mark.parity
def test_codebook_training_matches_encodec_0_1_1():
    """Several training steps from an uninitialised codebook (k-means on the first batch, dead-code replacement,
    EMA updates, quantizer dropout between 1 and 2 codebooks): the same codes, quantized vectors, commitment
    losses, gradients and buffers as EnCodec 0.1.1's ResidualVectorQuantizer, on the same inputs and seeds."""
    encodec = import_original_encodec()
    from encodec.quantization.vq import ResidualVectorQuantizer

    ours = EncodecModel(tiny_config(kmeans_iters=5)).quantizer.train()
    ours.reset_codebooks()
    torch.manual_seed(0)
    theirs = ResidualVectorQuantizer(dimension=8, n_q=2, bins=16, kmeans_iters=5).train()
    assert encodec is not None
    generator = torch.Generator().manual_seed(1)
    replaced = 0
    for step, num_quantizers in enumerate([2, 1, 2, 2, 1, 2]):
        embeddings = torch.randn(3, 8, 7, generator=generator)  # (B, D, F): 21 vectors for 16 entries
        replaced += sum(
            bool(layer.codebook.inited.item() and (layer.codebook.cluster_size < 2).any())
            for layer in ours.layers[:num_quantizers]
        )
        ours_in, theirs_in = embeddings.clone().requires_grad_(), embeddings.clone().requires_grad_()
        torch.manual_seed(100 + step)
        quantized, codes, loss = ours(ours_in, num_quantizers)
        torch.manual_seed(100 + step)
        their_quantized, their_codes, their_losses = theirs.vq(theirs_in, n_q=num_quantizers)
        their_loss = their_losses.mean()
        assert torch.equal(codes, their_codes)
        torch.testing.assert_close(quantized, their_quantized, rtol=0, atol=1e-6)
        torch.testing.assert_close(loss, their_loss, rtol=0, atol=1e-6)
        (quantized.pow(2).sum() + loss).backward()
        (their_quantized.pow(2).sum() + their_loss).backward()
        torch.testing.assert_close(ours_in.grad, theirs_in.grad, rtol=0, atol=1e-6)
        for layer, their_layer in zip(ours.layers, theirs.vq.layers):
            for name in CODEBOOK_BUFFERS:
                torch.testing.assert_close(
                    getattr(layer.codebook, name), getattr(their_layer._codebook, name), rtol=0, atol=1e-6
                )
    assert replaced >= 3, "the dead-code replacement path did not run"
    assert all(layer.codebook.inited.item() == 1 for layer in ours.layers)


def test_quantizer_in_eval_mode_is_encode_then_decode_and_changes_nothing():
    model = tiny_model()
    quantizer = model.quantizer.eval()
    before = {k: v.clone() for k, v in quantizer.state_dict().items()}
    embeddings = torch.randn(2, 8, 9)
    quantized, codes, loss = quantizer(embeddings, 2)
    assert torch.equal(codes, quantizer.encode(embeddings, 2))
    assert torch.equal(quantized, quantizer.decode(codes))
    assert loss.item() == 0
    assert all(torch.equal(before[k], v) for k, v in quantizer.state_dict().items())
    with pytest.raises(ValueError, match=r"num_quantizers must be in \[1, 2\], got 3"):
        quantizer(embeddings, 3)


def test_kmeans_worked_example():
    from encodec_hf.quantization import kmeans

    torch.manual_seed(0)
    means, sizes = kmeans(torch.tensor([[0.0], [0.1], [10.0], [10.2]]), 2, 10)
    order = means[:, 0].argsort()
    torch.testing.assert_close(means[order], torch.tensor([[0.05], [10.1]]))
    assert sizes[order].tolist() == [2, 2]


@pytest.mark.parametrize("chunked", [False, True])
def test_training_forward_gives_the_exact_codes_and_gradients_everywhere(chunked):
    """In train mode, the training forward returns the codes the exact path gives for the same clip (before the
    codebooks update), decoded audio of the input's length and a commitment loss; one backward reaches every
    parameter."""
    model = tiny_model(chunked=chunked)
    channels = model.config.audio_channels
    audio = torch.randn(1, channels, 333, generator=torch.Generator().manual_seed(3)) * 0.2
    expected = model.encode(audio, bandwidth=0.8).audio_codes
    model.train()
    output = model.training_forward(audio, bandwidth=0.8)
    assert torch.equal(output.audio_codes, expected)
    assert output.audio_values.shape == audio.shape
    assert output.commitment_loss.dim() == 0 and output.commitment_loss.item() > 0
    (l1_loss(output.audio_values, audio) + output.commitment_loss).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert not any(buffer.requires_grad for buffer in model.buffers())


def test_training_forward_draws_bandwidths_and_refuses_long_segments():
    model = tiny_model(chunked=True).train()
    generator = torch.Generator().manual_seed(0)
    drawn = {model.draw_bandwidth(generator) for _ in range(50)}
    assert drawn == {0.4, 0.8}
    audio = torch.randn(2, 2, 300) * 0.1
    codes = model.training_forward(audio).audio_codes  # bandwidth drawn
    assert codes.shape[2] in (1, 2)
    with pytest.raises(ValueError, match=r"at most one chunk \(400 samples = 1.0 s\).*got 401 samples"):
        model.training_forward(torch.randn(1, 2, 401))
    with pytest.raises(ValueError, match="bandwidth 5.0 is not one of"):
        model.training_forward(audio, bandwidth=5.0)
    # forward keeps one contract in either mode: encode + decode, the whole clip, whatever its length
    long = torch.randn(1, 2, 1000) * 0.1
    assert torch.equal(model(long, bandwidth=0.8).audio_codes, model.eval().encode(long, bandwidth=0.8).audio_codes)


def test_training_forward_scales_over_real_samples():
    """With a padding mask, a normalising model's scale for an item comes from its real samples only: on a causal
    normalising model, a quiet clip padded with zeros gets the codes it gets alone on every frame the padding
    cannot reach (all but the last two); scaling over the padded length (0.82 times the scale) would change them."""
    model = tiny_model(normalize=True)
    quiet = torch.randn(1, 1, 200, generator=torch.Generator().manual_seed(4)) * 0.01
    alone = model.encode(quiet, bandwidth=0.8).audio_codes  # (1, 1, 2, 50)
    padded = torch.cat([quiet, torch.zeros(1, 1, 100)], dim=-1)
    mask = torch.cat([torch.ones(1, 200), torch.zeros(1, 100)], dim=-1)
    model.train()
    codes = model.training_forward(padded, padding_mask=mask, bandwidth=0.8).audio_codes
    assert torch.equal(codes[..., :48], alone[..., :48])
    model.eval()
    assert not torch.equal(model.encode(padded * 200 / 300, bandwidth=0.8).audio_codes[..., :48], alone[..., :48])


def test_eval_forward_is_unchanged_by_a_training_step():
    """A training step changes the codebooks (that is its job); putting the model back in eval mode gives the
    inference path again: forward equals decode of encode."""
    model = tiny_model().train()
    model(torch.randn(2, 1, 400) * 0.2, bandwidth=0.8)
    model.eval()
    audio = torch.randn(1, 1, 257) * 0.2
    output = model(audio, bandwidth=0.8)
    encoded = model.encode(audio, bandwidth=0.8)
    assert output.commitment_loss is None
    assert torch.equal(output.audio_codes, encoded.audio_codes)


# -- mel spectrogram and the multi-scale mel loss (torchaudio absent: checked against librosa) ----------------------


@pytest.fixture(autouse=True)
def _quiet_librosa():
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Empty filters detected")
        yield


def librosa_mel(audio: np.ndarray, sample_rate, n_fft, hop, n_mels, f_min, f_max, normalized, log, floor=1e-5):
    """A reference built from librosa: the same padding (reflect, then zeros to fill the last window), librosa's
    STFT without centring (periodic Hann), its HTK mel filters without normalisation."""
    librosa = pytest.importorskip("librosa")
    reflect, zeros, _ = spectrogram_padding(audio.shape[-1], n_fft, hop)
    padded = np.pad(audio, (reflect, reflect), mode="reflect")
    padded = np.pad(padded, (0, zeros))
    spec = librosa.stft(padded, n_fft=n_fft, hop_length=hop, window="hann", center=False)
    if normalized:
        spec = spec / np.sqrt((librosa.filters.get_window("hann", n_fft, fftbins=True) ** 2).sum())
    fb = librosa.filters.mel(
        sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max or sample_rate // 2, htk=True, norm=None
    )
    mel = fb @ np.abs(spec) ** 2
    return np.log10(floor + mel) if log else mel


@pytest.mark.parametrize("n_fft,n_mels,f_min,f_max", [(64, 64, 0.0, None), (256, 64, 64.0, None), (512, 40, 20, 7000)])
def test_mel_filters_match_librosa(n_fft, n_mels, f_min, f_max):
    librosa = pytest.importorskip("librosa")
    ours = mel_filters(16000, n_fft, n_mels, f_min, f_max).numpy()
    reference = librosa.filters.mel(
        sr=16000, n_fft=n_fft, n_mels=n_mels, fmin=f_min, fmax=f_max or 8000, htk=True, norm=None
    )
    np.testing.assert_allclose(ours, reference.T, atol=1e-6)


@pytest.mark.parametrize("length", [1000, 777, 4096])
@pytest.mark.parametrize("normalized,log", [(False, False), (True, True)])
def test_mel_spectrogram_matches_a_librosa_reference(length, normalized, log):
    audio = np.random.default_rng(length).standard_normal(length).astype(np.float32) * 0.3
    mel = MelSpectrogram(16000, n_fft=256, hop_length=64, n_mels=64, normalized=normalized, log=log)
    ours = mel(torch.from_numpy(audio)[None, None])[0].double().numpy()
    reference = librosa_mel(audio.astype(np.float64), 16000, 256, 64, 64, 0.0, None, normalized, log)
    assert ours.shape == reference.shape == (64, math.ceil(length / 64))
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_mel_spectrogram_worked_example():
    """The docstring's example: a full-scale 1 kHz sine at 16 kHz falls on bin 16 of a 256-point STFT; with a
    periodic Hann window its power is 64^2 = 4,096 there and 32^2 = 1,024 in bins 15 and 17, nothing elsewhere,
    so mel band m holds 4,096 f[16, m] + 1,024 (f[15, m] + f[17, m]); normalised, divided by the window's squared
    norm (96)."""
    t = torch.arange(16000, dtype=torch.float64) / 16000
    sine = torch.sin(2 * math.pi * 1000 * t).float()[None, None]
    for normalized, divisor in ((False, 1.0), (True, 96.0)):
        mel = MelSpectrogram(16000, n_fft=256, hop_length=64, n_mels=64, log=False, normalized=normalized)
        middle = mel(sine)[0, :, 10:-10]  # away from the reflected edges
        f = mel.filters
        expected = (4096 * f[16] + 1024 * (f[15] + f[17])) / divisor
        torch.testing.assert_close(middle, expected[:, None].expand_as(middle), rtol=1e-4, atol=1e-3 / divisor)
        assert expected.max() > 100 / divisor  # the example is not vacuous
    assert spectrogram_padding(1000, 256, 64) == (96, 24, 16)


def test_multiscale_mel_loss_matches_the_librosa_reference_and_presets():
    estimate, reference = pair(seed=2, shape=(1, 1, 2400), noise=0.2)
    for name, kwargs in (
        ("default", dict(range_start=6, range_end=11, f_min=0.0, normalized=False, alphas=True)),
        ("paper", dict(range_start=5, range_end=12, f_min=0.0, normalized=True, alphas=False)),
        ("audiocraft", dict(range_start=6, range_end=11, f_min=64.0, normalized=True, alphas=False)),
    ):
        loss = MultiScaleMelSpectrogramLoss.from_preset(name, 24000)(estimate, reference).item()
        expected, total = 0.0, 0.0
        e, r = estimate[0, 0].double().numpy(), reference[0, 0].double().numpy()
        for i in range(kwargs["range_start"], kwargs["range_end"]):
            n_fft = 2**i
            args = (24000, n_fft, n_fft // 4, 64, kwargs["f_min"], None, kwargs["normalized"])
            alpha = math.sqrt(2**i - 1) if kwargs["alphas"] else 1.0
            expected += np.abs(librosa_mel(e, *args, False) - librosa_mel(r, *args, False)).mean()
            expected += alpha * ((librosa_mel(e, *args, True) - librosa_mel(r, *args, True)) ** 2).mean()
            total += alpha + 1
        if kwargs["normalized"]:
            expected /= total
        assert loss == pytest.approx(expected, rel=1e-3), name
    with pytest.raises(ValueError, match="unknown mel loss preset 'papr'"):
        MultiScaleMelSpectrogramLoss.from_preset("papr", 24000)


# -- losses against audiocraft 1.3.0 ---------------------------------------------------------------------------


@requires_audiocraft()
@pytest.mark.parity
@pytest.mark.parametrize("segment,overlap", [(0.05, 0.5), (0.03, 0.25), (0.125, 0.5)])
def test_sisnr_matches_audiocraft(segment, overlap):
    # (segment=None, the whole clip, trips an assert inside audiocraft 1.3.0's own SISNR: not comparable)
    theirs = load_audiocraft_file("losses/sisnr.py").SISNR(sample_rate=16000, segment=segment, overlap=overlap)
    ours = SISNR(sample_rate=16000, segment=segment, overlap=overlap)
    estimate, reference = pair(seed=5, shape=(3, 2, 2000))
    torch.testing.assert_close(ours(estimate, reference), theirs(estimate, reference), rtol=1e-5, atol=1e-5)


def test_sisnr_worked_example():
    """A reference plus independent noise at a tenth of its power is 10 dB SI-SNR: the loss is about -10."""
    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(1, 1, 200_000, generator=generator)
    noise = torch.randn(1, 1, 200_000, generator=generator)
    noise = noise - noise.mean()
    reference = reference - reference.mean()
    noise = noise - (noise * reference).sum() / reference.pow(2).sum() * reference  # orthogonal to the reference
    noise = noise * (reference.pow(2).sum() / noise.pow(2).sum() / 10).sqrt()
    assert SISNR(segment=None)(reference + noise, reference).item() == pytest.approx(-10.0, abs=1e-3)
    assert SISNR(segment=None)(3 * reference, reference).item() < -60  # scale-invariant: a perfect match


@requires_audiocraft()
@pytest.mark.parity
def test_adversarial_and_feature_matching_losses_match_audiocraft():
    theirs = load_audiocraft_file("adversarial/losses.py")
    generator = torch.Generator().manual_seed(7)
    fake_logits = [torch.randn(2, 1, 5, 9, generator=generator) for _ in range(3)]
    real_logits = [torch.randn(2, 1, 5, 9, generator=generator) for _ in range(3)]
    fake_maps = [[torch.randn(2, 4, 5, 9, generator=generator) for _ in range(4)] for _ in range(3)]
    real_maps = [[torch.randn(2, 4, 5, 9, generator=generator) * 2 for _ in range(4)] for _ in range(3)]

    for kind in ("hinge", "hinge2"):
        criterion = theirs.get_adv_criterion(kind)
        expected = sum(criterion(x) for x in fake_logits) / 3  # AdversarialLoss.forward, normalize=True
        torch.testing.assert_close(generator_adversarial_loss(fake_logits, kind), expected)
    real, fake = theirs.get_real_criterion("hinge"), theirs.get_fake_criterion("hinge")
    expected = sum(fake(f) + real(r) for f, r in zip(fake_logits, real_logits)) / 3  # train_adv
    torch.testing.assert_close(discriminator_adversarial_loss(real_logits, fake_logits), expected)

    feature_loss = theirs.FeatureMatchingLoss(nn.L1Loss(), normalize=True)
    expected = sum(feature_loss(f, r) for f, r in zip(fake_maps, real_maps)) / 3
    torch.testing.assert_close(FeatureMatchingLoss(relative=False)(fake_maps, real_maps), expected)
    # relative (the paper's l_feat): each layer's L1 over the mean absolute real feature
    relative = sum(
        sum((f - r).abs().mean() / r.abs().mean() for f, r in zip(fm, rm)) / 4 for fm, rm in zip(fake_maps, real_maps)
    )
    torch.testing.assert_close(FeatureMatchingLoss()(fake_maps, real_maps), relative / 3)


def test_hinge_losses_worked_example():
    logits = [torch.tensor([2.0, 0.5, -1.0])]
    assert generator_adversarial_loss(logits).item() == pytest.approx(-0.5)  # -mean
    assert generator_adversarial_loss(logits, "hinge2").item() == pytest.approx((0 + 0.5 + 2) / 3)
    # real: max(0, 1 - x) = 0, 0.5, 2; fake: max(0, 1 + x) = 3, 1.5, 0
    assert discriminator_adversarial_loss(logits, logits).item() == pytest.approx(2.5 / 3 + 4.5 / 3)


@requires_audiocraft()
@pytest.mark.parity
@pytest.mark.parametrize("balance_grads,per_batch_item", [(True, True), (True, False), (False, True)])
def test_balancer_matches_audiocraft(balance_grads, per_batch_item):
    """Five steps of the same tiny model and losses through both balancers: the same effective losses, the same
    gradients on every parameter (the EMA of the norms included), the same monitored ratios."""
    theirs_module = load_audiocraft_file("losses/balancer.py")
    weights = {"l1": 0.1, "msspec": 2.0, "sisnr": 1.0}
    options = dict(balance_grads=balance_grads, per_batch_item=per_batch_item, ema_decay=0.9, monitor=True)
    ours, theirs = Balancer(weights, **options), theirs_module.Balancer(weights, **options)
    torch.manual_seed(0)
    network = nn.Conv1d(1, 1, 5, padding=2)
    mel, sisnr = MultiScaleMelSpectrogramLoss(8000, range_start=5, range_end=8), SISNR(8000, segment=None)
    for step in range(5):
        audio, target = pair(seed=step, shape=(3, 1, 800))
        results = []
        for balancer in (ours, theirs):
            network.zero_grad()
            decoded = network(audio)
            losses = {"l1": l1_loss(decoded, target), "msspec": mel(decoded, target), "sisnr": sisnr(decoded, target)}
            effective = balancer.backward(losses, decoded)
            results.append((effective, [p.grad.clone() for p in network.parameters()], dict(balancer.metrics)))
        (ours_loss, ours_grads, ours_metrics), (their_loss, their_grads, their_metrics) = results
        torch.testing.assert_close(ours_loss, their_loss, rtol=1e-5, atol=1e-6)
        for a, b in zip(ours_grads, their_grads):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
        assert ours_metrics.keys() == their_metrics.keys()
        for key in ours_metrics:
            assert ours_metrics[key] == pytest.approx(their_metrics[key], rel=1e-5)


def test_balancer_gives_each_loss_its_share():
    """On the first call (the EMA is then the norm itself), each loss's gradient is rescaled to norm
    total_norm * w_i / sum(w): weights 1 and 3 and total_norm 2 give norms 0.5 and 1.5, whatever the losses' own
    scales (here 1e-3 and 1e3)."""
    target = torch.randn(4, 1, 100)
    x = torch.randn(4, 1, 100, requires_grad=True)
    losses = {"small": 1e-3 * l1_loss(x, target), "large": 1e3 * (x - target).pow(2).mean()}
    raw = {name: torch.autograd.grad(loss, [x], retain_graph=True)[0] for name, loss in losses.items()}
    Balancer({"small": 1.0, "large": 3.0}, total_norm=2.0, per_batch_item=False).backward(losses, x)
    parts = {"small": 0.5 * raw["small"] / raw["small"].norm(), "large": 1.5 * raw["large"] / raw["large"].norm()}
    torch.testing.assert_close(x.grad, parts["small"] + parts["large"])
    assert parts["small"].norm().item() == pytest.approx(0.5) and parts["large"].norm().item() == pytest.approx(1.5)


def test_balancer_without_balancing_is_a_weighted_sum():
    x = torch.randn(2, 1, 50, requires_grad=True)
    target = torch.randn(2, 1, 50)
    effective = Balancer({"a": 0.5, "b": 2.0}, balance_grads=False).backward(
        {"a": l1_loss(x, target), "b": (x - target).pow(2).mean()}, x
    )
    y = x.detach().clone().requires_grad_()
    expected = 0.5 * l1_loss(y, target) + 2.0 * (y - target).pow(2).mean()
    expected.backward()
    torch.testing.assert_close(x.grad, y.grad)
    torch.testing.assert_close(effective, expected.detach())


def test_balancer_refuses_bad_weights_and_losses():
    with pytest.raises(ValueError, match="weight of loss 'adv' must be non-negative, got -1"):
        Balancer({"adv": -1, "l1": 1})
    with pytest.raises(ValueError, match="at least one weight must be positive"):
        Balancer({"adv": 0})
    balancer = Balancer({"l1": 1.0, "msspec": 1.0})
    x = torch.randn(1, 1, 10, requires_grad=True)
    with pytest.raises(ValueError, match=r"got losses \['l1', 'mel'\] \(without a weight: \['mel'\]\)"):
        balancer.backward({"l1": x.abs().mean(), "mel": x.pow(2).mean()}, x)
    with pytest.raises(ValueError, match=r"the losses given \(\['b'\]\) all have weight 0"):
        Balancer({"a": 1.0, "b": 0.0}).backward({"b": x.abs().mean()}, x)
    with pytest.raises(ValueError, match="loss 'msspec' is nan"):
        balancer.backward({"l1": x.abs().mean(), "msspec": x.sum() * float("nan")}, x)
    with pytest.raises(ValueError, match="loss 'msspec' does not depend on the balancer's input"):
        balancer.backward({"l1": x.abs().mean(), "msspec": torch.ones((), requires_grad=True) * 2}, x)
    assert x.grad is None  # nothing was back-propagated


def test_balancer_state_round_trip():
    x = torch.randn(2, 1, 20, requires_grad=True)
    first = Balancer({"a": 1.0, "b": 1.0}, ema_decay=0.5)
    first.backward({"a": x.abs().mean(), "b": x.pow(2).mean()}, x)
    second = Balancer({"a": 1.0, "b": 1.0}, ema_decay=0.5)
    second.load_state_dict(first.state_dict())
    results = []
    for balancer in (first, second):
        y = x.detach().clone().requires_grad_()
        results.append(balancer.backward({"a": y.abs().mean(), "b": (2 * y).pow(2).mean()}, y))
    torch.testing.assert_close(results[0], results[1])


# -- gradients -------------------------------------------------------------------------------------------------


def test_losses_pass_gradcheck_in_float64():
    estimate, reference = pair(seed=9, shape=(1, 1, 64), dtype=torch.float64)
    estimate.requires_grad_()
    mel = MultiScaleMelSpectrogramLoss(1600, range_start=3, range_end=5, n_mels=8).double()
    checks = {
        "l1": lambda x: l1_loss(x, reference),
        "sisnr": lambda x: SISNR(1600, segment=0.02, overlap=0.5, epsilon=1e-12)(x, reference),
        "msspec": lambda x: mel(x, reference),
    }
    for name, function in checks.items():
        if name == "l1":  # |x| has a kink at 0 only; away from it, exact
            assert (estimate - reference).abs().min() > 1e-4
        assert torch.autograd.gradcheck(function, (estimate,), eps=1e-6, atol=1e-5), name
    fake = [torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)]
    real = [torch.randn(1, 2, 3, 4, dtype=torch.float64)]
    assert torch.autograd.gradcheck(lambda f: FeatureMatchingLoss()([[f]], [real]), (fake[0],))
    assert torch.autograd.gradcheck(lambda f: generator_adversarial_loss([f], "hinge2"), (fake[0],))
    assert torch.autograd.gradcheck(lambda f: discriminator_adversarial_loss(real, [f]), (fake[0],))


def test_balanced_gradient_is_the_gradient_of_the_effective_loss():
    """The balancer sends d(sum_i s_i l_i)/dy with its effective weights s_i held fixed: checked against
    gradcheck-verified autograd in float64."""
    estimate, reference = pair(seed=10, shape=(2, 1, 64), dtype=torch.float64)
    y = estimate.clone().requires_grad_()
    mel = MultiScaleMelSpectrogramLoss(1600, range_start=3, range_end=5, n_mels=8).double()
    balancer = Balancer({"l1": 1.0, "msspec": 3.0}, ema_decay=1.0)
    losses = {"l1": l1_loss(y, reference), "msspec": mel(y, reference)}
    norms = {}
    for name, loss in losses.items():
        (grad,) = torch.autograd.grad(loss, [y], retain_graph=True)
        norms[name] = grad.flatten(1).norm(dim=1).mean().item()
    balancer.backward(losses, y)
    scales = {name: w / 4.0 / (1e-12 + norms[name]) for name, w in balancer.weights.items()}

    def effective(x):
        return scales["l1"] * l1_loss(x, reference) + scales["msspec"] * mel(x, reference)

    x = estimate.clone().requires_grad_()
    assert torch.autograd.gradcheck(effective, (x,), eps=1e-6, atol=1e-5)
    effective(x).backward()
    torch.testing.assert_close(y.grad, x.grad)


# -- the discriminator -----------------------------------------------------------------------------------------


class _TorchaudioSpectrogram(nn.Module):
    """What torchaudio's `transforms.Spectrogram(power=None, center=False, window_fn=hann)` computes, from its
    documented definition: a `window` buffer, torch.stft over the flattened leading axes, and with `normalized`
    a division by the window's L2 norm. Stands in for torchaudio (no CPU build here) inside audiocraft's file."""

    def __init__(self, n_fft, hop_length, win_length, window_fn, normalized, center, pad_mode, power):
        super().__init__()
        assert power is None and center is False
        self.n_fft, self.hop_length, self.win_length, self.normalized = n_fft, hop_length, win_length, normalized
        self.register_buffer("window", window_fn(win_length))

    def forward(self, waveform):
        shape = waveform.shape
        spec = torch.stft(
            waveform.reshape(-1, shape[-1]),
            self.n_fft,
            self.hop_length,
            self.win_length,
            self.window,
            center=False,
            onesided=True,
            return_complex=True,
        )
        spec = spec.reshape(shape[:-1] + spec.shape[-2:])
        return spec / self.window.pow(2.0).sum().sqrt() if self.normalized else spec


def _package(name):
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, loader=None, is_package=True)
    module.__path__ = []
    return module


@pytest.fixture
def audiocraft_msstftd(monkeypatch):
    """audiocraft 1.3.0's msstftd.py, loaded by path with its own conv.py and base.py, torchaudio stood in for."""
    torchaudio = types.ModuleType("torchaudio")
    torchaudio.__spec__ = importlib.machinery.ModuleSpec("torchaudio", loader=None)
    torchaudio.transforms = types.SimpleNamespace(Spectrogram=_TorchaudioSpectrogram)
    monkeypatch.setitem(sys.modules, "torchaudio", torchaudio)
    for name in ("audiocraft", "audiocraft.adversarial", "audiocraft.adversarial.discriminators"):
        monkeypatch.setitem(sys.modules, name, _package(name))
    modules = _package("audiocraft.modules")
    modules.NormConv2d = load_audiocraft_file("modules/conv.py").NormConv2d
    monkeypatch.setitem(sys.modules, "audiocraft.modules", modules)
    base = load_audiocraft_file("adversarial/discriminators/base.py")
    monkeypatch.setitem(sys.modules, "audiocraft.adversarial.discriminators.base", base)
    return load_audiocraft_file("adversarial/discriminators/msstftd.py")


@requires_audiocraft()
@pytest.mark.parity
def test_discriminator_has_audiocrafts_keys_and_forward(audiocraft_msstftd):
    """audiocraft's recipe discriminator (filters 32, 5 scales, LeakyReLU 0.3): the same state-dict keys and
    shapes; its weights load into ours strictly and give the same logits and feature maps."""
    torch.manual_seed(0)
    theirs = audiocraft_msstftd.MultiScaleSTFTDiscriminator(
        filters=32,
        in_channels=1,
        out_channels=1,
        norm="weight_norm",
        n_ffts=[1024, 2048, 512, 256, 128],
        hop_lengths=[256, 512, 128, 64, 32],
        win_lengths=[1024, 2048, 512, 256, 128],
        activation="LeakyReLU",
        activation_params={"negative_slope": 0.3},
    )
    ours = EncodecMultiScaleSTFTDiscriminator(EncodecDiscriminatorConfig())
    their_state, our_state = theirs.state_dict(), ours.state_dict()
    assert list(our_state) == list(their_state)
    assert all(our_state[k].shape == their_state[k].shape for k in our_state)
    ours.load_state_dict(their_state, strict=True)
    audio = torch.randn(2, 1, 4800, generator=torch.Generator().manual_seed(1)) * 0.3
    logits, features = ours(audio, return_dict=False)
    their_logits, their_features = theirs(audio)
    assert len(logits) == len(their_logits) == 5
    for a, b in zip(logits, their_logits):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for maps, their_maps in zip(features, their_features):
        for a, b in zip(maps, their_maps):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_discriminator_saves_and_loads_in_hugging_face_format(tmp_path):
    config = EncodecDiscriminatorConfig(filters=4, n_ffts=[64, 32], hop_lengths=[16, 8], win_lengths=[64, 32])
    torch.manual_seed(0)
    model = EncodecMultiScaleSTFTDiscriminator(config)
    model.save_pretrained(tmp_path)
    loaded = EncodecMultiScaleSTFTDiscriminator.from_pretrained(tmp_path)
    saved = {k: v for k, v in model.config.to_dict().items() if k != "_name_or_path"}
    assert {k: v for k, v in loaded.config.to_dict().items() if k != "_name_or_path"} == saved
    audio = torch.randn(1, 1, 500)
    for a, b in zip(model(audio).logits, loaded(audio).logits):
        assert torch.equal(a, b)
    assert (tmp_path / "model.safetensors").is_file()


def test_discriminator_separates_stereo_channels_and_gets_gradients():
    config = EncodecDiscriminatorConfig(
        filters=4, n_ffts=[64, 32], hop_lengths=[16, 8], win_lengths=[64, 32], sep_channels=True
    )
    torch.manual_seed(0)
    model = EncodecMultiScaleSTFTDiscriminator(config)
    stereo = torch.randn(2, 2, 400)
    logits = model(stereo).logits
    mono = model(stereo.reshape(4, 1, 400)).logits
    assert logits[0].shape[0] == 4
    assert all(torch.equal(a, b) for a, b in zip(logits, mono))
    real, fake = model(stereo), model(torch.randn(2, 2, 400))
    # The generator's losses: the discriminator's own hinge loss gives a fresh discriminator's last bias exactly
    # zero gradient (all logits near 0: -1 from the real ones, +1 from the fake ones), so it is added, not alone.
    loss = generator_adversarial_loss(fake.logits) + FeatureMatchingLoss()(fake.features, real.features)
    loss = loss + discriminator_adversarial_loss(real.logits, fake.logits)
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_discriminator_refuses_bad_input_and_config():
    model = EncodecMultiScaleSTFTDiscriminator(
        EncodecDiscriminatorConfig(filters=4, n_ffts=[64], hop_lengths=[16], win_lengths=[64])
    )
    with pytest.raises(ValueError, match=r"takes 1-channel audio, got 2 channels"):
        model(torch.randn(1, 2, 400))
    with pytest.raises(ValueError, match=r"shaped \(batch, channels, samples\), got \(400,\)"):
        model(torch.randn(400))
    with pytest.raises(ValueError, match="shorter than the discriminator's window"):
        model(torch.randn(1, 1, 10))
    with pytest.raises(ValueError, match="one value per scale"):
        EncodecDiscriminatorConfig(n_ffts=[64, 32], hop_lengths=[16], win_lengths=[64])
    with pytest.raises(ValueError, match="sep_channels makes every channel a mono item"):
        EncodecDiscriminatorConfig(in_channels=2, sep_channels=True)


# -- bad input to the losses -------------------------------------------------------------------------------------


def test_losses_refuse_mismatched_or_broken_audio():
    estimate, reference = pair()
    mel = MultiScaleMelSpectrogramLoss(24000)
    for loss in (l1_loss, SISNR(24000), mel):
        with pytest.raises(ValueError, match=r"same shape .* got \(2, 1, 2999\) and \(2, 1, 3000\)"):
            loss(estimate[..., :-1], reference)
        with pytest.raises(ValueError, match="the estimate holds NaN or Inf"):
            loss(estimate * float("nan"), reference)
    with pytest.raises(ValueError, match="expected audio shaped"):
        l1_loss(estimate[0], reference[0])
    with pytest.raises(ValueError, match="built for 24000 Hz audio, got audio at 48000 Hz"):
        mel(estimate, reference, sample_rate=48000)
    with pytest.raises(ValueError, match="SISNR was built for 24000 Hz audio, got audio at 16000 Hz"):
        SISNR(24000)(estimate, reference, sample_rate=16000)
    with pytest.raises(ValueError, match="logits of 2 sub-discriminators for real audio, 1 for fake"):
        discriminator_adversarial_loss([torch.zeros(1), torch.zeros(1)], [torch.zeros(1)])
    with pytest.raises(ValueError, match="kind must be one of hinge, hinge2, got 'mse'"):
        generator_adversarial_loss([torch.zeros(1)], "mse")
    with pytest.raises(ValueError, match=r"feature maps differ in shape: \(1, 2\) and \(1, 3\)"):
        FeatureMatchingLoss()([[torch.zeros(1, 2)]], [[torch.zeros(1, 3)]])


def test_config_refuses_bad_training_settings():
    for setting, message in (
        ({"codebook_decay": 1.0}, r"codebook_decay must be in \[0, 1\), got 1.0"),
        ({"codebook_decay": float("nan")}, "codebook_decay must be a finite number"),
        ({"kmeans_iters": -1}, r"kmeans_iters must be an integer in \[0, 10000\], got -1"),
        ({"threshold_ema_dead_code": 2.5}, "threshold_ema_dead_code must be an integer"),
    ):
        with pytest.raises(ValueError, match=message):
            tiny_config(**setting)
    model = EncodecModel(tiny_config(codebook_decay=0.9))
    assert model.quantizer.layers[0].codebook.decay == 0.9


def test_chunk_scales_worked_example_and_mask():
    from encodec_hf.modeling_encodec import MAX_SCALE, chunk_scales

    chunks = torch.full((1, 2, 100), 0.5)
    assert chunk_scales(chunks).item() == pytest.approx(0.5 + 1e-8)
    padded = torch.cat([chunks, torch.zeros(1, 2, 300)], dim=-1)
    mask = torch.cat([torch.ones(1, 1, 100), torch.zeros(1, 1, 300)], dim=-1)
    assert chunk_scales(padded, mask).item() == pytest.approx(0.5 + 1e-8)  # the real samples only
    assert chunk_scales(padded).item() == pytest.approx(0.25 + 1e-8)  # the padding counted
    assert chunk_scales(torch.full((1, 1, 4), 1e30)).item() == pytest.approx(MAX_SCALE)
