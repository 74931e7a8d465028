"""encodec-hf: the EnCodec neural audio codec as a Hugging Face model package.

    from encodec_hf import EncodecModel, EncodecFeatureExtractor, compress, decompress

The public names resolve on first use: the first one loads the package (torch, transformers), so that `import
encodec_hf` itself, and the command line's `--help`, stay fast. Once transformers' Auto classes are imported too
(before or after this package), they give this package's classes for EnCodec folders (`register_auto_classes`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import warnings
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
    classes for EnCodec folders (model_type "encodec": this package's and the Hub's). Done by itself once both this
    package and transformers' Auto classes are imported, in either order; calling it again does nothing more."""
    import_module(".modeling_encodec", __name__)  # its import registers everything (see _register_auto_model)


def _initializing(name: str) -> bool:
    """Whether module `name` is being imported right now (importlib marks its spec while it runs)."""
    module = sys.modules.get(name)
    return module is not None and bool(getattr(getattr(module, "__spec__", None), "_initializing", False))


class _RegisterWhenAutoLoads(importlib.abc.MetaPathFinder):
    """Registers the Auto classes right after one of transformers' Auto modules is imported, so that `import
    encodec_hf` stays light (no torch, no transformers) and still changes what the Auto classes give.

    transformers imports its Auto package from inside `transformers.modeling_utils` too (this package's own
    modules import that); registering then would import this package's model module against a half-imported
    `modeling_utils`. So each later Auto module (`AutoModel`'s, the feature extractor's, the processor's) tries
    again, and the first try outside such an import registers and removes this finder."""

    targets = (
        "transformers.models.auto",
        "transformers.models.auto.modeling_auto",
        "transformers.models.auto.feature_extraction_auto",
        "transformers.models.auto.processing_auto",
    )

    def find_spec(self, fullname, path, target=None):
        if fullname not in self.targets:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            if self not in sys.meta_path or _initializing("transformers.modeling_utils"):
                return  # registered already, or too early: a later Auto module tries again
            if _initializing("encodec_hf.modeling_encodec"):
                sys.meta_path.remove(self)  # that module registers everything as its import ends
                return
            try:
                register_auto_classes()
            except Exception as error:  # never break transformers' import: say what did not happen
                warnings.warn(f"encodec_hf could not register its Auto classes: {error}", stacklevel=2)
            if self in sys.meta_path:
                sys.meta_path.remove(self)

        spec.loader.exec_module = exec_module
        return spec


if "transformers.models.auto.modeling_auto" in sys.modules:
    register_auto_classes()
elif not any(isinstance(finder, _RegisterWhenAutoLoads) for finder in sys.meta_path):
    sys.meta_path.insert(0, _RegisterWhenAutoLoads())


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
