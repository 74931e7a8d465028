"""`encodec_hf.metrics` against independent implementations and worked examples; `evaluate` and its command end to
end on tiny models: rows, summaries, real bit rates, intervals, notes, files and figures."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from encodec_hf import EncodecLanguageModel, evaluate, metrics
from encodec_hf.cli import main
from encodec_hf.ecdc import compress_codes
from encodec_hf.testing import save_tiny_folder, synthetic_music, tiny_model

RATE = 16_000


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    reference = synthetic_music(0, seconds=1.5, rate=RATE, channels=2)[0]
    estimate = (reference + 0.05 * rng.standard_normal(reference.shape)).astype(np.float32)
    return reference, estimate


def test_si_snr_worked_example():
    """Reference plus noise orthogonal to it at 1/100 of its energy (after removing the means): 20 dB exactly."""
    rng = np.random.default_rng(1)
    reference = rng.standard_normal(8_000)
    reference -= reference.mean()
    noise = rng.standard_normal(8_000)
    noise -= noise.mean()
    noise -= noise @ reference / (reference @ reference) * reference  # orthogonal to the reference
    noise *= np.sqrt(0.01 * (reference @ reference) / (noise @ noise))
    assert metrics.si_snr(reference, reference + noise) == pytest.approx(20.0, abs=1e-6)
    assert metrics.si_snr(reference, 3.0 * (reference + noise)) == pytest.approx(20.0, abs=1e-6)  # scale-invariant
    assert metrics.si_snr(reference, reference) > 100


def test_scale_invariant_ratios_match_torchmetrics(pair):
    from torchmetrics.functional.audio import (
        scale_invariant_signal_distortion_ratio,
        scale_invariant_signal_noise_ratio,
    )

    reference, estimate = pair
    ref, est = torch.from_numpy(reference).double(), torch.from_numpy(estimate + 0.01).double()  # a DC offset
    assert metrics.si_snr(reference, estimate + 0.01) == pytest.approx(
        scale_invariant_signal_noise_ratio(est, ref).mean().item(), abs=1e-6
    )
    assert metrics.si_sdr(reference, estimate + 0.01) == pytest.approx(
        scale_invariant_signal_distortion_ratio(est, ref).mean().item(), abs=1e-6
    )
    assert metrics.si_sdr(reference, estimate + 0.01) != pytest.approx(metrics.si_snr(reference, estimate + 0.01))


def test_stft_distance_matches_auraloss(pair):
    import auraloss

    reference, estimate = pair
    expected = auraloss.freq.MultiResolutionSTFTLoss()(
        torch.from_numpy(estimate)[None], torch.from_numpy(reference)[None]
    )
    assert metrics.stft_distance(reference, estimate) == pytest.approx(expected.item(), rel=1e-5)
    assert metrics.stft_distance(reference, reference) == pytest.approx(0.0, abs=1e-6)


def test_mel_distance_matches_librosa(pair):
    """DAC's definition rebuilt with librosa: slaney mel filters over the centred STFT magnitude (reflect padding),
    L1 of log10(max(mel, 1e-5)), summed over the seven (window, mels) scales."""
    import librosa

    reference, estimate = pair
    total = 0.0
    for window, mels in metrics.MEL_SCALES:
        spectra = [
            librosa.feature.melspectrogram(
                y=a.astype(np.float64), sr=RATE, n_fft=window, hop_length=window // 4, n_mels=mels, power=1.0,
                center=True, pad_mode="reflect",
            )
            for a in (estimate, reference)
        ]  # fmt: skip
        total += np.abs(np.log10(np.maximum(spectra[0], 1e-5)) - np.log10(np.maximum(spectra[1], 1e-5))).mean()
    assert metrics.mel_distance(reference, estimate, RATE) == pytest.approx(total, rel=1e-4)
    assert metrics.mel_distance(reference, reference, RATE) == 0.0


def test_pesq_and_stoi_wrap_their_packages(pair):
    """The wrappers give the packages' numbers on the channel mean at 16 kHz, and rank clean above noisy."""
    from pesq import pesq
    from pystoi import stoi

    reference, estimate = pair
    mono_ref, mono_est = reference.mean(axis=0).astype(np.float64), estimate.mean(axis=0).astype(np.float64)
    assert metrics.pesq(reference, estimate, RATE) == pytest.approx(pesq(RATE, mono_ref, mono_est, "wb"), abs=1e-4)
    assert metrics.stoi(reference, estimate, RATE) == pytest.approx(stoi(mono_ref, mono_est, RATE), abs=1e-4)
    noisier = reference + 0.3 * np.random.default_rng(2).standard_normal(reference.shape)
    assert metrics.stoi(reference, reference, RATE) > metrics.stoi(reference, noisier, RATE)


def test_bad_metric_input_is_refused():
    with pytest.raises(ValueError, match="same shape"):
        metrics.si_snr(np.zeros((1, 10)), np.zeros((1, 11)))
    with pytest.raises(ValueError, match="finite"):
        metrics.l1(np.zeros(10), np.full(10, np.nan))
    with pytest.raises(ValueError, match="more than 1024 samples"):
        metrics.mel_distance(np.ones(500), np.ones(500), RATE)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.compute("visqol", np.ones(10), np.ones(10), RATE)


@pytest.fixture(scope="module")
def clips():
    return [(synthetic_music(i, seconds=5.0 + i, rate=1_000, channels=1)[0], 1_000) for i in range(3)]


