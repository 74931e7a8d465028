"""The losses EnCodec trains with (paper, arXiv 2210.13438, section 3.4), with audiocraft 1.3.0's definitions.

- `l1_loss`: the time-domain reconstruction loss (lambda_t in the paper).
- `MultiScaleMelSpectrogramLoss`: the frequency-domain loss (lambda_f), audiocraft's `msspec`; presets for the
  paper's scales and for audiocraft's recipe in `MEL_LOSS_PRESETS`.
- `SISNR`: the negative SI-SNR, as audiocraft's `SISNR` (lower is better).
- `generator_adversarial_loss`, `discriminator_adversarial_loss`: hinge losses over the sub-discriminators'
  logits (lambda_g), `FeatureMatchingLoss` over their feature maps (lambda_feat).
- The quantizer's commitment loss comes with the model's training forward (`EncodecOutput.commitment_loss`).

Every loss takes `(estimate, reference)` in that order, as audiocraft's do, and refuses mismatched shapes with a
`ValueError` naming both. torchaudio (which audiocraft builds its spectrograms on) has no CPU build here, so the
mel spectrogram is written with `torch.stft` and transformers' `mel_filter_bank` (the HTK-scale, unnormalised
filters torchaudio's `MelSpectrogram` uses by default); the tests check both against librosa.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn
from torch.nn import functional as F

from ..chunking import conv_extra_padding


def check_pair(estimate: torch.Tensor, reference: torch.Tensor, name: str = "loss") -> None:
    """Refuse an (estimate, reference) pair that a loss cannot compare: not tensors, different shapes, not
    (batch, channels, samples), or holding NaN or Inf."""
    for label, value in (("estimate", estimate), ("reference", reference)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"{name}: the {label} must be a floating-point tensor, got {type(value).__name__}")
    if estimate.shape != reference.shape:
        raise ValueError(
            f"{name}: estimate and reference must have the same shape (batch, channels, samples), got "
            f"{tuple(estimate.shape)} and {tuple(reference.shape)}"
        )
    if estimate.dim() != 3:
        raise ValueError(f"{name}: expected audio shaped (batch, channels, samples), got {tuple(estimate.shape)}")
    if not (torch.isfinite(estimate).all() and torch.isfinite(reference).all()):
        bad = "estimate" if not torch.isfinite(estimate).all() else "reference"
        raise ValueError(f"{name}: the {bad} holds NaN or Inf")


def check_rate(given: int | None, expected: int, name: str) -> None:
    """Refuse audio whose stated sample rate is not the one a loss was built for (its windows are in samples)."""
    if given is not None and given != expected:
        raise ValueError(f"{name} was built for {expected} Hz audio, got audio at {given} Hz; resample it first")


def l1_loss(estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Time-domain L1: the mean absolute difference of the samples (the paper's l_t)."""
    check_pair(estimate, reference, "l1_loss")
    return F.l1_loss(estimate, reference)


# -- spectrograms ------------------------------------------------------------------------------------------------


def spectrogram_padding(length: int, n_fft: int, hop_length: int) -> tuple[int, int, int]:
    """The padding audiocraft's mel spectrogram adds before its STFT (`center=False`): `(n_fft - hop) // 2`
    reflected samples on each side, then zeros at the end so that the last window is full. Returns
    (reflected each side, zeros at the end, frames).

    Example: 1,000 samples, n_fft 256, hop 64: 96 reflected samples each side make 1,192; 24 zeros make the
    last window full (1,216 = 256 + 15 * 64), so 16 frames, ceil(1,000 / 64).
    """
    reflect = (n_fft - hop_length) // 2
    padded = length + 2 * reflect
    zeros = conv_extra_padding(padded, n_fft, hop_length, 0)
    frames = (padded + zeros - n_fft) // hop_length + 1
    return reflect, zeros, frames


