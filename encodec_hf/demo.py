"""`encodec-hf demo`: a browser page (Gradio, an optional extra) to hear and see what EnCodec does to a clip.

    pip install "encodec-hf[demo]"
    encodec-hf demo --model facebook/encodec_24khz --model facebook/encodec_48khz [--port 7860]

"Compare" decodes an uploaded or recorded clip at every bandwidth of the chosen model: a player for the original and
for each result, the real bit rate and file size with and without the language model, SI-SNR and mel distance (PESQ
and STOI too when installed: they are meant for speech), the spectrograms, and the .ecdc files to download. "Blind
A/B" plays two versions of the clip (the original or a bandwidth, drawn at random, names hidden), takes a vote and
appends it to a CSV file, then shows which was which. The numbers come from `encodec_hf.metrics`; the page only
arranges them. A file that cannot be read gets a message in the page, not a traceback.
"""

from __future__ import annotations

import csv
import hashlib
import random
import shutil
import tempfile
import time
from pathlib import Path

MAX_BANDWIDTHS = 6  # players prepared on the page (the 24 kHz model has 5 bandwidths)
PAGE_METRICS = ("si_snr", "mel_distance", "pesq", "stoi")
MAX_SECONDS = 60.0  # the longest upload decoded (encoding at every bandwidth grows with the clip's length)
KEPT_RESULTS = 8  # result folders kept in the work folder; older ones are deleted


def display_name(name: str) -> str:
    """What the page shows for a model: a Hub id as it is, a local folder by its last part (never the server's
    path). Example: "/srv/models/encodec_24khz" -> "encodec_24khz"."""
    path = Path(name)
    return path.name if path.is_absolute() or path.exists() else name


def _require_gradio():
    try:
        import gradio
    except ImportError as error:
        raise ImportError('the demo needs Gradio: pip install "encodec-hf[demo]" (or pip install gradio)') from error
    return gradio