@pytest.mark.slow
def test_evaluate_rows_summary_and_files(clips, tmp_path):
    model = tiny_model()
    model.language_model = EncodecLanguageModel.for_model(model.config).eval()
    other = tiny_model(seed=3)
    result = evaluate(
        [model, other], clips, bandwidths=[0.4, 0.8, 3.0], use_lm=True, metrics=["si_snr", "l1"], output=tmp_path
    )
    assert len(result.rows) == 2 * 3 * 2 and len(result.summary) == 4  # models x clips x bandwidths
    assert any("no bandwidth 3 kbps" in note for note in result.notes)
    assert any("has no language model" in note for note in result.notes)  # the second model
    # the real bit rate is the .ecdc file's size over the clip's seconds
    row = result.rows[0]
    reference = torch.from_numpy(model_input(model, clips[0]))[None]
    with torch.no_grad():
        encoded = model.encode(reference, bandwidth=row["bandwidth"])
    size = len(compress_codes(model, encoded.audio_codes, encoded.audio_scales, reference.shape[-1]))
    assert row["kbps"] == pytest.approx(8 * size / row["seconds"] / 1000)
    assert "kbps_lm" in row and "kbps_lm" not in result.rows[-1]
    # the summary's mean and 95 % interval (Student's t with 2 degrees of freedom)
    entry = result.summary[0]
    values = [r["si_snr"] for r in result.rows if (r["model"], r["bandwidth"]) == (entry["model"], entry["bandwidth"])]
    assert entry["si_snr"] == pytest.approx(np.mean(values))
    assert entry["si_snr_ci95"] == pytest.approx(4.302653 * np.std(values, ddof=1) / np.sqrt(3), rel=1e-5)
    written = json.loads((tmp_path / "results.json").read_text())
    assert written["summary"] == json.loads(json.dumps(result.summary))
    assert (tmp_path / "results.csv").read_text().count("\n") == len(result.rows) + 1
    assert "| si_snr ↑ | l1 ↓ |" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "rate_distortion.png").stat().st_size > 10_000
    assert len(list((tmp_path / "spectrograms").glob("*.png"))) == 2 * 3  # every clip of both models (figures=4)


def model_input(model, clip):
    from encodec_hf import EncodecFeatureExtractor

    return EncodecFeatureExtractor.from_model_config(model.config).prepare(clip[0], clip[1])


def test_evaluate_takes_an_array_and_a_dataset(clips):
    import datasets

    model = tiny_model().train()
    one = evaluate(model, clips[0][0], bandwidths=[0.8], sampling_rate=1_000, metrics=["si_snr"])
    assert model.training  # evaluated in eval mode, handed back as it came
    dataset = datasets.Dataset.from_dict({"audio": [{"array": clips[0][0], "sampling_rate": 1_000}]})
    same = evaluate(model, dataset, bandwidths=[0.8], metrics=["si_snr"])
    assert one.rows[0]["si_snr"] == same.rows[0]["si_snr"]
    with pytest.raises(ValueError, match="pass its sampling_rate"):
        evaluate(model, clips[0][0])
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(model, clips, metrics=["visqol"])


def test_evaluate_command(tmp_path, clips, capsys):
    folder = save_tiny_folder(tmp_path / "model", tiny_model())
    (tmp_path / "audio").mkdir()
    for index, (audio, rate) in enumerate(clips):
        sf.write(tmp_path / "audio" / f"{index}.wav", audio.T, rate)
    out = tmp_path / "out"
    command = ["evaluate", str(tmp_path / "audio"), "--model", str(folder), "-b", "0.8", "--output", str(out)]
    assert main([*command, "--metrics", "si_snr", "mel_distance", "stoi"]) == 0
    printed = capsys.readouterr().out
    assert "| mel_distance ↓ |" in printed and (out / "results.md").exists()
    assert main(command) == 2  # a non-empty output needs -f
    assert "pass -f" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "audio" / "0.wav"), "--model", str(folder), "--metrics", "nope"]) == 2
    assert "unknown metric 'nope'" in capsys.readouterr().err


def test_intervals_need_three_clips_and_the_table_says_what_they_are(clips):
    model = tiny_model()
    two = evaluate(model, clips[:2], bandwidths=[0.8], metrics=["si_snr"])
    assert two.summary[0]["clips"] == 2 and two.summary[0]["si_snr_ci95"] is None
    table = two.markdown(["si_snr"])
    row = [line for line in table.splitlines() if line.startswith("| model")][0]
    assert "| clips |" in row and "±" not in table.split("\n\n")[0].split("\n", 2)[2]
    assert "± is the half-width of the 95 % interval" in table and "from 3 clips on" in table
    three = evaluate(model, clips, bandwidths=[0.8], metrics=["si_snr"])
    assert " ± " in three.markdown(["si_snr"]).splitlines()[2]


def test_unreadable_clips_stop_or_are_skipped(tmp_path, clips, capsys):
    folder = save_tiny_folder(tmp_path / "model", tiny_model())
    (tmp_path / "audio").mkdir()
    for index, (audio, rate) in enumerate(clips):
        sf.write(tmp_path / "audio" / f"{index}.wav", audio.T, rate)
    (tmp_path / "audio" / "1.wav").write_bytes(b"RIFF garbage")
    command = ["evaluate", str(tmp_path / "audio"), "--model", str(folder), "-b", "0.8", "--metrics", "si_snr"]
    assert main(command) == 2
    assert "cannot evaluate clip 1.wav" in capsys.readouterr().err
    assert main([*command, "--on-error", "skip"]) == 0
    captured = capsys.readouterr()
    assert "note: clip 1.wav skipped" in captured.out and "| 2 |" in captured.out
    assert "evaluate" in captured.err  # the progress bar
