"""The numbers codec papers report, as plain functions of a reference and a decoded clip.

Each takes float arrays (or tensors) shaped (channels, samples) or (samples,), at one sample rate, and returns one
float for the clip (channels averaged). Higher is better for `si_snr`, `si_sdr`, `pesq` and `stoi`; lower is better
for `mel_distance`, `stft_distance` and `l1`. Each is checked against an independent implementation in
tests/test_evaluation.py (torchmetrics, auraloss, librosa, the `pesq` and `pystoi` packages).
"""

from __future__ import annotations

import numpy as np
import torch

HIGHER_IS_BETTER = {
    "si_snr": True,
    "si_sdr": True,
    "mel_distance": False,
    "stft_distance": False,
    "l1": False,
    "pesq": True,
    "stoi": True,
}


def _pair(reference, estimate) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 (channels, samples), checked to match."""
    reference = np.atleast_2d(np.asarray(reference, dtype=np.float64))
    estimate = np.atleast_2d(np.asarray(estimate, dtype=np.float64))
    if reference.shape != estimate.shape or reference.ndim != 2 or reference.shape[-1] == 0:
        raise ValueError(
            f"reference and estimate must be (channels, samples) of the same shape, got {reference.shape} and "
            f"{estimate.shape}"
        )
    if not (np.isfinite(reference).all() and np.isfinite(estimate).all()):
        raise ValueError("reference and estimate must be finite")
    return reference, estimate


def si_sdr(reference, estimate, zero_mean: bool = False, eps: float = 1e-8) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (Le Roux et al. 2019), per channel, averaged: the
    estimate is split into the reference scaled to fit it best (target) and the rest (distortion).

    Worked example: an estimate of reference + noise orthogonal to it, with the noise's energy 1/100 of the
    reference's, gives 10 log10(100) = 20 dB; a scaled copy of the reference gives a very large value (no
    distortion). `zero_mean=True` removes each channel's mean first: that is `si_snr`.
    """
    reference, estimate = _pair(reference, estimate)
    if zero_mean:
        reference = reference - reference.mean(axis=-1, keepdims=True)
        estimate = estimate - estimate.mean(axis=-1, keepdims=True)
    alpha = ((estimate * reference).sum(-1, keepdims=True) + eps) / ((reference**2).sum(-1, keepdims=True) + eps)
    target = alpha * reference
    distortion = estimate - target
    ratio = ((target**2).sum(-1) + eps) / ((distortion**2).sum(-1) + eps)
    return float(np.mean(10 * np.log10(ratio)))


def si_snr(reference, estimate) -> float:
    """Scale-invariant SNR in dB (higher is better): `si_sdr` of the zero-mean signals. audiocraft reports it with
    the sign flipped (a loss); this is the figure papers quote (6.67 dB for EnCodec at 24 kHz, 6 kbps)."""
    return si_sdr(reference, estimate, zero_mean=True)


def l1(reference, estimate) -> float:
    """Mean absolute difference of the waveforms."""
    reference, estimate = _pair(reference, estimate)
    return float(np.abs(reference - estimate).mean())


def _long_enough(audio: torch.Tensor, n_fft: int, name: str) -> None:
    if audio.shape[-1] <= n_fft // 2:  # the centred STFT reflects n_fft / 2 samples at each end
        raise ValueError(f"{name} needs clips of more than {n_fft // 2} samples, got {audio.shape[-1]}")


def _magnitude(audio: torch.Tensor, n_fft: int, hop: int, window_length: int, eps: float) -> torch.Tensor:
    # (N, T) -> (N, n_fft // 2 + 1, frames): |STFT|, torch.stft's centred reflect padding, a Hann window
    _long_enough(audio, n_fft, "stft_distance")
    window = torch.hann_window(window_length, dtype=audio.dtype)
    spectrum = torch.stft(audio, n_fft, hop, window_length, window, return_complex=True)
    return torch.sqrt(torch.clamp(spectrum.real**2 + spectrum.imag**2, min=eps))


STFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))  # (n_fft, hop, window): auraloss' defaults


def stft_distance(reference, estimate, resolutions=STFT_RESOLUTIONS, eps: float = 1e-8) -> float:
    """Multi-resolution STFT distance (lower is better), auraloss' `MultiResolutionSTFTLoss` with its defaults: for
    each (n_fft, hop, window), spectral convergence ||Y - X||_F / ||Y||_F plus the mean absolute difference of log
    magnitudes, averaged over the resolutions. 0 for identical audio."""
    reference, estimate = _pair(reference, estimate)
    x = torch.from_numpy(estimate).float()
    y = torch.from_numpy(reference).float()
    total = 0.0
    for n_fft, hop, window in resolutions:
        x_mag, y_mag = _magnitude(x, n_fft, hop, window, eps), _magnitude(y, n_fft, hop, window, eps)
        convergence = torch.linalg.norm(y_mag - x_mag) / torch.linalg.norm(y_mag)
        log_magnitude = torch.nn.functional.l1_loss(torch.log(x_mag), torch.log(y_mag))
        total += float(convergence + log_magnitude)
    return total / len(resolutions)


