"""Helpers for tests, benchmarks and scripts: tiny configurations, and the reference implementations built with
random weights (EnCodec 0.1.1 for parity, its checkpoints for conversion). Nothing here touches the network.

EnCodec 0.1.1 imports torchaudio for file IO only, and torchaudio has no CPU build here (installing it breaks
`import transformers`), so a stub module stands in for it. The stub has a `__spec__`: transformers checks
installed packages with importlib and trips over a module without one. Install the original with
`pip install --no-deps encodec==0.1.1` (scripts/setup.sh does); it is never a dependency of this package.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types
from pathlib import Path

import numpy as np
import torch

from .configuration_encodec import EncodecConfig
from .convert_encodec import random_model
from .modeling_encodec import EncodecModel


def import_original_encodec():
    """Import EnCodec 0.1.1 (installed with `pip install --no-deps encodec==0.1.1`), or None if absent."""
    if "torchaudio" not in sys.modules:
        stub = types.ModuleType("torchaudio")
        stub.__spec__ = importlib.machinery.ModuleSpec("torchaudio", loader=None)
        stub.transforms = types.SimpleNamespace()
        sys.modules["torchaudio"] = stub
    try:
        import encodec
    except ImportError:
        return None
    return encodec


def fit_codebooks(model: torch.nn.Module, channels: int, sample_rate: int, seed: int) -> None:
    """Fill each codebook with encoder outputs of random audio (plus noise), the way k-means would start,
    so that codes vary from frame to frame; EnCodec 0.1.1 builds its models with all-zero codebooks (they
    wait for k-means on the first training batch), which would make every code 0 and parity tests vacuous."""
    generator = torch.Generator().manual_seed(seed)
    audio = torch.randn(2, channels, sample_rate, generator=generator) * 0.3
    with torch.no_grad():
        frames = model.encoder(audio).permute(0, 2, 1).reshape(-1, model.quantizer.dimension)  # (N, D)
        residual = frames
        for layer in model.quantizer.vq.layers:
            codebook = layer._codebook
            picks = torch.randint(0, residual.shape[0], (codebook.embed.shape[0],), generator=generator)
            entries = residual[picks] + 0.05 * residual.std() * torch.randn(codebook.embed.shape, generator=generator)
            codebook.embed.copy_(entries)
            codebook.embed_avg.copy_(entries)
            residual = residual - codebook.embed[codebook.quantize(residual)]


def original_model(name: str, seed: int = 0):
    """EnCodec 0.1.1's `encodec_model_24khz/48khz(pretrained=False)` with random weights and codebooks."""
    encodec = import_original_encodec()
    torch.manual_seed(seed)
    factory = {
        "encodec_24khz": encodec.EncodecModel.encodec_model_24khz,
        "encodec_48khz": encodec.EncodecModel.encodec_model_48khz,
    }[name]
    model = factory(pretrained=False)
    fit_codebooks(model, model.channels, model.sample_rate, seed + 1)
    # Random GroupNorm affine parameters too, so that a swapped weight/bias would show.
    generator = torch.Generator().manual_seed(seed + 2)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.GroupNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, generator=generator))
                module.bias.copy_(0.1 * torch.randn(module.bias.shape, generator=generator))
    return model.eval()


def original_language_model(original, seed: int = 5):
    """EnCodec 0.1.1's entropy-coding language model for `original` (its `LMModel`, the released architecture:
    5 layers, dimension 200, 3.5 s of context), with random weights from `seed`."""
    encodec = import_original_encodec()
    torch.manual_seed(seed)
    return encodec.model.LMModel(
        original.quantizer.n_q,
        original.quantizer.bins,
        num_layers=5,
        dim=200,
        past_context=int(3.5 * original.frame_rate),
    ).eval()


def original_layout(model) -> dict:
    """Our state dict written back in the original layout (inverse of the rename table), old weight norm."""
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        )
        if key.startswith("quantizer."):
            out[key.replace("quantizer.layers.", "quantizer.vq.layers.").replace(".codebook.", "._codebook.")] = value
            continue
        parts = key.split(".")
        parts[1] = "model"
        key = ".".join(parts)
        if key.startswith("decoder") and ".block." not in key and ".shortcut." not in key and "lstm" not in key:
            layer = model.decoder.layers[int(parts[2])]
            inner = "convtr" if type(layer).__name__ == "EncodecConvTranspose1d" else "conv"
        else:
            inner = "conv"
        key = key.replace(".conv.", f".{inner}.{inner}.").replace(".norm.", f".{inner}.norm.")
        out[key] = value.clone()
    return out


