"""What every `from_pretrained` of this package guarantees about the weights it returns.

transformers warns and fills a tensor that a folder lacks with whatever memory it had (or random values), and loads
NaN and Inf as they are; this package refuses such folders (`check_loaded`). It also gives every floating-point
tensor storage of its own (`own_storage`): transformers hands out views into its load buffers, whose addresses are
not aligned as torch's allocator aligns them, and on some CPUs oneDNN and MKL then round a matrix product
differently. The language model's probabilities must be bit for bit the original's for its .ecdc files to match, so
that rounding difference changed the files (docs/ecdc.md names the CPU).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def looks_like_a_path(name: str) -> bool:
    """A Hub id is OWNER/NAME; a name that starts like a path, has more parts, or whose first part is a local folder
    means a folder on this machine, which the Hub cannot supply (so no time is spent asking it)."""
    parts = name.split("/")
    return name.startswith((".", "/", "~")) or len(parts) > 2 or (len(parts) == 2 and Path(parts[0]).is_dir())


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the Hub's endpoint opens within `timeout` seconds (False at once when
    HF_HUB_OFFLINE is set)."""
    import socket
    from urllib.parse import urlsplit

    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    endpoint = urlsplit(constants.ENDPOINT)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def check_model_folder(name_or_path, subfolder: str = "") -> None:
    """Refuse, before transformers is asked, a local path that cannot hold a model: a folder without config.json
    (transformers would build the 24 kHz default config and load whatever weights fit it), a file, or a path that
    does not exist. Hub ids pass. Example: check_model_folder("runs/x") for a missing folder raises "'runs/x' does
    not exist (a local path: 'runs' is a folder here); pass an existing model folder or a Hub id OWNER/NAME"."""
    text = str(name_or_path)
    path = Path(text)
    if path.is_dir():
        if not (path / subfolder / "config.json").is_file():
            raise ValueError(
                f"{text!r} is not an EnCodec model folder (no config.json; a training checkpoint's model is its "
                f"model/ subfolder)"
            )
    elif path.exists():
        raise ValueError(
            f"{text!r} is a file; pass a model folder (encodec-hf convert CHECKPOINT --model NAME --output DIR "
            f"makes one) or a Hub id"
        )
    elif looks_like_a_path(text):
        raise ValueError(
            f"{text!r} does not exist (a local path: {str(path.parent)!r} is a folder here); pass an existing model "
            f"folder or a Hub id OWNER/NAME"
        )


def check_loaded(model: nn.Module, info: dict, source) -> None:
    """Refuse a load that left a tensor missing, unused or mismatched, or that holds NaN or Inf.

    `info` is transformers' loading info (`output_loading_info=True`). Example message:
    "'folder' does not hold this model's weights: 1 missing keys (transformer.norm_in.weight)".
    """
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        found = sorted(_describe(key) for key in info.get(kind) or ())
        if found:
            problems.append(
                f"{len(found)} {kind.replace('_', ' ')} ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})"
            )
    if problems:
        raise ValueError(f"{str(source)!r} does not hold this model's weights: {'; '.join(problems)}")
    bad = [
        name
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]
        if tensor.is_floating_point() and not torch.isfinite(tensor).all()
    ]
    if bad:
        raise ValueError(f"{str(source)!r} holds NaN or Inf in {len(bad)} tensor(s): {', '.join(bad[:3])}")


def _describe(key) -> str:
    """A key of transformers' loading info; a mismatch comes as (key, checkpoint shape, model shape)."""
    if isinstance(key, tuple) and len(key) == 3:
        name, theirs, ours = key
        return f"{name}: {tuple(theirs)} in the folder, {tuple(ours)} in this model"
    return str(key)


@torch.no_grad()
def own_storage(model: nn.Module) -> None:
    """Give each CPU parameter and buffer a fresh, contiguous copy made by torch's allocator (64-byte aligned),
    so that the arithmetic over it is what it is for a model built in this process."""
    for module in model.modules():
        for tensors in (module._parameters, module._buffers):
            for tensor in tensors.values():
                if tensor is not None and tensor.device.type == "cpu":
                    tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
