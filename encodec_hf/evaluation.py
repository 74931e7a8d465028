"""`encodec_hf.evaluate` and `encodec-hf evaluate`: how close the decoded audio is, at how many real bits per second,
how fast, for one model or several side by side; tables, a rate-distortion plot and spectrograms.

    results = evaluate(model, "clips/", bandwidths=[1.5, 6.0], output="eval")  # or a dataset, or (array, rate)
    results.summary  # [{"model", "bandwidth", "kbps", "si_snr", "si_snr_ci95", ...}, ...]

Every clip is converted to the model's rate and channels (the feature extractor), encoded on the exact path and
decoded at each bandwidth; the metrics (`encodec_hf.metrics`) compare the decoded clip with the converted one. The
real bit rate is the size of the .ecdc file (EnCodec 0.1.1's format, header included) over the clip's seconds, and
with `use_lm` also of the file coded with the model's language model. Encode and decode are timed per clip (x real
time on this machine, with torch's thread count recorded).
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import metrics as metric_functions

DEFAULT_METRICS = metric_functions.ALL_METRICS  # all of them; PESQ and STOI only when installed


@dataclass
class EvaluationResult:
    """Per-clip rows, the summary per (model, bandwidth), and what was skipped and why."""

    rows: list = field(default_factory=list)
    summary: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    environment: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"environment": self.environment, "notes": self.notes, "summary": self.summary, "rows": self.rows}

    def markdown(self, metrics: list[str]) -> str:
        """The summary as a Markdown table: the mean over clips per metric, ± the half-width of its 95 % interval
        (Student's t) from 3 clips on, and under the table what ± means and how many clips there were."""
        arrows = {name: "↑" if metric_functions.HIGHER_IS_BETTER[name] else "↓" for name in metrics}
        header = ["model", "kbps (nominal)", "kbps (.ecdc)", *(["kbps (.ecdc + LM)"] if self._has_lm() else [])]
        header += ["clips"] + [f"{name} {arrows[name]}" for name in metrics] + ["encode x RT", "decode x RT"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for entry in self.summary:
            cells = [entry["model"], f"{entry['bandwidth']:g}", f"{entry['kbps']:.2f}"]
            if self._has_lm():
                cells.append(f"{entry['kbps_lm']:.2f}" if entry.get("kbps_lm") is not None else "")
            cells.append(str(entry["clips"]))
            for name in metrics:
                mean, interval = entry.get(name), entry.get(name + "_ci95")
                cells.append("" if mean is None else f"{mean:.3f}" + ("" if interval is None else f" ± {interval:.3f}"))
            cells += [f"{entry['encode_x_real_time']:.1f}", f"{entry['decode_x_real_time']:.1f}"]
            lines.append("| " + " | ".join(cells) + " |")
        legend = (
            f"\nMean over the clips of each row; ± is the half-width of the 95 % interval of that mean (Student's t), "
            f"given from {MIN_CLIPS_FOR_INTERVAL} clips on. x RT: seconds of audio per second of compute."
        )
        return "\n".join(lines) + "\n" + legend

    def _has_lm(self) -> bool:
        return any(entry.get("kbps_lm") is not None for entry in self.summary)


MIN_CLIPS_FOR_INTERVAL = 3  # with 2 clips the t interval spans +-12.7 standard errors: no information


def _ci95(values: list[float]) -> float | None:
    """Half-width of the 95 % interval of the mean (Student's t), or None below MIN_CLIPS_FOR_INTERVAL values."""
    if len(values) < MIN_CLIPS_FOR_INTERVAL:
        return None
    try:
        from scipy.stats import t

        quantile = float(t.ppf(0.975, len(values) - 1))
    except ImportError:  # scipy is optional: the normal approximation
        quantile = statistics.NormalDist().inv_cdf(0.975)
    return quantile * statistics.stdev(values) / math.sqrt(len(values))


def _clips(audio_or_dataset, sampling_rate, audio_column: str, max_clips: int | None) -> list[tuple[str, object, int]]:
    """(name, audio, rate) of each clip: an array with `sampling_rate`, a list of (array, rate), a dataset, or
    what `encodec-hf tokenize` takes (a save_to_disk folder, a folder of audio files, a Hub dataset name)."""
    from .tokenization import load_audio_dataset

    if isinstance(audio_or_dataset, (np.ndarray, torch.Tensor)):
        if sampling_rate is None:
            raise ValueError("evaluate was given an array: pass its sampling_rate")
        return [("clip-0", audio_or_dataset, sampling_rate)]
    if isinstance(audio_or_dataset, list):
        clips = []
        for index, item in enumerate(audio_or_dataset):
            if not (isinstance(item, tuple) and len(item) == 2):
                raise ValueError(f"a list of clips holds (array, sampling_rate) pairs; item {index} is not one")
            clips.append((f"clip-{index}", item[0], item[1]))
        return clips[:max_clips]
    dataset = load_audio_dataset(audio_or_dataset, None, audio_column)
    names = dataset["file"] if "file" in dataset.column_names else [f"row-{i}" for i in range(len(dataset))]
    count = len(dataset) if max_clips is None else min(max_clips, len(dataset))
    # the cells as they are: each is read when its turn comes (`read_audio_cell`), so one bad file is one clip
    return [(str(names[index]), dataset[index][audio_column], sampling_rate) for index in range(count)]


def _chosen_metrics(requested, notes: list) -> list[str]:
    import importlib.util

    chosen = []
    for name in requested or DEFAULT_METRICS:
        if name not in metric_functions.ALL_METRICS:
            raise ValueError(f"unknown metric {name!r}; the metrics are {', '.join(metric_functions.ALL_METRICS)}")
        package = metric_functions.OPTIONAL.get(name)
        if package and importlib.util.find_spec(package) is None:
            notes.append(f"{name} skipped: `pip install {package}` (an optional extra) to compute it")
            continue
        chosen.append(name)
    return chosen


@dataclass
class ClipResult:
    """One clip at one bandwidth: the row of numbers, the decoded audio, the .ecdc bytes (and with the language
    model, when asked and present)."""

    row: dict
    decoded: np.ndarray  # (channels, samples), float32
    ecdc: bytes
    ecdc_lm: bytes | None = None


def evaluate_clip(codec, reference: np.ndarray, bandwidth: float, metrics, use_lm: bool = False) -> ClipResult:
    """Encode `reference` ((channels, samples) at the model's rate) on the exact path, decode it, and measure:
    `bandwidth`, `kbps` (the .ecdc file's size over the clip's seconds), `kbps_lm` (with the language model, when
    `use_lm` and the model has one), `encode_x_real_time`, `decode_x_real_time`, and each metric of `metrics`
    (None, with `<metric>_error`, where the metric cannot score the clip). What `evaluate` and the demo share."""
    from .ecdc.api import compress_codes

    sampling_rate = codec.config.sampling_rate
    seconds = reference.shape[-1] / sampling_rate
    audio = torch.from_numpy(reference)[None]  # (1, channels, samples)
    with torch.no_grad():
        start = time.perf_counter()
        encoded = codec.encode(audio, bandwidth=bandwidth)
        encode_time = time.perf_counter() - start
        start = time.perf_counter()
        decoded = codec.decode(encoded.audio_codes, encoded.audio_scales, torch.ones(1, audio.shape[-1]))
        decode_time = time.perf_counter() - start
    estimate = decoded.audio_values[0].float().numpy()
    ecdc = compress_codes(codec, encoded.audio_codes, encoded.audio_scales, audio.shape[-1])
    row = {
        "bandwidth": bandwidth,
        "kbps": 8 * len(ecdc) / seconds / 1000,
        "encode_x_real_time": seconds / encode_time,
        "decode_x_real_time": seconds / decode_time,
    }
    ecdc_lm = None
    if use_lm and codec.language_model is not None:
        ecdc_lm = compress_codes(codec, encoded.audio_codes, encoded.audio_scales, audio.shape[-1], use_lm=True)
        row["kbps_lm"] = 8 * len(ecdc_lm) / seconds / 1000
    for metric in metrics:
        try:
            row[metric] = metric_functions.compute(metric, reference, estimate, sampling_rate)
        except Exception as error:  # PESQ refuses silence, for one: the row says so, the run goes on
            row[metric] = None
            row[f"{metric}_error"] = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ClipResult(row, estimate, ecdc, ecdc_lm)


def evaluate(
    model,
    audio_or_dataset,
    bandwidths=None,
    use_lm: bool = False,
    metrics=None,
    *,
    sampling_rate: int | None = None,
    audio_column: str = "audio",
    max_clips: int | None = None,
    output: str | Path | None = None,
    figures: int = 4,
    progress=None,
    on_error: str = "raise",
) -> EvaluationResult:
    """Evaluate one model, or several (a list, compared side by side), on the clips of `audio_or_dataset`.

    Args:
        model: an `EncodecModel` (or an exported model's runner), a list of them, or names/folders
            `EncodecModel.from_pretrained` takes (or folders `encodec-hf export` wrote).
        audio_or_dataset: an array (with `sampling_rate`), a list of (array, rate) pairs, a `datasets.Dataset`, or
            what `encodec-hf tokenize` takes as INPUT.
        bandwidths: kbps to evaluate (default: every bandwidth of each model); a model skips the ones it lacks.
        use_lm: also code each clip with the model's entropy-coding language model and report that bit rate.
        metrics: names from `encodec_hf.metrics.ALL_METRICS` (default: all; PESQ and STOI are skipped with a
            note when their packages are not installed). PESQ and STOI are meant for speech.
        output: a folder for results.json, results.csv, results.md, rate_distortion.png and spectrograms/ (the
            first `figures` clips of each model).
        progress: a callable `progress(done, total)` called after each (model, clip).
        on_error: "raise" (default) stops at the first clip that cannot be read or is empty or not finite; "skip"
            leaves it out and says so in the notes.
    """
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    from .modeling_onnx import load_model
    from .processing import EncodecFeatureExtractor

    result = EvaluationResult()
    chosen = _chosen_metrics(metrics, result.notes)
    models = model if isinstance(model, (list, tuple)) else [model]
    models = [load_model(m) if isinstance(m, (str, os.PathLike)) else m for m in models]
    clips = _clips(audio_or_dataset, sampling_rate, audio_column, max_clips)
    if not clips:
        raise ValueError("evaluate found no clips")
    decoded_for_figures: dict = {}
    total, done = len(models) * len(clips), 0
    modes = [m.training for m in models]  # put back afterwards: evaluating must not change the caller's models
    try:
        for model_index, codec in enumerate(models):
            codec.eval()
            config = codec.config
            label = str(getattr(config, "_name_or_path", "") or f"model-{model_index}")
            if sum(1 for m in models if (getattr(m.config, "_name_or_path", "") or "") == label) > 1 or not label:
                label = f"{label or 'model'}-{model_index}"
            extractor = EncodecFeatureExtractor.from_model_config(config)
            chosen_bandwidths = [b for b in (bandwidths or config.target_bandwidths) if b in config.target_bandwidths]
            missing = [b for b in (bandwidths or []) if b not in config.target_bandwidths]
            if missing:
                result.notes.append(f"{label}: no bandwidth {', '.join(f'{b:g}' for b in missing)} kbps; skipped")
            if use_lm and codec.language_model is None:
                result.notes.append(f"{label} has no language model: its bit rate with one is not reported")
            for clip_index, (name, value, rate) in enumerate(clips):
                try:
                    reference = extractor.prepare(value, rate, index=clip_index)  # (channels, samples), model's rate
                except Exception as error:
                    if on_error == "raise":
                        raise ValueError(
                            f"cannot evaluate clip {name}: {error}; pass on_error='skip' (--on-error skip)"
                        ) from error
                    if model_index == 0:
                        result.notes.append(f"clip {name} skipped: {str(error).splitlines()[0]}")
                    done += 1
                    continue
                seconds = reference.shape[-1] / config.sampling_rate
                for bandwidth in chosen_bandwidths:
                    clip = evaluate_clip(codec, reference, bandwidth, chosen, use_lm)
                    result.rows.append({"model": label, "clip": name, "seconds": seconds, **clip.row})
                    if clip_index < figures:
                        figure = decoded_for_figures.setdefault((label, name), (reference, config.sampling_rate, {}))
                        figure[2][bandwidth] = clip.decoded
                done += 1
                if progress is not None:
                    progress(done, total)
    finally:
        for codec, training in zip(models, modes):
            if training:  # exported-model runners are never in training mode, and have no `train`
                codec.train()
    result.summary = _summarise(result.rows, chosen)
    result.environment = _environment(chosen, result.rows)
    if output is not None:
        write_report(result, chosen, Path(output), decoded_for_figures)
    return result


def _environment(chosen: list[str], rows: list) -> dict:
    """What a result depends on besides the audio: versions, machine, threads, metrics, models."""
    import transformers

    from . import __version__

    return {
        "encodec_hf": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch_threads": torch.get_num_threads(),
        "metrics": chosen,
        "models": sorted({row["model"] for row in rows}),
    }


def _summarise(rows: list, metrics: list[str]) -> list:
    groups: dict = {}
    for row in rows:
        groups.setdefault((row["model"], row["bandwidth"]), []).append(row)
    summary = []
    for (model, bandwidth), members in groups.items():
        entry = {"model": model, "bandwidth": bandwidth, "clips": len(members)}
        seconds = sum(r["seconds"] for r in members)
        # the bit rate over all the audio (a long clip weighs more), the speeds over all the time
        entry["kbps"] = sum(r["kbps"] * r["seconds"] for r in members) / seconds
        if all("kbps_lm" in r for r in members):
            entry["kbps_lm"] = sum(r["kbps_lm"] * r["seconds"] for r in members) / seconds
        entry["encode_x_real_time"] = seconds / sum(r["seconds"] / r["encode_x_real_time"] for r in members)
        entry["decode_x_real_time"] = seconds / sum(r["seconds"] / r["decode_x_real_time"] for r in members)
        for metric in metrics:
            values = [r[metric] for r in members if r.get(metric) is not None]
            entry[metric] = statistics.fmean(values) if values else None
            entry[f"{metric}_ci95"] = _ci95(values) if values else None
            entry[f"{metric}_clips"] = len(values)
        summary.append(entry)
    return summary


def write_report(result: EvaluationResult, metrics: list[str], output: Path, decoded: dict) -> None:
    """results.json, results.csv, results.md, rate_distortion.png and spectrograms/*.png in `output`."""
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(result.to_dict(), indent=1))
    columns = sorted({key for row in result.rows for key in row}, key=lambda k: (k not in ("model", "clip"), k))
    with open(output / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(result.rows)
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        result.notes.append("figures skipped: `pip install matplotlib` (or encodec-hf[eval]) to draw them")
        decoded = {}
    notes = "".join(f"- {note}\n" for note in result.notes)
    (output / "results.md").write_text(result.markdown(metrics) + "\n" + (f"\n{notes}" if notes else ""))
    if not decoded:
        return
    _plot_rate_distortion(result, metrics, output / "rate_distortion.png")
    for (model, clip), (reference, rate, estimates) in decoded.items():
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{model}--{clip}")
        _plot_spectrograms(reference, rate, estimates, output / "spectrograms" / f"{safe}.png", f"{model}: {clip}")


def _plot_rate_distortion(result: EvaluationResult, metrics: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if any(entry.get(m) is not None for entry in result.summary)] or metrics[:1]
    columns = min(4, len(shown))
    rows = -(-len(shown) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for axis in axes.flat[len(shown) :]:
        axis.set_visible(False)
    for axis, metric in zip(axes.flat, shown):
        for model in dict.fromkeys(entry["model"] for entry in result.summary):
            entries = sorted((e for e in result.summary if e["model"] == model), key=lambda e: e["kbps"])
            points = [(e["kbps"], e[metric], e[f"{metric}_ci95"] or 0.0) for e in entries if e.get(metric) is not None]
            if points:
                x, y, error = zip(*points)
                axis.errorbar(x, y, yerr=error, marker="o", capsize=3, label=model)
        arrow = "higher is better" if metric_functions.HIGHER_IS_BETTER[metric] else "lower is better"
        axis.set_title(f"{metric} ({arrow})", fontsize=9)
        axis.set_xlabel("real kbps (.ecdc)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)  # in every panel: each is read on its own
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _log_spectrogram(audio: np.ndarray, n_fft: int = 1024) -> np.ndarray:
    tensor = torch.from_numpy(np.ascontiguousarray(audio.mean(axis=0), dtype=np.float32))
    spectrum = torch.stft(tensor, n_fft, n_fft // 4, window=torch.hann_window(n_fft), return_complex=True).abs()
    return (20 * torch.log10(spectrum + 1e-6)).numpy()


def _plot_spectrograms(reference, rate: int, estimates: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    panels = [("original", _log_spectrogram(reference))]
    for bandwidth, estimate in sorted(estimates.items()):
        panels.append((f"{bandwidth:g} kbps", _log_spectrogram(estimate)))
    last = max(estimates)
    panels.append((f"difference at {last:g} kbps", _log_spectrogram(estimates[last] - reference)))
    figure, axes = plt.subplots(len(panels), 1, figsize=(8, 1.8 * len(panels)), sharex=True)
    top = float(panels[0][1].max())
    seconds = reference.shape[-1] / rate
    for axis, (name, spectrogram) in zip(np.atleast_1d(axes), panels):
        image = axis.imshow(
            spectrogram,
            origin="lower",
            aspect="auto",
            vmin=top - 80,
            vmax=top,
            extent=(0, seconds, 0, rate / 2000),
            cmap="magma",
        )
        axis.set_ylabel("kHz")
        axis.set_title(name, fontsize=9)
        figure.colorbar(image, ax=axis, label="dB", pad=0.01)
    np.atleast_1d(axes)[-1].set_xlabel("seconds")
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


__all__ = ["evaluate", "evaluate_clip", "ClipResult", "EvaluationResult", "write_report", "DEFAULT_METRICS"]
