"""encodec-hf: the EnCodec neural audio codec as a Hugging Face model package.

    from encodec_hf import EncodecModel, EncodecFeatureExtractor
"""

from .configuration_encodec import EncodecConfig
from .modeling_encodec import (
    EncodecDecoderOutput,
    EncodecEncoderOutput,
    EncodecModel,
    EncodecOutput,
    EncodecPreTrainedModel,
)
from .processing import EncodecFeatureExtractor

__version__ = "0.1.0"

__all__ = [
    "EncodecConfig",
    "EncodecModel",
    "EncodecPreTrainedModel",
    "EncodecFeatureExtractor",
    "EncodecOutput",
    "EncodecEncoderOutput",
    "EncodecDecoderOutput",
]