def mel_filters(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float | None) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular HTK-scale filters, unnormalised: torchaudio's `melscale_fbanks`
    defaults (f_max None: half the sample rate, rounded down as torchaudio does)."""
    from transformers.audio_utils import mel_filter_bank

    f_max = float(sample_rate // 2) if f_max is None else float(f_max)
    with warnings.catch_warnings():
        # small windows (2^5 samples) leave some of 64 filters without an FFT bin; torchaudio warns too
        warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
        filters = mel_filter_bank(n_fft // 2 + 1, n_mels, f_min, f_max, sample_rate, norm=None, mel_scale="htk")
    return torch.from_numpy(filters).float()


def stft(audio: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor, normalized: bool) -> torch.Tensor:
    """(N, T) -> (N, n_fft // 2 + 1, frames) complex STFT without centring, as torchaudio's `Spectrogram(center=
    False)`: `window` (win_length <= n_fft samples) is centred in each frame; `normalized` divides by its L2 norm.
    The mel spectrogram here and the discriminator share it."""
    spec = torch.stft(
        audio, n_fft, hop_length, window.shape[0], window.to(audio.dtype), center=False, return_complex=True
    )
    return spec / window.pow(2).sum().sqrt() if normalized else spec


class MelSpectrogram(nn.Module):
    """audiocraft's `MelSpectrogramWrapper`: (B, C, T) audio -> (B, C * n_mels, ceil(T / hop)) mel power
    spectrogram, log10(floor_level + mel) when `log`.

    The audio is padded as `spectrogram_padding` says, then a periodic Hann window of `win_length` (centred in
    `n_fft`) runs without centring; `normalized` divides the STFT by the window's L2 norm (torchaudio's
    `normalized=True`). Worked example (the tests check it): a full-scale 1 kHz sine at 16 kHz, n_fft 256, hop
    64. 1 kHz is STFT bin 16 (16 kHz / 256 = 62.5 Hz a bin); a periodic Hann window puts power (128 / 2)^2 =
    4,096 in bin 16 and (64 / 2)^2 = 1,024 in bins 15 and 17, nothing elsewhere. So mel band m holds
    4,096 f[16, m] + 1,024 (f[15, m] + f[17, m]), f being the filters; with `normalized`, divided by the window's
    squared norm, 96.
    """

    def __init__(
        self,
        sample_rate: int,
        n_fft: int = 1024,
        hop_length: int = 256,
        win_length: int | None = None,
        n_mels: int = 80,
        f_min: float = 0.0,
        f_max: float | None = None,
        log: bool = True,
        normalized: bool = False,
        floor_level: float = 1e-5,
    ):
        super().__init__()
        win_length = n_fft if win_length is None else win_length
        if not (isinstance(n_fft, int) and 1 <= int(hop_length) and 1 <= win_length <= n_fft):
            raise ValueError(
                f"need 1 <= win_length <= n_fft and hop_length >= 1, got n_fft={n_fft!r}, "
                f"win_length={win_length!r}, hop_length={hop_length!r}"
            )
        self.n_fft, self.hop_length, self.win_length = n_fft, int(hop_length), win_length
        self.log, self.normalized, self.floor_level = log, normalized, floor_level
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        self.register_buffer("filters", mel_filters(sample_rate, n_fft, n_mels, f_min, f_max), persistent=False)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() == 2:
            audio = audio.unsqueeze(1)
        batch, channels, length = audio.shape
        reflect, zeros, _ = spectrogram_padding(length, self.n_fft, self.hop_length)
        audio = F.pad(audio, (reflect, reflect), "reflect")
        audio = F.pad(audio, (0, zeros))
        spec = stft(audio.reshape(batch * channels, -1), self.n_fft, self.hop_length, self.window, self.normalized)
        power = spec.abs().pow(2)
        mel = torch.matmul(power.transpose(1, 2), self.filters.to(power.dtype)).transpose(1, 2)  # (B * C, M, F)
        if self.log:
            mel = torch.log10(self.floor_level + mel)
        return mel.reshape(batch, channels * mel.shape[1], mel.shape[2])


MEL_LOSS_PRESETS = {
    # audiocraft 1.3.0's constructor defaults: windows 2^6 .. 2^10
    "default": {},
    # the paper's (section 3.4): windows 2^5 .. 2^11, a normalised STFT, alpha_i = 1 (audiocraft's L2 term is
    # on the log mel, kept here)
    "paper": {"range_start": 5, "range_end": 12, "normalized": True, "alphas": False},
    # audiocraft's compression recipe (config/solver/compression/default.yaml, `msspec`)
    "audiocraft": {"range_start": 6, "range_end": 11, "f_min": 64.0, "normalized": True, "alphas": False},
}


class MultiScaleMelSpectrogramLoss(nn.Module):
    """audiocraft's multi-scale mel loss (`msspec`): for each window 2^i, i in [range_start, range_end), hop
    2^i / 4, the L1 distance of the mel spectrograms plus alpha_i times the mean squared distance of their
    log10 (alpha_i = sqrt(2^i - 1) when `alphas`, else 1); `normalized` also divides the sum by
    sum(alpha_i + 1). Presets by name: `MultiScaleMelSpectrogramLoss.from_preset("paper", sample_rate)`.
    """

    def __init__(
        self,
        sample_rate: int,
        range_start: int = 6,
        range_end: int = 11,
        n_mels: int = 64,
        f_min: float = 0.0,
        f_max: float | None = None,
        normalized: bool = False,
        alphas: bool = True,
        floor_level: float = 1e-5,
    ):
        super().__init__()
        if not (isinstance(range_start, int) and isinstance(range_end, int) and 2 <= range_start < range_end <= 16):
            raise ValueError(f"need 2 <= range_start < range_end <= 16, got {range_start!r} and {range_end!r}")
        self.sample_rate = sample_rate
        self.normalized = normalized
        self.alphas = [math.sqrt(2**i - 1) if alphas else 1.0 for i in range(range_start, range_end)]
        self.total = sum(alpha + 1 for alpha in self.alphas)
        common = dict(sample_rate=sample_rate, n_mels=n_mels, f_min=f_min, f_max=f_max, normalized=normalized)
        common["floor_level"] = floor_level
        windows = [2**i for i in range(range_start, range_end)]
        self.linear = nn.ModuleList([MelSpectrogram(n_fft=w, hop_length=w // 4, log=False, **common) for w in windows])
        self.logs = nn.ModuleList([MelSpectrogram(n_fft=w, hop_length=w // 4, log=True, **common) for w in windows])

    @classmethod
    def from_preset(cls, name: str, sample_rate: int, **overrides) -> MultiScaleMelSpectrogramLoss:
        if name not in MEL_LOSS_PRESETS:
            raise ValueError(f"unknown mel loss preset {name!r}; expected one of {', '.join(MEL_LOSS_PRESETS)}")
        return cls(sample_rate, **{**MEL_LOSS_PRESETS[name], **overrides})

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """The loss of (B, C, T) `estimate` against `reference`; `sample_rate`, when given, must be the loss's."""
        check_pair(estimate, reference, type(self).__name__)
        check_rate(sample_rate, self.sample_rate, type(self).__name__)
        loss = estimate.new_zeros(())
        for alpha, linear, log in zip(self.alphas, self.linear, self.logs):
            loss = loss + F.l1_loss(linear(estimate), linear(reference))
            loss = loss + alpha * F.mse_loss(log(estimate), log(reference))
        return loss / self.total if self.normalized else loss


# -- SI-SNR ------------------------------------------------------------------------------------------------------


class SISNR(nn.Module):
    """The negative scale-invariant SNR in dB, as audiocraft's `SISNR` (lower is better: -10 means 10 dB).

    (B, C, T) pairs are cut into windows of `segment` seconds overlapping by `overlap` (the last one zero-padded;
    None: the whole clip), each window centred; the SI-SNR of each (channel, window) is averaged. `epsilon`
    (times the window length) keeps silent windows finite, and so scores a near-silent estimate about 0 dB: a
    loss for audiocraft's recipes, not a metric (`encodec_hf.metrics.si_snr` is one).

    Example: a reference plus independent noise at 1/10 of its power scores about -10 (10 dB).
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        segment: float | None = 20,
        overlap: float = 0.5,
        epsilon: float = torch.finfo(torch.float32).eps,
    ):
        super().__init__()
        if segment is not None and not segment > 0:
            raise ValueError(f"segment must be positive seconds or None, got {segment!r}")
        if not 0 <= overlap < 1:
            raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
        self.sample_rate, self.segment, self.overlap, self.epsilon = sample_rate, segment, overlap, epsilon

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """The negative SI-SNR of (B, C, T) `estimate` against `reference`; `sample_rate`, when given, must be
        the loss's (it sets the window length)."""
        check_pair(estimate, reference, "SISNR")
        check_rate(sample_rate, self.sample_rate, "SISNR")
        length = reference.shape[-1]
        if self.segment is None:
            frame = stride = length
        else:
            frame = int(self.segment * self.sample_rate)
            stride = int(frame * (1 - self.overlap))
        epsilon = self.epsilon * frame

        def windows(x):  # (B, C, T) -> (B, C, W, frame), zero-padded so that W = ceil(T / stride)
            count = math.ceil(length / stride)
            x = F.pad(x, (0, (count - 1) * stride + frame - length))
            x = x.unfold(-1, frame, stride)
            return x - x.mean(-1, keepdim=True)

        reference, estimate = windows(reference), windows(estimate)
        dot = (reference * estimate).sum(-1, keepdim=True)
        projection = dot * reference / (epsilon + reference.pow(2).sum(-1, keepdim=True))
        noise = estimate - projection
        ratio = torch.log10(epsilon + projection.pow(2).sum(-1)) - torch.log10(epsilon + noise.pow(2).sum(-1))
        return -10 * ratio.mean()


# -- adversarial losses ------------------------------------------------------------------------------------------

ADVERSARIAL_LOSSES = ("hinge", "hinge2")


def _check_logits(logits, name: str) -> list:
    if isinstance(logits, torch.Tensor):
        logits = [logits]
    if not logits or not all(isinstance(x, torch.Tensor) for x in logits):
        raise ValueError(f"{name}: expected a non-empty list of logit tensors (one per sub-discriminator)")
    return list(logits)


def generator_adversarial_loss(fake_logits, kind: str = "hinge") -> torch.Tensor:
    """The generator's adversarial loss, averaged over the sub-discriminators' logits on decoded audio.

    `hinge` (audiocraft's default): -mean(D_k(x_hat)). `hinge2`: mean(max(0, 1 - D_k(x_hat))), the paper's l_g.
    """
    fake_logits = _check_logits(fake_logits, "generator_adversarial_loss")
    if kind not in ADVERSARIAL_LOSSES:
        raise ValueError(f"kind must be one of {', '.join(ADVERSARIAL_LOSSES)}, got {kind!r}")
    total = fake_logits[0].new_zeros(())
    for logits in fake_logits:
        if logits.numel() == 0:
            continue
        total = total + (-logits.mean() if kind == "hinge" else F.relu(1 - logits).mean())
    return total / len(fake_logits)


def discriminator_adversarial_loss(real_logits, fake_logits) -> torch.Tensor:
    """The discriminators' hinge loss (the paper's L_d, audiocraft's `hinge` and `hinge2`): the mean over
    sub-discriminators of mean(max(0, 1 - D_k(x))) + mean(max(0, 1 + D_k(x_hat))). Pass logits of detached
    decoded audio."""
    real_logits = _check_logits(real_logits, "discriminator_adversarial_loss")
    fake_logits = _check_logits(fake_logits, "discriminator_adversarial_loss")
    if len(real_logits) != len(fake_logits):
        raise ValueError(
            f"got logits of {len(real_logits)} sub-discriminators for real audio, {len(fake_logits)} for fake"
        )
    total = real_logits[0].new_zeros(())
    for real, fake in zip(real_logits, fake_logits):
        total = total + F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return total / len(real_logits)


class FeatureMatchingLoss(nn.Module):
    """Feature matching between the discriminators' feature maps on decoded and real audio (the paper's
    l_feat): for each sub-discriminator k and layer l, the mean absolute difference of the feature maps, divided
    (when `relative`) by the mean absolute value of the real ones; averaged over layers, then sub-discriminators.

    `relative=False` gives audiocraft 1.3.0's number: its `FeatureMatchingLoss` computes the real features' mean
    absolute value but never divides by it (docs/training.md).
    """

    def __init__(self, relative: bool = True):
        super().__init__()
        self.relative = relative

    def forward(self, fake_features, real_features) -> torch.Tensor:
        if len(fake_features) != len(real_features) or not fake_features:
            raise ValueError(
                f"feature maps of {len(fake_features)} sub-discriminators for fake audio and {len(real_features)} "
                "for real audio; expected the same non-zero number"
            )
        total = None
        for fake_maps, real_maps in zip(fake_features, real_features):
            if len(fake_maps) != len(real_maps) or not fake_maps:
                raise ValueError(f"{len(fake_maps)} fake and {len(real_maps)} real feature maps; expected equal, > 0")
            loss = fake_maps[0].new_zeros(())
            for fake, real in zip(fake_maps, real_maps):
                if fake.shape != real.shape:
                    raise ValueError(f"feature maps differ in shape: {tuple(fake.shape)} and {tuple(real.shape)}")
                distance = F.l1_loss(fake, real)
                if self.relative:
                    distance = distance / real.abs().mean().clamp(min=torch.finfo(real.dtype).tiny)
                loss = loss + distance
            loss = loss / len(fake_maps)
            total = loss if total is None else total + loss
        return total / len(fake_features)
