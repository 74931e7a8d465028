"""Conversion of original EnCodec checkpoints to Hub folders (config.json, model.safetensors,
preprocessor_config.json).

Sources:
- EnCodec 0.1.1 state dicts, `encodec_24khz-d7cc33bc.th` and `encodec_48khz-7e698e3e.th`;
- audiocraft's `compression_state_dict.bin` of the 32 kHz model (`{"best_state": state_dict, "xp.cfg": ...}`).

Files are read with `torch.load(..., weights_only=True)`: tensors and plain containers only, no pickled code
runs. The key map below is declared once and checked both ways: every source tensor must land on a target, every
target must be filled, every shape must agree; anything else stops the conversion naming the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from .configuration_encodec import PRESETS, EncodecConfig
from .language_model import LANGUAGE_MODEL_FOLDER, EncodecLanguageModel
from .modeling_encodec import EncodecModel
from .processing import EncodecFeatureExtractor

# (pattern, replacement) applied in order to each source key. The original nests its layers as
# SConv1d.conv (NormConv1d) .conv (nn.Conv1d) and keeps the norm beside the inner conv; transformers' layout,
# which the Hub folders use, flattens that to `.conv` and `.norm`.
KEY_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^(encoder|decoder)\.model\.(\d+)\.", r"\1.layers.\2."),  # nn.Sequential -> ModuleList "layers"
    (r"\.(?:conv|convtr)\.(?:conv|convtr)\.", ".conv."),  # SConv1d.conv.conv / SConvTranspose1d.convtr.convtr
    (r"\.(?:conv|convtr)\.norm\.", ".norm."),  # GroupNorm of time_group_norm layers
    (r"\.weight_g$", ".parametrizations.weight.original0"),  # torch.nn.utils.weight_norm, old API
    (r"\.weight_v$", ".parametrizations.weight.original1"),
    (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook."),
)


def rename_key(key: str) -> str:
    """Map one original key to the Hub layout.

    Example: `encoder.model.1.block.1.conv.conv.weight_g` becomes
    `encoder.layers.1.block.1.conv.parametrizations.weight.original0`.
    """
    for pattern, replacement in KEY_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an EnCodec 0.1.1 or audiocraft checkpoint's state dict without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        package = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError... for foreign files
        # torch's message goes on to suggest weights_only=False, which would run the file's pickled code: keep only
        # its first sentence
        reason = str(error).split("\n")[0].split(" Re-running `torch.load`")[0].strip() or type(error).__name__
        raise ValueError(
            f"cannot read {str(path)!r} as a PyTorch checkpoint of tensors only ({reason}); this converter never runs "
            f"code stored in a checkpoint"
        ) from error
    if isinstance(package, dict) and "best_state" in package:  # audiocraft export
        package = package["best_state"]
        if isinstance(package, dict) and "model" in package:
            package = package["model"]
    if (
        not isinstance(package, dict)
        or not package
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in package.items())
    ):
        raise ValueError(
            f"{str(path)!r} holds no state dict of tensors (an EnCodec .th file or an audiocraft "
            f"compression_state_dict.bin was expected)"
        )
    return dict(package)


def convert_state_dict(source: dict[str, torch.Tensor], config: EncodecConfig) -> dict[str, torch.Tensor]:
    """Rename `source` to the Hub layout of `config`'s model, checking keys and shapes both ways."""
    expected = {key: tensor.shape for key, tensor in EncodecModel(config).state_dict().items()}
    converted: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in source.items():
        target = rename_key(key)
        if target not in expected:
            raise ValueError(
                f"unused tensor {key!r}: it maps to {target!r}, which this model does not have (is --model right?)"
            )
        if target in converted:
            raise ValueError(f"tensors {origin[target]!r} and {key!r} both map to {target!r}")
        if tuple(tensor.shape) != tuple(expected[target]):
            raise ValueError(
                f"shape mismatch for {key!r}: checkpoint has {tuple(tensor.shape)}, the model's "
                f"{target!r} needs {tuple(expected[target])} (is --model right?)"
            )
        converted[target], origin[target] = tensor, key
    missing = sorted(set(expected) - set(converted))
    if missing:
        raise ValueError(
            f"missing tensor {missing[0]!r} ({len(missing)} target tensors have no source; is --model right?)"
        )
    bad = sorted(
        key for key, tensor in converted.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    )
    if bad:
        raise ValueError(f"tensor {bad[0]!r} holds NaN or Inf ({len(bad)} such tensors); the checkpoint is damaged")
    return converted


