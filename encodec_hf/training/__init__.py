"""Training parts: EnCodec's losses, its multi-scale STFT discriminator and the gradient balancer (docs/training.md).

The codec's own training behaviour (codebooks that learn, the differentiable round trip) lives in the model:
`EncodecModel.train()` then `model(audio)` returns the decoded audio, the codes and the commitment loss.
"""

from .balancer import Balancer
from .discriminator import (
    EncodecDiscriminatorConfig,
    EncodecDiscriminatorOutput,
    EncodecMultiScaleSTFTDiscriminator,
)
from .losses import (
    MEL_LOSS_PRESETS,
    SISNR,
    FeatureMatchingLoss,
    MelSpectrogram,
    MultiScaleMelSpectrogramLoss,
    discriminator_adversarial_loss,
    generator_adversarial_loss,
    l1_loss,
)

__all__ = [
    "Balancer",
    "EncodecDiscriminatorConfig",
    "EncodecDiscriminatorOutput",
    "EncodecMultiScaleSTFTDiscriminator",
    "MEL_LOSS_PRESETS",
    "SISNR",
    "FeatureMatchingLoss",
    "MelSpectrogram",
    "MultiScaleMelSpectrogramLoss",
    "discriminator_adversarial_loss",
    "generator_adversarial_loss",
    "l1_loss",
]
