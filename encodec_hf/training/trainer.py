"""`encodec_hf.train`: train EnCodec from scratch or fine-tune a model folder, on one process or several
(torchrun), resumable, with checkpoints that are Hugging Face model folders.

One step (`Trainer.step`):
1. A batch of random `segment_seconds` segments (clips shorter than a segment are zero-padded; the padding is
   masked out of every loss by zeroing it in both the real and the decoded audio).
2. A bandwidth and whether the discriminator trains this step are drawn from a generator seeded by (seed, step):
   every rank draws the same, so every rank runs the same collectives. Segments come from a generator seeded by
   (seed, step, rank): each rank sees different audio, and a resumed run sees what it would have seen.
3. The codec's training forward (codebooks learn in `full` mode), the discriminator's hinge step, then the codec's
   losses through the balancer; gradients averaged over ranks (codebook buffers are kept identical by the
   quantizer itself).

Checkpoints: `OUTPUT/checkpoint-STEP/` holds `model/` (a model folder: `EncodecModel.from_pretrained` loads it),
`discriminator/`, and `trainer_state.pt` (optimisers, balancer, random generator states, the step, the rows
skipped), written to a temporary folder and renamed, so a killed run never leaves a half checkpoint. Running the
same command again resumes from the newest one. `OUTPUT/final/` is the finished model folder.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import metrics
from ..distributed import average_across_ranks, barrier, broadcast_from_rank0, rank_and_world
from ..modeling_encodec import EncodecModel
from ..modeling_onnx import load_model
from ..processing import EncodecFeatureExtractor, read_audio_cell
from ..tokenization import load_audio_dataset, resolve_rate_column
from .balancer import Balancer
from .discriminator import EncodecDiscriminatorConfig, EncodecMultiScaleSTFTDiscriminator
from .losses import (
    SISNR,
    FeatureMatchingLoss,
    MultiScaleMelSpectrogramLoss,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    l1_loss,
)
from .recipes import default_recipe, resolve_recipe

MODES = ("full", "decoder", "frozen-codebooks")
STATE_FILE = "trainer_state.pt"


class TrainingError(RuntimeError):
    """Training stopped: a NaN or Inf loss, unusable data, or a resume that does not match the run."""


@dataclass
class TrainingSettings:
    """What a run is (saved as `settings.json`; a resumed run must match it, except `steps` and the schedules).

    steps: optimiser steps in all. batch_size: segments per step and rank. segment_seconds: segment length.
    recipe: `paper`, `audiocraft` or `tiny` (training/recipes.py; None: `tiny` for the tiny preset, else `paper`).
    lr: overrides the recipe's learning rate.
    mode: `full`; `decoder` (encoder and codebooks frozen: every input's codes stay the starting model's);
    `frozen-codebooks` (encoder and decoder train, codebooks fixed). eval_every / save_every: steps between
    evaluations and checkpoints (0: only at the end). seed: all random draws. gradient_checkpointing: recompute
    activations in backward (less memory). discriminator_filters: overrides the recipe's width (a small one
    trains a tiny model faster). adversarial_start: steps trained on the reconstruction losses alone before the
    discriminator and the adversarial losses join (None: the recipe's; the paper's is 0). bf16: autocast to bfloat16
    (GPU). keep_checkpoints: how many to keep.
    audio_column: the dataset's audio column; sampling_rate_column: its rate column, for plain arrays (default: one
    named `sampling_rate`, when present). eval_clips / eval_seconds: held-out clips evaluated, each cut to
    at most this long. progress: a progress bar.
    """

    steps: int = 1000
    batch_size: int = 8
    segment_seconds: float = 1.0
    recipe: str | None = None  # None: `recipes.default_recipe` of the model (`tiny` for the tiny preset)
    lr: float | None = None
    mode: str = "full"
    eval_every: int = 0
    save_every: int = 500
    seed: int = 0
    gradient_checkpointing: bool = False
    discriminator_filters: int | None = None
    adversarial_start: int | None = None
    bf16: bool = False
    keep_checkpoints: int = 2
    audio_column: str = "audio"
    sampling_rate_column: str | None = None
    eval_clips: int = 8
    eval_seconds: float = 5.0
    progress: bool = True

    # settings a resumed run may change
    RESUMABLE_CHANGES = ("steps", "eval_every", "save_every", "keep_checkpoints", "progress", "eval_clips")

    def check(self) -> None:
        for name in ("steps", "batch_size", "keep_checkpoints", "eval_clips"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.adversarial_start is not None and (
            isinstance(self.adversarial_start, bool)
            or not isinstance(self.adversarial_start, int)
            or self.adversarial_start < 0
        ):
            raise ValueError(f"adversarial_start must be a non-negative integer, got {self.adversarial_start!r}")
        for name in ("eval_every", "save_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer (0: only at the end), got {value!r}")
        if not (isinstance(self.segment_seconds, (int, float)) and 0 < self.segment_seconds <= 60):
            raise ValueError(f"segment_seconds must be in (0, 60], got {self.segment_seconds!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# -- data ---------------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    audio: torch.Tensor  # (B, C, S) at the model's rate
    mask: torch.Tensor  # (B, S): 1 on real samples
    rows: list[int]  # dataset rows the segments come from


@dataclass
class SegmentSampler:
    """Random segments of a dataset's clips at the model's rate and channel count.

    A clip is read (soundfile), converted to the model's channels and resampled (soxr) by the feature
    extractor's functions, and kept in memory up to `cache_samples` samples in all. Rows that cannot be read,
    are empty or hold NaN are skipped (another row is drawn) and counted in `skipped`.
    """

    dataset: object
    sampling_rate: int
    channels: int
    segment: int
    seed: int
    audio_column: str = "audio"
    sampling_rate_column: str | None = None  # for plain-array audio; see `tokenization.resolve_rate_column`
    cache_samples: int = 200_000_000
    skipped: dict = field(default_factory=dict)  # row -> reason
    _cache: dict = field(default_factory=dict)
    _cached: int = 0

    @functools.cached_property
    def _extractor(self) -> EncodecFeatureExtractor:
        return EncodecFeatureExtractor(feature_size=self.channels, sampling_rate=self.sampling_rate)

    def clip(self, row: int) -> np.ndarray | None:
        """Row `row` as float32 (channels, samples), or None (recorded in `skipped`) when unusable."""
        if row in self._cache:
            return self._cache[row]
        if row in self.skipped:
            return None
        try:
            record = self.dataset[row]
            rate_column = resolve_rate_column(list(record), self.sampling_rate_column)
            audio, rate = read_audio_cell(record[self.audio_column], record[rate_column] if rate_column else None, row)
            if rate is None:
                raise ValueError("no sampling rate")
            audio = self._extractor.prepare(audio, int(rate), index=row)  # (channels, samples) at the model's rate
        except Exception as error:  # any unreadable row is skipped and reported, never fatal
            self.skipped[row] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
            return None
        if self._cached + audio.size <= self.cache_samples:
            self._cache[row] = audio
            self._cached += audio.size
        return audio

    def batch(self, step: int, batch_size: int, rank: int = 0) -> Batch:
        """The segments of `step` on `rank`: the same for the same (seed, step, rank), whatever ran before."""
        rng = np.random.default_rng([self.seed, step, rank])
        audio = np.zeros((batch_size, self.channels, self.segment), dtype=np.float32)
        mask = np.zeros((batch_size, self.segment), dtype=np.float32)
        rows = []
        attempts = 0
        while len(rows) < batch_size:
            attempts += 1
            if attempts > 100 * batch_size:
                raise TrainingError(
                    f"no usable audio: {len(self.skipped)} rows skipped ({'; '.join(list(self.skipped.values())[:3])})"
                )
            row = int(rng.integers(len(self.dataset)))
            clip = self.clip(row)
            if clip is None:
                continue
            item = len(rows)
            length = clip.shape[-1]
            if length > self.segment:
                start = int(rng.integers(length - self.segment + 1))
                audio[item] = clip[:, start : start + self.segment]
                mask[item] = 1
            else:
                audio[item, :, :length] = clip
                mask[item, :length] = 1
            rows.append(row)
        return Batch(torch.from_numpy(audio), torch.from_numpy(mask), rows)


# -- the model ---------------------------------------------------------------------------------------------------


def load_or_build_model(model) -> tuple[EncodecModel, bool]:
    """(model, from_scratch) for `--model`: an `EncodecModel`, a model folder or Hub id (fine-tuning), a preset
    name such as `tiny` or `encodec_24khz`, or a `config.json` path (from scratch: random weights, codebooks
    initialised by k-means on the first batch)."""
    from ..configuration_encodec import PRESETS, TRAINING_PRESETS, EncodecConfig

    if isinstance(model, EncodecModel):
        return model, False
    name = str(model)
    path = Path(name)
    if name.split("/")[-1] in PRESETS + TRAINING_PRESETS and not path.exists():
        config = EncodecConfig.from_preset(name)
    elif path.is_file() and path.suffix == ".json":
        config = EncodecConfig.from_json_file(str(path))
    else:
        return load_model(name, exported=False), False
    fresh = EncodecModel(config)
    initialize_for_training(fresh)
    return fresh, True


@torch.no_grad()
def initialize_for_training(model: EncodecModel, output_gain: float = 0.01) -> None:
    """Prepare a model built from a config (random weights from `_init_weights`, transformers' initialisation:
    He-normal convolutions) to train from scratch: the decoder's last convolution is scaled by `output_gain`, and
    the codebooks are emptied so that k-means initialises them on the first batch.

    Why not EnCodec 0.1.1's start (PyTorch's default initialisation, about 2.4 times smaller per convolution)?
    Measured on the `tiny` preset and on the 24 kHz architecture: its encoder output is nearly constant (the
    frames differ by 1 % of their norm: the biases dominate), k-means then fits the noise, and in a short run on a
    small batch the codebooks collapse to a few entries (perplexity 1 to 3) and never recover. He-normal keeps
    the frames distinct (spread 20 % of the norm) but makes the decoder's first output about 80 times too loud;
    scaling its last layer fixes that without touching the rest.
    """
    last = model.decoder.layers[-1].conv
    if hasattr(last, "parametrizations"):
        last.parametrizations.weight.original0.mul_(output_gain)
    else:
        last.weight.mul_(output_gain)
    last.bias.mul_(output_gain)
    model.quantizer.reset_codebooks()


def _freeze(model: EncodecModel, mode: str) -> None:
    for param in model.parameters():
        param.requires_grad_(True)
    if mode == "decoder":
        for param in model.encoder.parameters():
            param.requires_grad_(False)


# -- evaluation --------------------------------------------------------------------------------------------------


def evaluate_clips(model: EncodecModel, clips: list[torch.Tensor], bandwidths=None) -> dict:
    """SI-SNR (dB, higher is better) and mel distance (lower is better) of the exact inference path, per
    bandwidth, averaged over `clips` ((channels, samples) tensors at the model's rate): the functions of
    `encodec_hf.metrics`, which `encodec-hf evaluate` reports (SI-SNR as torchmetrics computes it, DAC's mel
    distance).

    Not the training loss `SISNR`: audiocraft's form adds epsilon x window length to both energies, so a decoder
    that outputs near silence scores about 0 dB there and -44 dB here (tested). Clips need at least 1,025
    samples (the mel distance reflects half its 2,048-sample window at each end); the trainer skips shorter ones."""
    was_training = model.training
    model.eval()
    results = {}
    try:
        for bandwidth in bandwidths or model.config.target_bandwidths:
            scores, distances = [], []
            for clip in clips:
                with torch.no_grad():
                    decoded = model(clip[None], bandwidth=bandwidth).audio_values[0]
                reference, estimate = clip.float().cpu().numpy(), decoded.float().cpu().numpy()
                scores.append(metrics.si_snr(reference, estimate))
                distances.append(metrics.mel_distance(reference, estimate, model.config.sampling_rate))
            results[f"{bandwidth:g}"] = {"si_snr": float(np.mean(scores)), "mel_distance": float(np.mean(distances))}
    finally:
        model.train(was_training)
    return results


# -- the trainer -------------------------------------------------------------------------------------------------


class Trainer:
    """The training loop behind `encodec_hf.train` (see the module docstring)."""

    def __init__(self, model, data, output_dir, settings: TrainingSettings, eval_data=None):
        if settings.recipe is None:
            settings = dataclasses.replace(settings, recipe=default_recipe(model))
        settings.check()
        self.settings = settings
        self.output_dir = Path(output_dir)
        self.rank, self.world = rank_and_world()
        torch.manual_seed(settings.seed)  # a model built from scratch starts from the same weights every run
        self.model, _ = load_or_build_model(model)
        config = self.model.config
        self.recipe = resolve_recipe(
            settings.recipe,
            config.sampling_rate,
            lr=settings.lr,
            discriminator_filters=settings.discriminator_filters,
            adversarial_start=settings.adversarial_start,
        )
        self.dataset = load_audio_dataset(data, None, settings.audio_column)
        segment = int(round(settings.segment_seconds * config.sampling_rate))
        if config.chunk_length is not None and segment > config.chunk_length:
            raise ValueError(
                f"segment_seconds {settings.segment_seconds} is longer than this model's chunk "
                f"({config.chunk_length_s} s); chunked models train on single chunks"
            )
        self.sampler = SegmentSampler(
            self.dataset,
            config.sampling_rate,
            config.audio_channels,
            segment,
            settings.seed,
            settings.audio_column,
            settings.sampling_rate_column,
        )
        self.eval_clips = self._eval_clips(eval_data) if eval_data is not None else []
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.step_index = 0
        self.log_path = self.output_dir / "log.jsonl"
        self._build()
        self._resume_or_start()

    # -- set-up ----------------------------------------------------------------------------------------------------

    def _build(self) -> None:
        config, recipe, settings = self.model.config, self.recipe, self.settings
        self.model.to(self.device).train()
        if settings.gradient_checkpointing:
            self.model.activation_checkpointing_enable()
        _freeze(self.model, settings.mode)
        self.use_adversary = recipe["weights"].get("adv", 0) > 0 or recipe["weights"].get("feat", 0) > 0
        discriminator_config = EncodecDiscriminatorConfig(in_channels=config.audio_channels, **recipe["discriminator"])
        torch.manual_seed(settings.seed)  # the same initial discriminator on every rank and every run
        self.discriminator = EncodecMultiScaleSTFTDiscriminator(discriminator_config).to(self.device).train()
        optimizer = recipe["optimizer"]
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            trainable, lr=optimizer["lr"], betas=tuple(optimizer["betas"]), weight_decay=optimizer["weight_decay"]
        )
        self.d_optimizer = torch.optim.Adam(
            self.discriminator.parameters(),
            lr=optimizer["lr"],
            betas=tuple(optimizer["betas"]),
            weight_decay=optimizer["weight_decay"],
        )
        self.weights = {name: w for name, w in recipe["weights"].items() if w > 0}
        self.balancer = Balancer(self.weights, **recipe["balancer"])
        self.mel_loss = MultiScaleMelSpectrogramLoss.from_preset(recipe["mel_preset"], config.sampling_rate).to(
            self.device
        )
        self.sisnr = SISNR(config.sampling_rate, segment=5.0)
        self.feature_loss = FeatureMatchingLoss(relative=recipe["relative_feature_matching"])

    def _eval_clips(self, eval_data) -> list[torch.Tensor]:
        dataset = load_audio_dataset(eval_data, None, self.settings.audio_column)
        config = self.model.config
        sampler = SegmentSampler(
            dataset,
            config.sampling_rate,
            config.audio_channels,
            1,
            0,
            self.settings.audio_column,
            self.settings.sampling_rate_column,
        )
        limit = int(self.settings.eval_seconds * config.sampling_rate)
        # the mel distance's STFT reflects half its longest window at each end
        shortest = max(window for window, _ in metrics.MEL_SCALES) // 2 + 1
        clips, short = [], 0
        for row in range(len(dataset)):
            clip = sampler.clip(row)
            if clip is not None and min(clip.shape[-1], limit) < shortest:
                short += 1
            elif clip is not None:
                clips.append(torch.from_numpy(np.ascontiguousarray(clip[:, :limit])))
            if len(clips) == self.settings.eval_clips:
                break
        if not clips:
            raise ValueError(
                f"the evaluation data holds no usable audio ({len(sampler.skipped)} rows skipped, {short} shorter "
                f"than {shortest} samples at {config.sampling_rate} Hz, too short for the mel distance)"
            )
        return clips

    def _checkpoints(self) -> list[Path]:
        found = []
        for path in self.output_dir.glob("checkpoint-*"):
            suffix = path.name.split("-", 1)[1]
            if suffix.isdigit() and (path / STATE_FILE).is_file():
                found.append(path)
        return sorted(found, key=lambda p: int(p.name.split("-", 1)[1]))

    def _resume_or_start(self) -> None:
        settings_path = self.output_dir / "settings.json"
        checkpoints = self._checkpoints() if self.output_dir.exists() else []
        if settings_path.exists():
            saved = json.loads(settings_path.read_text())
            changed = [
                name
                for name, value in self.settings.to_dict().items()
                if name not in TrainingSettings.RESUMABLE_CHANGES and saved.get(name) != value
            ]
            if changed:
                details = ", ".join(f"{n}: {saved.get(n)!r} then, {getattr(self.settings, n)!r} now" for n in changed)
                raise TrainingError(
                    f"{self.output_dir} holds a run with other settings ({details}); pass another output folder"
                )
        resumed = self._load_newest_intact(checkpoints)
        if self.rank == 0:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            self._truncate_log()
            settings_path.write_text(json.dumps(self.settings.to_dict(), indent=2) + "\n")
            (self.output_dir / "recipe.json").write_text(json.dumps(self.recipe, indent=2) + "\n")
        if resumed is None:
            # every rank starts from rank 0's weights (a fresh model is random on each)
            for module in (self.model, self.discriminator):
                broadcast_from_rank0([*module.parameters(), *module.buffers()])
        barrier()

    def _truncate_log(self) -> None:
        """Drop log records after the step the run resumes from (a killed run logged steps its checkpoint does not
        hold; they are run again), so that each step is in log.jsonl once."""
        if not self.log_path.exists():
            return
        lines = self.log_path.read_text().splitlines() if self.step_index else []  # a fresh start logs step 0 again
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= self.step_index]
        self.log_path.write_text("".join(line + "\n" for line in kept))

    def _load_newest_intact(self, checkpoints: list[Path]) -> Path | None:
        """Load the newest checkpoint that loads whole, falling back past damaged ones (each named in a warning);
        None when there is none. A TrainingError when checkpoints exist and none of them loads."""
        for path in reversed(checkpoints):
            try:
                self._load_checkpoint(path)
                return path
            except Exception as error:  # a truncated, tampered or foreign file: try the one before
                reason = str(error).splitlines()[0] if str(error) else type(error).__name__
                warnings.warn(f"checkpoint {path} is damaged ({reason}); trying the one before", stacklevel=2)
        if checkpoints:
            raise TrainingError(
                f"no checkpoint in {self.output_dir} loads ({', '.join(p.name for p in checkpoints)} are damaged); "
                f"pass another output folder to start over"
            )
        return None

    # -- checkpoints ---------------------------------------------------------------------------------------------

    def _state(self) -> dict:
        return {
            "step": self.step_index,
            "optimizer": self.optimizer.state_dict(),
            "d_optimizer": self.d_optimizer.state_dict(),
            "balancer": self.balancer.state_dict(),
            "torch_rng": torch.get_rng_state(),  # k-means and code replacement draw from it
            "skipped": {str(k): v for k, v in self.sampler.skipped.items()},
        }

    def save_checkpoint(self) -> Path:
        """Write `checkpoint-STEP/` (rank 0), through a temporary folder renamed when complete."""
        target = self.output_dir / f"checkpoint-{self.step_index}"
        if self.rank == 0:
            temporary = self.output_dir / f".checkpoint-{self.step_index}.tmp"
            shutil.rmtree(temporary, ignore_errors=True)
            try:
                self._save_model(temporary / "model")
                self.discriminator.save_pretrained(temporary / "discriminator")
                torch.save(self._state(), temporary / STATE_FILE)
            except (OSError, RuntimeError) as error:  # a full disk: torch says "unexpected pos ..."
                shutil.rmtree(temporary, ignore_errors=True)
                raise TrainingError(
                    f"cannot write {target.name} in {self.output_dir} (is the disk full?): "
                    f"{str(error).splitlines()[0]}; the previous checkpoint is intact, rerun to resume from it"
                ) from error
            shutil.rmtree(target, ignore_errors=True)
            os.replace(temporary, target)
            for old in self._checkpoints()[: -self.settings.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        barrier()
        return target

    def _save_model(self, folder: Path) -> None:
        self.model.save_pretrained(folder)
        EncodecFeatureExtractor.from_model_config(self.model.config).save_pretrained(folder)

    def _load_checkpoint(self, path: Path) -> None:
        state = torch.load(path / STATE_FILE, weights_only=True)
        missing = {"step", "optimizer", "d_optimizer", "balancer", "torch_rng", "skipped"} - set(state)
        if missing:
            raise ValueError(f"{path / STATE_FILE} lacks {', '.join(sorted(missing))}")
        if state["step"] != int(path.name.split("-", 1)[1]):
            raise ValueError(f"{path / STATE_FILE} says step {state['step']!r}, its folder {path.name}")
        loaded = EncodecModel.from_pretrained(path / "model")
        self.model.load_state_dict(loaded.state_dict())
        self.discriminator.load_state_dict(
            EncodecMultiScaleSTFTDiscriminator.from_pretrained(path / "discriminator").state_dict()
        )
        self.optimizer.load_state_dict(state["optimizer"])
        self.d_optimizer.load_state_dict(state["d_optimizer"])
        self.balancer.load_state_dict(state["balancer"])
        torch.set_rng_state(state["torch_rng"])
        self.sampler.skipped.update({int(k): v for k, v in state["skipped"].items()})
        self.step_index = state["step"]

    # -- one step ------------------------------------------------------------------------------------------------

    def _check_finite(self, losses: dict, batch: Batch) -> None:
        bad = {name: value.item() for name, value in losses.items() if not torch.isfinite(value).all()}
        if bad:
            raise TrainingError(
                f"step {self.step_index + 1}: loss {', '.join(f'{k}={v}' for k, v in bad.items())} on dataset rows "
                f"{batch.rows}; no checkpoint was written over the last good one"
            )

    def step(self) -> dict:
        """One optimiser step; returns the record logged for it."""
        settings, recipe = self.settings, self.recipe
        shared = torch.Generator().manual_seed(settings.seed * 1_000_003 + self.step_index)  # same on every rank
        bandwidth = self.model.draw_bandwidth(shared)
        train_discriminator = bool(torch.rand(1, generator=shared).item() < recipe["discriminator_probability"])
        adversary = self.use_adversary and self.step_index >= recipe["adversarial_start"]
        batch = self.sampler.batch(self.step_index, settings.batch_size, self.rank)
        audio, mask = batch.audio.to(self.device), batch.mask.to(self.device)
        mask3 = mask[:, None, :]  # (B, 1, S)

        autocast = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=settings.bf16)
        with autocast:
            output = self.model.training_forward(
                audio, padding_mask=mask, bandwidth=bandwidth, update_codebooks=settings.mode == "full"
            )
        decoded = output.audio_values.float() * mask3  # the padding is out of every loss
        real = audio * mask3
        record = {"step": self.step_index + 1, "bandwidth": bandwidth}

        if adversary and train_discriminator:
            self.d_optimizer.zero_grad(set_to_none=True)
            with autocast:
                d_loss = discriminator_adversarial_loss(
                    self.discriminator(real).logits, self.discriminator(decoded.detach()).logits
                ).float()
            self._check_finite({"discriminator": d_loss}, batch)
            d_loss.backward()
            average_across_ranks(*[p.grad for p in self.discriminator.parameters() if p.grad is not None])
            self.d_optimizer.step()
            record["discriminator"] = d_loss.item()

        losses = {}
        if "l1" in self.weights:
            losses["l1"] = l1_loss(decoded, real)
        if "mel" in self.weights:
            losses["mel"] = self.mel_loss(decoded, real)
        if "sisnr" in self.weights:
            losses["sisnr"] = self.sisnr(decoded, real)
        if adversary:
            with autocast:
                fake_out, real_out = self.discriminator(decoded), self.discriminator(real)
            if "adv" in self.weights:
                losses["adv"] = generator_adversarial_loss(fake_out.logits, recipe["adversarial_loss"]).float()
            if "feat" in self.weights:
                losses["feat"] = self.feature_loss(fake_out.features, real_out.features).float()
        commitment = output.commitment_loss.float()  # logged at any weight: how far the encoder is from its codes
        self._check_finite({**losses, "commitment": commitment}, batch)

        self.optimizer.zero_grad(set_to_none=True)
        if commitment.requires_grad and recipe["commitment_weight"] > 0:
            (commitment * recipe["commitment_weight"]).backward(retain_graph=True)
        record["effective"] = self.balancer.backward(losses, decoded).item()
        average_across_ranks(*[p.grad for p in self.model.parameters() if p.grad is not None])
        self.optimizer.step()
        self.discriminator.zero_grad(set_to_none=True)  # the codec's step left gradients there

        self.step_index += 1
        record.update({name: value.item() for name, value in losses.items()})
        record["commitment"] = commitment.item()
        record.update(self._codebook_usage(output.audio_codes))
        return record

    def _codebook_usage(self, codes: torch.Tensor) -> dict:
        # codes (1, B, Q, F): each codebook's perplexity over this batch, and entries below the dead-code threshold
        size = self.model.config.codebook_size
        perplexity = []
        for q in range(codes.shape[2]):
            counts = torch.bincount(codes[0, :, q].flatten(), minlength=size).float()
            p = counts / counts.sum()
            perplexity.append(round(math.exp(-(p[p > 0] * p[p > 0].log()).sum().item()), 3))
        threshold = self.model.config.threshold_ema_dead_code
        dead = [int((layer.codebook.cluster_size < threshold).sum()) for layer in self.model.quantizer.layers]
        return {"perplexity": perplexity, "dead_codes": dead}

    # -- the loop ------------------------------------------------------------------------------------------------

    def _log(self, record: dict) -> None:
        if self.rank == 0:
            with open(self.log_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            if self._tensorboard is not None:
                for key, value in record.items():
                    if isinstance(value, (int, float)) and key != "step":
                        self._tensorboard.add_scalar(key, value, record["step"])

    def evaluate(self) -> dict:
        return evaluate_clips(self.model, [c.to(self.device) for c in self.eval_clips])

    def train(self) -> Path:
        """Run to `settings.steps` (from the resumed step), then write `final/`; returns its path."""
        settings = self.settings
        self._tensorboard = None
        if self.rank == 0:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tensorboard = SummaryWriter(str(self.output_dir / "tensorboard"))
            except ImportError:  # tensorboard is optional
                pass
            print(f"encodec-hf train: recipe {json.dumps(self.recipe)}")
            if self.step_index:
                print(f"encodec-hf train: resuming at step {self.step_index} from {self.output_dir}")
        if self.eval_clips and self.step_index == 0:
            self._log({"step": 0, "eval": self.evaluate()})
        bar = None
        if settings.progress and self.rank == 0:
            from tqdm.auto import tqdm

            bar = tqdm(total=settings.steps, initial=self.step_index, desc="train", unit="step")
        started, first = time.perf_counter(), self.step_index
        try:
            while self.step_index < settings.steps:
                record = self.step()
                record["steps_per_second"] = (self.step_index - first) / (time.perf_counter() - started)
                self._log(record)
                if bar is not None:
                    shown = {k: f"{record[k]:.3g}" for k in ("l1", "mel", "adv", "feat") if k in record}
                    bar.set_postfix(shown, refresh=False)  # before update: the step's own losses on its line
                    bar.update(1)
                done = self.step_index == settings.steps
                if self.eval_clips and (done or (settings.eval_every and self.step_index % settings.eval_every == 0)):
                    scores = self.evaluate()
                    self._log({"step": self.step_index, "eval": scores})
                    if done and self.rank == 0:
                        print(summarize_scores(scores, self.step_index))
                if done or (settings.save_every and self.step_index % settings.save_every == 0):
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if self._tensorboard is not None:
                self._tensorboard.close()
        final = self.output_dir / "final"
        if self.rank == 0:
            shutil.rmtree(final, ignore_errors=True)
            self._save_model(final)
            if self.sampler.skipped:
                print(f"encodec-hf train: skipped {len(self.sampler.skipped)} unusable rows")
        barrier()
        return final


def summarize_scores(scores: dict, step: int) -> str:
    """`evaluate_clips`'s scores as one line for the terminal: "encodec-hf train: held-out scores at step 30 (...):
    1.5 kbps: SI-SNR 1.10 dB, mel distance 5.47; 3 kbps: ..."."""
    parts = [
        f"{bandwidth} kbps: SI-SNR {values['si_snr']:.2f} dB, mel distance {values['mel_distance']:.2f}"
        for bandwidth, values in scores.items()
    ]
    return (
        f"encodec-hf train: held-out scores at step {step} (SI-SNR: higher is better; mel distance: lower): "
        + "; ".join(parts)
    )


def train(model, data, output_dir, eval_data=None, **settings) -> Path:
    """Train or fine-tune EnCodec; returns the final model folder (`OUTPUT/final`).

    Args:
        model: an `EncodecModel`, a model folder or Hub id (fine-tuning), a preset name (`tiny`, `encodec_24khz`,
            ...) or a `config.json` path (from scratch).
        data: what `encodec-hf tokenize` takes: a `datasets.Dataset`, a `save_to_disk` folder, a folder of audio
            files or a Hub dataset name; any rate and channel count.
        output_dir: checkpoints, logs and `final/`; a second call with the same settings resumes there.
        eval_data: held-out audio, evaluated before, every `eval_every` steps and at the end.
        **settings: the fields of `TrainingSettings` (steps, batch_size, segment_seconds, recipe, lr, mode, ...).
    """
    unknown = sorted(set(settings) - {f.name for f in dataclasses.fields(TrainingSettings)})
    if unknown:
        raise ValueError(
            f"unknown training settings {unknown}; the settings are "
            f"{', '.join(f.name for f in dataclasses.fields(TrainingSettings))}"
        )
    return Trainer(model, data, output_dir, TrainingSettings(**settings), eval_data).train()