class DemoBackend:
    """What the page calls, without Gradio: decode a clip at every bandwidth, and keep the A/B votes."""

    def __init__(
        self,
        models: dict,
        votes_path: str | Path,
        workdir: str | Path | None = None,
        max_seconds: float = MAX_SECONDS,
    ):
        if not models:
            raise ValueError("the demo needs at least one model")
        self.models = models
        self.votes_path = Path(votes_path)
        self.max_seconds = max_seconds
        self.owns_workdir = workdir is None  # a temporary folder of its own: `close()` removes it
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="encodec-demo-"))
        self.workdir.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        """Remove the work folder when the backend made it (the server stops)."""
        if self.owns_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _prune(self, keep: Path) -> None:
        """Keep the newest KEPT_RESULTS result folders (and `keep`), delete the rest."""
        folders = sorted((p for p in self.workdir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in [p for p in folders if p != keep][: max(0, len(folders) - KEPT_RESULTS)]:
            shutil.rmtree(old, ignore_errors=True)

    def _read(self, path) -> tuple:
        """The upload as (audio, rate), its length checked from the header before it is decoded; errors name the
        file by its own name, never the server's path to it."""
        import soundfile

        from .audio_io import read_audio

        shown = Path(str(path)).name
        try:
            seconds = soundfile.info(str(path)).duration
        except Exception:
            seconds = None  # soundfile cannot read the header: read_audio below says why
        if seconds is not None and seconds > self.max_seconds:
            raise ValueError(f"{shown} lasts {seconds:.1f} s; this demo takes clips of at most {self.max_seconds:g} s")
        try:
            audio, rate = read_audio(path)
        except Exception as error:
            message = str(error).splitlines()[0].replace(repr(str(path)), repr(shown)).replace(str(path), shown)
            raise ValueError(f"cannot read this file as audio: {message}") from None
        if audio.shape[-1] > self.max_seconds * rate:
            raise ValueError(f"{shown} is longer than {self.max_seconds:g} s, the longest clip this demo takes")
        return audio, rate

    def compare(self, path, model_name: str, progress=None) -> dict:
        """Decode the audio file at `path` at every bandwidth of `model_name`: the files written, the table rows
        and the spectrogram figure. Raises ValueError with a message for the page."""
        from .audio_io import write_audio
        from .evaluation import _chosen_metrics, _plot_spectrograms, evaluate_clip
        from .processing import EncodecFeatureExtractor

        if not path:
            raise ValueError("upload or record a clip first")
        if model_name not in self.models:
            raise ValueError(f"unknown model {model_name!r}; choose one of {', '.join(self.models)}")
        model = self.models[model_name]
        config = model.config
        audio, rate = self._read(path)
        reference = EncodecFeatureExtractor.from_model_config(config).prepare(audio, rate)  # (C, T) at model rate
        seconds = reference.shape[-1] / config.sampling_rate
        key = hashlib.sha256(reference.tobytes()).hexdigest()[:12]
        folder = self.workdir / f"{key}-{model_name.replace('/', '_')}"
        folder.mkdir(parents=True, exist_ok=True)
        self._prune(keep=folder)
        original = folder / "original.wav"
        write_audio(original, reference, config.sampling_rate)
        chosen = _chosen_metrics(PAGE_METRICS, [])  # PESQ and STOI when their packages are installed
        rows, players, files, estimates = [], [], [], {}
        bandwidths = config.target_bandwidths
        for index, bandwidth in enumerate(bandwidths):
            if progress is not None:
                progress(index / len(bandwidths), f"{bandwidth:g} kbps")
            clip = evaluate_clip(model, reference, bandwidth, chosen, use_lm=True)
            row = {**clip.row, "bytes": len(clip.ecdc)}
            ecdc = folder / f"{bandwidth:g}kbps.ecdc"
            ecdc.write_bytes(clip.ecdc)
            files.append(str(ecdc))
            if clip.ecdc_lm is not None:
                row["bytes_lm"] = len(clip.ecdc_lm)
                ecdc_lm = folder / f"{bandwidth:g}kbps-lm.ecdc"
                ecdc_lm.write_bytes(clip.ecdc_lm)
                files.append(str(ecdc_lm))
            wav = folder / f"{bandwidth:g}kbps.wav"
            write_audio(wav, clip.decoded, config.sampling_rate)
            rows.append(row)
            players.append((f"{bandwidth:g} kbps", str(wav)))
            estimates[bandwidth] = clip.decoded
        figure = folder / "spectrograms.png"
        _plot_spectrograms(
            reference, config.sampling_rate, estimates, figure, f"{display_name(model_name)}: {Path(path).name}"
        )
        if progress is not None:
            progress(1.0, "done")
        return {
            "original": str(original),
            "players": players,
            "files": files,  # by bandwidth, lowest first
            "rows": rows,
            "metrics": chosen,
            "figure": str(figure),
            "seconds": seconds,
        }

    @staticmethod
    def table(result: dict) -> str:
        """The numbers as a Markdown table (arrows: which way is better)."""
        from . import metrics

        has_lm = any("kbps_lm" in row for row in result["rows"])
        header = ["kbps (nominal)", "kbps (.ecdc)", "bytes"] + (["kbps with LM", "bytes with LM"] if has_lm else [])
        arrows = {name: "↑" if metrics.HIGHER_IS_BETTER[name] else "↓" for name in result["metrics"]}
        header += [f"{name} {arrows[name]}" for name in result["metrics"]] + ["x real time"]
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in result["rows"]:
            cells = [f"{row['bandwidth']:g}", f"{row['kbps']:.2f}", str(row["bytes"])]
            if has_lm:
                cells += [f"{row['kbps_lm']:.2f}", str(row["bytes_lm"])]
            cells += ["" if row.get(name) is None else f"{row[name]:.3f}" for name in result["metrics"]]
            round_trip = 1 / (1 / row["encode_x_real_time"] + 1 / row["decode_x_real_time"])
            cells.append(f"{round_trip:.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        return f"{result['seconds']:.2f} s of audio\n\n" + "\n".join(lines)

    @staticmethod
    def draw_pair(result: dict, generator: random.Random) -> list[tuple[str, str]]:
        """Two different versions of the clip (the original or a bandwidth), in random order: [(name, file), ...]."""
        versions = [("original", result["original"]), *result["players"]]
        return generator.sample(versions, 2)

    def vote(self, pair: list, choice: str, clip: str) -> str:
        """Append a vote to the CSV file; returns the reveal."""
        if not pair:
            raise ValueError("draw a pair first")
        if choice not in ("A", "B", "same"):
            raise ValueError("choose A, B or no difference")
        new = not self.votes_path.exists()
        self.votes_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.votes_path, "a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["time", "clip", "a", "b", "vote"])
            writer.writerow([time.strftime("%Y-%m-%dT%H:%M:%S"), clip, pair[0][0], pair[1][0], choice])
        return f"A was **{pair[0][0]}**, B was **{pair[1][0]}**. Vote saved to `{self.votes_path}`."


def build_demo(
    models: dict,
    votes_path: str | Path = "encodec-votes.csv",
    seed: int | None = None,
    backend: DemoBackend | None = None,
):
    """The Gradio page (a `gradio.Blocks`) for `models` ({name: EncodecModel}); `launch()` it. Pass a `backend`
    to choose its work folder and longest clip, and to `close()` it when the server stops."""
    gr = _require_gradio()
    backend = backend or DemoBackend(models, votes_path)
    generator = random.Random(seed)
    names = [(display_name(name), name) for name in models]  # (shown, value): no server path on the page

    tracker = gr.Progress()  # Gradio fills in the page's progress bar through this default

    def run(path, model_name, progress=tracker):
        try:
            result = backend.compare(path, model_name, lambda fraction, text: progress(fraction, desc=text))
        except ValueError as error:
            raise gr.Error(str(error)) from None
        updates = []
        for slot in range(MAX_BANDWIDTHS):
            if slot < len(result["players"]):
                label, wav = result["players"][slot]
                updates.append(gr.Audio(value=wav, label=label, visible=True))
            else:
                updates.append(gr.Audio(value=None, visible=False))
        return [result["original"], backend.table(result), *updates, result["figure"], result["files"], result]

    def new_pair(result):
        if not result:
            raise gr.Error("decode a clip in the Compare tab first")
        pair = backend.draw_pair(result, generator)
        return result["original"], pair[0][1], pair[1][1], pair, "Listen to A and B, then vote."

    def cast(pair, choice, result):
        try:
            return backend.vote(pair, choice, Path(result["original"]).parent.name if result else "")
        except ValueError as error:
            raise gr.Error(str(error)) from None

    with gr.Blocks(title="EnCodec: hear and see") as demo:
        gr.Markdown("# EnCodec: hear and see\nUpload or record a clip; it is decoded at every bandwidth.")
        state = gr.State(None)
        pair_state = gr.State([])
        with gr.Tab("Compare"):
            with gr.Row():
                audio_in = gr.Audio(
                    sources=["upload", "microphone"], type="filepath", label="Audio", elem_id="input-audio"
                )
                with gr.Column():
                    model_in = gr.Dropdown(names, value=names[0][1], label="Model", elem_id="model")
                    go = gr.Button("Encode and decode", variant="primary", elem_id="run")
            table = gr.Markdown(elem_id="numbers")
            original = gr.Audio(label="original", interactive=False, elem_id="original")
            players = [
                gr.Audio(visible=False, interactive=False, elem_id=f"decoded-{slot}") for slot in range(MAX_BANDWIDTHS)
            ]
            figure = gr.Image(label="spectrograms", type="filepath", elem_id="spectrograms")
            downloads = gr.File(label=".ecdc files", file_count="multiple", elem_id="downloads")
        with gr.Tab("Blind A/B"):
            gr.Markdown(
                "Decode a clip in the Compare tab first. Then: two versions of it (the original or a bandwidth), "
                "in random order, names hidden until you vote. The original is here to compare against."
            )
            draw = gr.Button("New pair", elem_id="new-pair")
            reference = gr.Audio(label="original (reference)", interactive=False, elem_id="reference")
            with gr.Row():
                player_a = gr.Audio(label="A", interactive=False, elem_id="player-a")
                player_b = gr.Audio(label="B", interactive=False, elem_id="player-b")
            choice = gr.Radio(["A", "B", "same"], label="Which sounds closer to the original?", elem_id="choice")
            vote = gr.Button("Vote", elem_id="vote")
            reveal = gr.Markdown(elem_id="reveal")
        go.click(run, [audio_in, model_in], [original, table, *players, figure, downloads, state])
        draw.click(new_pair, [state], [reference, player_a, player_b, pair_state, reveal])
        vote.click(cast, [pair_state, choice, state], [reveal])
    return demo


__all__ = ["DemoBackend", "build_demo", "display_name", "MAX_BANDWIDTHS", "MAX_SECONDS"]
