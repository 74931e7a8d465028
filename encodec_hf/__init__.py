"""encodec-hf: the EnCodec neural audio codec as a Hugging Face model package.

    from encodec_hf import EncodecModel, EncodecFeatureExtractor, compress, decompress

The public names resolve on first use: the first one loads the package (torch, transformers), so that `import
encodec_hf` itself, and the command line's `--help`, stay fast. Importing it changes nothing in transformers:
`register_auto_classes()` is the one call that makes transformers' Auto classes give this package's classes.
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
    "evaluate": "evaluation",
    "export": "exporting",
    "OnnxEncodecModel": "modeling_onnx",
    "OpenVINOEncodecModel": "modeling_onnx",
}

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ below resolves these
    from .audio_io import read_audio, write_audio
    from .configuration_encodec import EncodecConfig, EncodecLanguageModelConfig
    from .ecdc import compress, compress_file, decompress, decompress_file
    from .evaluation import evaluate
    from .exporting import export
    from .language_model import EncodecLanguageModel
    from .modeling_encodec import (
        EncodecDecoderOutput,
        EncodecEncoderOutput,
        EncodecModel,
        EncodecOutput,
        EncodecPreTrainedModel,
    )
    from .modeling_onnx import OnnxEncodecModel, OpenVINOEncodecModel
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


def register_auto_classes() -> None:
    """Make transformers' `AutoConfig`, `AutoModel`, `AutoFeatureExtractor` and `AutoProcessor` give this package's
    classes for EnCodec folders (model_type "encodec": this package's and the Hub's), in this process, from now on.

    The consequence, for the whole process: every "encodec" folder loaded through an Auto class goes through this
    package, the Hub's too, and so does anything that builds its codec with `AutoModel.from_config` on an
    `EncodecConfig` loaded through `AutoConfig` (MusicGen's audio encoder, loaded from a folder). transformers'
    own classes used by name, and its own config class (`AutoModel.from_config(transformers.EncodecConfig())`),
    still give transformers' model. Without this call, `trust_remote_code=True` on a folder that `encodec-hf
    upload` built gives this package's classes for that folder alone (docs/hub.md). Calling it again does nothing
    more.
    """
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor

    from .configuration_encodec import EncodecConfig
    from .modeling_encodec import EncodecModel
    from .processing import EncodecFeatureExtractor

    # by config class: this package's preprocessor_config.json leaves out `feature_extractor_type` (a name both
    # packages' classes share; transformers' would be found first)
    AutoConfig.register("encodec", EncodecConfig, exist_ok=True)
    AutoModel.register(EncodecConfig, EncodecModel, exist_ok=True)
    AutoFeatureExtractor.register(EncodecConfig, EncodecFeatureExtractor, exist_ok=True)
    AutoProcessor.register(EncodecConfig, EncodecFeatureExtractor, exist_ok=True)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'encodec_hf' has no attribute {name!r}")
    for export, module in _EXPORTS.items():
        globals()[export] = getattr(import_module(f".{module}", __name__), export)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "register_auto_classes",
    "evaluate",
    "train",
    "export",
    "OnnxEncodecModel",
    "OpenVINOEncodecModel",
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