MEL_SCALES = tuple(zip((32, 64, 128, 256, 512, 1024, 2048), (5, 10, 20, 40, 80, 160, 320)))  # (window, mels)


def mel_distance(reference, estimate, sampling_rate: int, scales=MEL_SCALES, clamp_eps: float = 1e-5) -> float:
    """DAC's mel distance (lower is better), as its training and evaluation configure `MelSpectrogramLoss`: for
    windows of 32 to 2,048 samples (hop a quarter, Hann, centred) with 5 to 320 mel bands (slaney, 0 Hz to
    Nyquist) over the STFT magnitude, the mean absolute difference of log10(max(mel, 1e-5)), summed over the 7
    scales. 0 for identical audio."""
    import warnings

    from transformers.audio_utils import mel_filter_bank

    reference, estimate = _pair(reference, estimate)
    x = torch.from_numpy(estimate).float()
    y = torch.from_numpy(reference).float()
    total = 0.0
    _long_enough(x, max(window for window, _ in scales), "mel_distance")
    for window, mels in scales:
        with warnings.catch_warnings():  # 5 bands over a 32-sample window leave some band without a bin
            warnings.filterwarnings("ignore", message="At least one mel filter has all zero values")
            filters = mel_filter_bank(
                window // 2 + 1, mels, 0.0, sampling_rate / 2, sampling_rate, norm="slaney", mel_scale="slaney"
            )
        bank = torch.from_numpy(filters).float().T  # (mels, window // 2 + 1): librosa's filters, as DAC's
        window_tensor = torch.hann_window(window)
        x_mel = bank @ torch.stft(x, window, window // 4, window, window_tensor, return_complex=True).abs()
        y_mel = bank @ torch.stft(y, window, window // 4, window, window_tensor, return_complex=True).abs()
        total += float(
            torch.nn.functional.l1_loss(x_mel.clamp(min=clamp_eps).log10(), y_mel.clamp(min=clamp_eps).log10())
        )
    return total


def _resample_mono(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    import soxr

    mono = audio.mean(axis=0)
    return mono if rate == target else soxr.resample(mono, rate, target, quality="VHQ")


def pesq(reference, estimate, sampling_rate: int) -> float:
    """Wide-band PESQ (ITU-T P.862.2, MOS-LQO, about 1 to 4.6; higher is better) of the channel means at 16 kHz,
    with the `pesq` package (an optional extra). Meant for speech."""
    from pesq import pesq as compute

    reference, estimate = _pair(reference, estimate)
    ref = _resample_mono(reference, sampling_rate, 16_000)
    est = _resample_mono(estimate, sampling_rate, 16_000)
    return float(compute(16_000, ref, est, "wb"))


def stoi(reference, estimate, sampling_rate: int) -> float:
    """Short-time objective intelligibility (0 to 1; higher is better) of the channel means, with `pystoi` (an
    optional extra; it resamples to 10 kHz itself). Meant for speech."""
    from pystoi import stoi as compute

    reference, estimate = _pair(reference, estimate)
    return float(compute(reference.mean(axis=0), estimate.mean(axis=0), sampling_rate, extended=False))


OPTIONAL = {"pesq": "pesq", "stoi": "pystoi"}  # metric -> the package it needs


def _rate_free(function):
    return lambda reference, estimate, sampling_rate: function(reference, estimate)


_BY_NAME = {  # in the order reports list them
    "si_snr": _rate_free(si_snr),
    "si_sdr": _rate_free(si_sdr),
    "mel_distance": mel_distance,
    "stft_distance": _rate_free(stft_distance),
    "l1": _rate_free(l1),
    "pesq": pesq,
    "stoi": stoi,
}
ALL_METRICS = tuple(_BY_NAME)


def compute(name: str, reference, estimate, sampling_rate: int) -> float:
    """One metric by name (one of ALL_METRICS)."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown metric {name!r}; the metrics are {', '.join(ALL_METRICS)}")
    return _BY_NAME[name](reference, estimate, sampling_rate)


__all__ = ["si_sdr", "si_snr", "l1", "stft_distance", "mel_distance", "pesq", "stoi", "compute", "ALL_METRICS"]