def tiny_config(**overrides) -> EncodecConfig:
    """A model small enough for many fast tests: hop 4, 16-entry codebooks, 0.4 kbps per codebook.

    With `chunked=True`: 400 Hz, chunks of 400 samples every 360 (10 % overlap), normalised, stereo, like a
    miniature 48 kHz model.
    """
    chunked = overrides.pop("chunked", False)
    values = dict(
        sampling_rate=400,
        hidden_size=8,
        codebook_dim=8,
        num_filters=4,
        upsampling_ratios=[2, 2],
        codebook_size=16,
        target_bandwidths=[0.4, 0.8],
        num_lstm_layers=1,
    )
    if chunked:
        values.update(
            audio_channels=2,
            normalize=True,
            chunk_length_s=1.0,
            overlap=0.1,
            use_causal_conv=False,
            norm_type="time_group_norm",
        )
    values.update(overrides)
    return EncodecConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> EncodecModel:
    torch.manual_seed(seed)
    model = EncodecModel(tiny_config(**overrides)).eval()
    with torch.no_grad():  # random GroupNorm affine parameters, so that they matter
        for name, param in model.named_parameters():
            if ".norm." in name:
                param.add_(0.1 * torch.randn_like(param))
    return model


def save_tiny_folder(folder, model: EncodecModel | None = None) -> Path:
    """A model folder as `encodec-hf convert` writes it (config, weights, preprocessor config)."""
    from .processing import EncodecFeatureExtractor

    model = model if model is not None else tiny_model(chunked=True)
    model.save_pretrained(folder)
    EncodecFeatureExtractor.from_model_config(model.config).save_pretrained(folder)
    return Path(folder)


def audiocraft_source(relative: str) -> Path | None:
    """The path of one file of audiocraft 1.3.0 (installed with `pip install --no-deps audiocraft==1.3.0`), or None
    when it is not installed. Its package is never imported: `import audiocraft` pulls torchaudio."""
    import importlib.util

    # the path finder, not find_spec: a test may have put a stand-in `audiocraft` package in sys.modules
    spec = importlib.machinery.PathFinder.find_spec("audiocraft")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / relative
    return path if path.is_file() else None


def load_audiocraft_file(relative: str, name: str | None = None):
    """Load one audiocraft file by path as module `name` (default: its dotted name), without the package.

    Relative imports inside it resolve through `sys.modules`, so the caller puts the modules it needs there first
    (with pytest's `monkeypatch.setitem`, so that they are gone after the test)."""
    import importlib.util

    path = audiocraft_source(relative)
    if path is None:
        raise ImportError(f"audiocraft 1.3.0 is not installed (no {relative})")
    name = name or "audiocraft." + relative.removesuffix(".py").replace("/", ".")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def requires_audiocraft():
    """A pytest mark that skips a test when audiocraft 1.3.0 (and flashy, which its losses import) is absent."""
    import importlib.util

    import pytest

    missing = audiocraft_source("losses/balancer.py") is None or importlib.util.find_spec("flashy") is None
    return pytest.mark.skipif(
        missing, reason="audiocraft 1.3.0 or flashy is not installed (scripts/setup.sh installs both, --no-deps)"
    )


def requires_original():
    """A pytest mark that skips a test when EnCodec 0.1.1 is not installed."""
    import pytest

    return pytest.mark.skipif(
        import_original_encodec() is None,
        reason="EnCodec 0.1.1 is not installed (pip install --no-deps encodec==0.1.1)",
    )


BLOCK_ENCODEC_HF = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "encodec_hf" or name.startswith("encodec_hf."):
            raise ImportError("encodec_hf is blocked in this process")
sys.meta_path.insert(0, _Block())
"""


def run_without_encodec_hf(code: str, cwd: Path):
    """Run `code` in a fresh Python process in which importing encodec_hf fails (only transformers and the
    folder's remote code are there), offline; fails the test with the end of its stderr if it fails."""
    import os
    import subprocess
    import textwrap

    script = cwd / "probe.py"
    script.write_text(BLOCK_ENCODEC_HF + textwrap.dedent(code))
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


__all__ = [
    "import_original_encodec",
    "fit_codebooks",
    "original_model",
    "original_language_model",
    "original_layout",
    "tiny_config",
    "tiny_model",
    "save_tiny_folder",
    "random_model",
    "requires_original",
    "run_without_encodec_hf",
]


SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "A neural audio codec turns sound into a few discrete tokens per frame.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "Six spoons of fresh snow peas, five thick slabs of blue cheese, and maybe a snack.",
    "We also need a small plastic snake and a big toy frog for the kids.",
    "She can scoop these things into three red bags, and we will go meet her on Wednesday.",
    "When the sunlight strikes raindrops in the air, they act as a prism and form a rainbow.",
    "The rainbow is a division of white light into many beautiful colors.",
    "These take the shape of a long round arch, with its path high above.",
    "Throughout the centuries people have explained the rainbow in various ways.",
    "Some have accepted it as a miracle without physical explanation.",
    "The north wind and the sun were disputing which was the stronger.",
    "A traveller came along wrapped in a warm cloak.",
    "They agreed that the one who first made the traveller take off his cloak would be stronger.",
    "Then the north wind blew as hard as he could, but the more he blew the closer the traveller held his cloak.",
    "At last the north wind gave up the attempt.",
)
VOICES = ("en", "en-us", "en+f3", "en+m3", "de", "fr", "es", "it")