def convert_language_model(checkpoint: str | Path, config: EncodecConfig, output: str | Path) -> EncodecLanguageModel:
    """Convert an original `encodec_lm_24khz-*.th` / `encodec_lm_48khz-*.th` into the model folder `output`
    (its `language_model/` subfolder), checking every key and shape. Its parameter names are the
    original's, so the key map is the identity."""
    state = load_original_state_dict(checkpoint)
    model = EncodecLanguageModel.for_model(config)
    expected = model.state_dict()
    unused, missing = sorted(set(state) - set(expected)), sorted(set(expected) - set(state))
    if unused:
        raise ValueError(f"unused tensor {unused[0]!r} in the language model checkpoint ({len(unused)} in all)")
    if missing:
        raise ValueError(f"missing tensor {missing[0]!r} in the language model checkpoint ({len(missing)} in all)")
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[key].shape):
            raise ValueError(
                f"shape mismatch for {key!r}: checkpoint has {tuple(tensor.shape)}, this model's "
                f"language model needs {tuple(expected[key].shape)} (is --model right?)"
            )
    model.load_state_dict(state, strict=True)
    model.eval().save_pretrained(Path(output) / LANGUAGE_MODEL_FOLDER)
    return model


def convert_checkpoint(
    checkpoint: str | Path, model_name: str, output: str | Path, lm_checkpoint: str | Path | None = None
) -> EncodecModel:
    """Convert `checkpoint` for the preset `model_name` and save a Hub folder in `output`; with `lm_checkpoint`,
    the entropy-coding language model too."""
    if model_name not in PRESETS:
        raise ValueError(f"--model must be one of {', '.join(PRESETS)}, got {model_name!r}")
    config = EncodecConfig.from_preset(model_name)
    state_dict = convert_state_dict(load_original_state_dict(checkpoint), config)
    model = EncodecModel(config)
    model.load_state_dict(state_dict, strict=True)
    model.eval()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    EncodecFeatureExtractor.from_model_config(config).save_pretrained(output)
    if lm_checkpoint is not None:
        convert_language_model(lm_checkpoint, config, output)
    usual_permissions(output)
    return model


def usual_permissions(folder: str | Path) -> None:
    """Give the files under `folder` the permissions the process's umask gives new files (0644 under the usual
    022): the writers below save some with 0600, which other users of a shared model folder cannot read."""
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)


def random_model(name: str, seed: int = 0, language_model: bool = False) -> EncodecModel:
    """A preset's model ("encodec_24khz", ..., "tiny") with random weights, GroupNorm affine parameters and
    codebooks filled with encoder outputs of random audio (as `fit_codebooks` does for the original), so that codes
    vary from frame to frame; with `language_model`, a random entropy-coding language model too. The same `seed`
    gives the same model on any machine (the weights are drawn on the CPU). What `encodec-hf convert --random`
    saves: a model to try the package with when neither the Hub nor a checkpoint is at hand."""
    torch.manual_seed(seed)
    config = EncodecConfig.from_preset(name)
    model = EncodecModel(config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if ".norm." in param_name:
                param.add_(0.1 * torch.randn(param.shape, generator=generator))
        audio = 0.3 * torch.randn(2, config.audio_channels, config.sampling_rate, generator=generator)
        residual = model.encoder(audio).permute(0, 2, 1).reshape(-1, config.codebook_dim)  # (N, D)
        for layer in model.quantizer.layers:
            codebook = layer.codebook
            picks = torch.randint(0, residual.shape[0], (config.codebook_size,), generator=generator)
            noise = torch.randn(codebook.embed.shape, generator=generator)
            codebook.embed.copy_(residual[picks] + 0.05 * residual.std() * noise)
            codebook.embed_avg.copy_(codebook.embed)
            residual = residual - codebook.decode(codebook.encode(residual))
    if language_model:
        torch.manual_seed(seed + 2)
        model.language_model = EncodecLanguageModel.for_model(config).eval()
    return model


__all__ = [
    "random_model",
    "KEY_RENAMES",
    "rename_key",
    "load_original_state_dict",
    "convert_state_dict",
    "convert_checkpoint",
    "convert_language_model",
]
