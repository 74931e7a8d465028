"""Helpers that build the reference implementations with random weights, for parity tests and benchmarks.

EnCodec 0.1.1 imports torchaudio for file IO only, and torchaudio has no CPU build here (installing it breaks
`import transformers`), so a stub module stands in for it. The stub has a `__spec__`: transformers checks
installed packages with importlib and trips over a module without one.
"""

from __future__ import annotations

import importlib.machinery
import sys
import types

import torch


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
    factory = {"encodec_24khz": encodec.EncodecModel.encodec_model_24khz,
               "encodec_48khz": encodec.EncodecModel.encodec_model_48khz}[name]
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


def original_layout(model) -> dict:
    """Our state dict written back in the original layout (inverse of the rename table), old weight norm."""
    out = {}
    for key, value in model.state_dict().items():
        key = key.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v")
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