def espeak_speech(sentence: int, variant: int = 0) -> tuple[np.ndarray, int]:
    """SENTENCES[sentence] spoken by espeak-ng (voice and speaking rate chosen by `variant`), as float32
    (1, samples) at espeak's 22,050 Hz. Needs the espeak-ng program (`apt-get install espeak-ng`)."""
    import io
    import shutil
    import subprocess

    import soundfile

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    voice = VOICES[variant % len(VOICES)]
    speed = 130 + 15 * (variant % 5)
    text = SENTENCES[sentence % len(SENTENCES)]
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed), text], capture_output=True, check=True
    ).stdout
    audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32", always_2d=True)
    return audio.T.copy(), rate


def speech_clip(rate: int, channels: int, seconds: float, sentence: int = 0) -> torch.Tensor:
    """Real speech (`espeak_speech`) resampled to `rate` (soxr), copied to `channels` channels and looped or cut
    to `seconds`: float32 (channels, samples)."""
    import soxr

    audio, source_rate = espeak_speech(sentence)
    audio = soxr.resample(audio[0], source_rate, rate).astype(np.float32)
    audio = np.resize(audio, int(seconds * rate))  # loops a short sentence
    return torch.from_numpy(np.stack([audio] * channels))


def synthetic_music(seed: int, seconds: float = 6.0, rate: int = 44_100, channels: int = 2):
    """Music-like audio made with numpy: notes of a random scale with harmonics and decaying envelopes, a bass
    line, and noise-burst percussion, panned across `channels`; float32 (channels, samples) with peak 0.9."""
    rng = np.random.default_rng(seed)
    total = int(seconds * rate)
    t = np.arange(total) / rate
    out = np.zeros((channels, total))
    root = 110 * 2 ** (rng.integers(0, 12) / 12)
    scale = root * 2 ** (np.array([0, 2, 4, 5, 7, 9, 11, 12, 14, 16]) / 12)
    beat = 60 / rng.uniform(90, 140)
    start = 0.0
    while start < seconds:
        length = beat * rng.choice([0.5, 1, 2])
        frequency = rng.choice(scale) * rng.choice([1, 2])
        begin, end = int(start * rate), min(total, int((start + length) * rate))
        local = t[begin:end] - start
        envelope = np.exp(-3 * local / length) * np.minimum(1, local * 200)
        tone = sum(np.sin(2 * np.pi * frequency * k * local) / k**1.5 for k in range(1, 6))
        pan = rng.uniform(0.2, 0.8)
        gains = [pan, 1 - pan] if channels == 2 else [1.0]
        for c in range(channels):
            out[c, begin:end] += 0.3 * gains[c] * envelope * tone
        bass = 0.25 * np.sin(2 * np.pi * scale[0] / 2 * local) * np.exp(-2 * local / length)
        out[:, begin:end] += bass
        if rng.random() < 0.6:
            hit = min(end, begin + int(0.08 * rate))
            out[:, begin:hit] += (
                0.2 * rng.standard_normal(hit - begin) * np.exp(-np.arange(hit - begin) / (0.01 * rate))
            )
        start += length
    return (0.9 * out / np.abs(out).max()).astype(np.float32), rate


def write_training_data(folder, train_clips: int = 48, eval_clips: int = 8, seed: int = 0) -> tuple[Path, Path]:
    """`folder/train` and `folder/eval`: half espeak-ng speech (22,050 Hz mono), half synthetic music (44.1 kHz
    stereo), as WAV files, so that the trainer's resampling and channel conversion are exercised. The evaluation
    speech uses sentences the training speech never says (the last 3). Returns the two folders."""
    import soundfile

    folder = Path(folder)
    made = []
    for name, count, offset in (("train", train_clips, 0), ("eval", eval_clips, 1000)):
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            index = offset + i
            if i % 2 == 0:
                held_out = len(SENTENCES) - 3
                sentence = held_out + (i // 2) % 3 if name == "eval" else (i // 2) % held_out
                audio, rate = espeak_speech(sentence, variant=index // 2)
                path = target / f"speech-{i:03d}.wav"
            else:
                audio, rate = synthetic_music(seed * 10_000 + index)
                path = target / f"music-{i:03d}.wav"
            if not path.exists():
                soundfile.write(path, audio.T, rate)
        made.append(target)
    return made[0], made[1]
