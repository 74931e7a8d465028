"""encodec-hf: the EnCodec neural audio codec as a Hugging Face model package.

from encodec_hf import EncodecModel, EncodecFeatureExtractor, compress, decompress
"""

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

__version__ = "0.1.0"


def _register_auto_classes() -> None:
    """Make this package's classes reachable from the Auto classes, leaving transformers' `encodec` alone.

    transformers refuses a second `encodec` model type (`AutoConfig.register`), so the config is not registered
    by name. The Auto model and processor mappings are keyed by config class, so registering this package's
    `EncodecConfig` maps it, and only it, to this package's classes: `AutoModel.from_config(
    encodec_hf.EncodecConfig())` builds an `encodec_hf.EncodecModel`, while transformers' own config still builds
    transformers' model. (`exist_ok=True` only skips transformers' check by class name, which would otherwise
    mistake this class for its namesake.)
    """
    from transformers import AutoFeatureExtractor, AutoModel, AutoProcessor

    AutoModel.register(EncodecConfig, EncodecModel, exist_ok=True)
    AutoFeatureExtractor.register(EncodecConfig, EncodecFeatureExtractor, exist_ok=True)
    AutoProcessor.register(EncodecConfig, EncodecFeatureExtractor, exist_ok=True)


_register_auto_classes()

__all__ = [
    "EncodecConfig",
    "EncodecModel",
    "EncodecPreTrainedModel",
    "EncodecFeatureExtractor",
    "EncodecOutput",
    "EncodecEncoderOutput",
    "EncodecDecoderOutput",
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
    "EncodecLanguageModel",
    "EncodecLanguageModelConfig",
    "read_audio",
    "write_audio",
]
