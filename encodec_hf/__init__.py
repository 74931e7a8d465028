"""encodec-hf: the EnCodec neural audio codec as a Hugging Face model package.

    from encodec_hf import EncodecModel, EncodecFeatureExtractor, compress, decompress

The public names resolve on first use: the first one loads the package (torch, transformers) and registers its
classes with the Auto classes, so that `import encodec_hf` itself, and the command line's `--help`, stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "EncodecConfig": "configuration_encodec",
    "EncodecLanguageModelConfig": "configuration_encodec",
    "EncodecModel": "modeling_encodec",
    "EncodecPreTrainedModel": "modeling_encodec",
    "EncodecOutput": "modeling_encodec",
    "EncodecEncoderOutput": "modeling_encodec",
    "EncodecDecoderOutput": "modeling_encodec",
    "EncodecFeatureExtractor": "processing",
    "EncodecLanguageModel": "language_model",
    "tokenize_dataset": "tokenization",
    "decode_tokens": "tokenization",
    "tokenization_metadata": "tokenization",
    "codes_to_tokens": "tokenization",
    "tokens_to_codes": "tokenization",
    "scale_to_token": "tokenization",
    "token_to_scale": "tokenization",
    "PAD_TOKEN": "tokenization",
    "compress": "ecdc",
    "decompress": "ecdc",
    "compress_file": "ecdc",
    "decompress_file": "ecdc",
    "read_audio": "audio_io",
    "write_audio": "audio_io",
    "train": "training.trainer",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below resolves these
    from .audio_io import read_audio, write_audio
    from .configuration_encodec import EncodecConfig, EncodecLanguageModelConfig
    from .ecdc import compress, compress_file, decompress, decompress_file
    from .language_model import EncodecLanguageModel
    from .modeling_encodec import (
        EncodecDecoderOutput,
        EncodecEncoderOutput,
        EncodecModel,
        EncodecOutput,
        EncodecPreTrainedModel,
    )
    from .processing import EncodecFeatureExtractor
    from .tokenization import (
        PAD_TOKEN,
        codes_to_tokens,
        decode_tokens,
        scale_to_token,
        token_to_scale,
        tokenization_metadata,
        tokenize_dataset,
        tokens_to_codes,
    )
    from .training.trainer import train


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'encodec_hf' has no attribute {name!r}")
    # Everything at once, as an eager import would: the model and processor modules register the Auto classes.
    for export, module in _EXPORTS.items():
        globals()[export] = getattr(import_module(f".{module}", __name__), export)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "train",
    "EncodecConfig",
    "EncodecLanguageModelConfig",
    "EncodecModel",
    "EncodecPreTrainedModel",
    "EncodecOutput",
    "EncodecEncoderOutput",
    "EncodecDecoderOutput",
    "EncodecFeatureExtractor",
    "EncodecLanguageModel",
    "tokenize_dataset",
    "decode_tokens",
    "tokenization_metadata",
    "codes_to_tokens",
    "tokens_to_codes",
    "scale_to_token",
    "token_to_scale",
    "PAD_TOKEN",
    "compress",
    "decompress",
    "compress_file",
    "decompress_file",
    "read_audio",
    "write_audio",
]
