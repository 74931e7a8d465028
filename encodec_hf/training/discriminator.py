"""EnCodec's multi-scale STFT discriminator (paper, section 3.3), with audiocraft 1.3.0's module tree: the same
state-dict keys and shapes, so an audiocraft-trained discriminator's weights load as they are, and a Hugging Face
config and `save_pretrained` / `from_pretrained`.

Each of the 5 sub-discriminators takes the complex STFT of the audio (real and imaginary parts as 2 channels per
audio channel) at its own resolution and runs 2D convolutions over (frames, frequencies); it returns its logits
and the feature maps after every convolution but the last, for feature matching.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput

from .losses import stft


class EncodecDiscriminatorConfig(PretrainedConfig):
    r"""Configuration of `EncodecMultiScaleSTFTDiscriminator` (defaults: audiocraft's `msstftd` recipe).

    Args:
        filters (`int`): channels of the convolutions (32).
        in_channels (`int`): audio channels each sub-discriminator sees (1; 2 for stereo without `sep_channels`).
        out_channels (`int`): logit channels (1).
        sep_channels (`bool`): treat each channel of multi-channel audio as a separate mono item (audiocraft has
            this flag but never applies it; here it is applied).
        n_ffts, hop_lengths, win_lengths (`list[int]`): the STFT of each scale.
        max_filters (`int`), filters_scale (`int`): channel growth per layer, capped.
        kernel_size (`list[int]`), stride (`list[int]`), dilations (`list[int]`): the 2D convolutions (time,
            frequency).
        normalized (`bool`): divide each STFT by its window's L2 norm.
        negative_slope (`float`): LeakyReLU slope (audiocraft's recipe: 0.3; its class default: 0.2).
    """

    model_type = "encodec_discriminator"

    filters: int = 32
    in_channels: int = 1
    out_channels: int = 1
    sep_channels: bool = False
    n_ffts: list[int] | tuple[int, ...] = (1024, 2048, 512, 256, 128)
    hop_lengths: list[int] | tuple[int, ...] = (256, 512, 128, 64, 32)
    win_lengths: list[int] | tuple[int, ...] = (1024, 2048, 512, 256, 128)
    max_filters: int = 1024
    filters_scale: int = 1
    kernel_size: list[int] | tuple[int, ...] = (3, 9)
    stride: list[int] | tuple[int, ...] = (1, 2)
    dilations: list[int] | tuple[int, ...] = (1, 2, 4)
    normalized: bool = True
    negative_slope: float = 0.3

    def __post_init__(self, **kwargs):
        for name in ("n_ffts", "hop_lengths", "win_lengths", "kernel_size", "stride", "dilations"):
            setattr(self, name, [int(v) for v in getattr(self, name)])
        self._validate()
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        for name in ("filters", "in_channels", "out_channels", "max_filters", "filters_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65536:
                raise ValueError(f"{name} must be an integer in [1, 65536], got {value!r}")
        scales = (self.n_ffts, self.hop_lengths, self.win_lengths)
        if not self.n_ffts or len({len(s) for s in scales}) != 1:
            raise ValueError(
                f"n_ffts, hop_lengths and win_lengths need one value per scale, got {[len(s) for s in scales]}"
            )
        for n_fft, hop, win in zip(*scales):
            if not (2 <= n_fft <= 65536 and 1 <= hop and 1 <= win <= n_fft):
                raise ValueError(
                    f"each scale needs 2 <= n_fft, 1 <= hop and win_length <= n_fft; got {n_fft, hop, win}"
                )
        if len(self.kernel_size) != 2 or len(self.stride) != 2:
            raise ValueError(
                f"kernel_size and stride are (time, frequency) pairs, got {self.kernel_size}, {self.stride}"
            )
        if self.sep_channels and self.in_channels != 1:
            raise ValueError("sep_channels makes every channel a mono item: in_channels must be 1")


def get_2d_padding(kernel_size, dilation=(1, 1)) -> tuple[int, int]:
    """'Same' padding of a 2D convolution: ((k - 1) * d) // 2 on each axis. Example: kernel (3, 9), dilation
    (2, 1) -> (2, 4)."""
    return ((kernel_size[0] - 1) * dilation[0]) // 2, ((kernel_size[1] - 1) * dilation[1]) // 2


class WeightNormConv2d(nn.Conv2d):
    """Conv2d with weight norm over the output channels, stored as audiocraft stores it (`weight_g`, `weight_v`:
    the keys of `torch.nn.utils.weight_norm`, deprecated in torch, so not called here)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        weight = self.weight.detach()
        del self.weight
        self.weight_g = nn.Parameter(torch.linalg.vector_norm(weight, dim=(1, 2, 3), keepdim=True))
        self.weight_v = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, torch._weight_norm(self.weight_v, self.weight_g, 0), self.bias)


class NormConv2d(nn.Module):
    """audiocraft's `NormConv2d` (keys `conv.*`): a Conv2d, weight-normed unless `norm` is 'none'."""

    def __init__(self, *args, norm: str = "none", **kwargs):
        super().__init__()
        self.conv = WeightNormConv2d(*args, **kwargs) if norm == "weight_norm" else nn.Conv2d(*args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Spectrogram(nn.Module):
    """Complex STFT without centring, as torchaudio's `Spectrogram(power=None, center=False)`, with its `window`
    buffer (audiocraft's checkpoints carry it): (B, C, T) -> (B, C, n_fft // 2 + 1, frames) complex."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int, normalized: bool):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length, self.normalized = n_fft, hop_length, win_length, normalized
        self.window = nn.Buffer(torch.hann_window(win_length))

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        batch, channels, length = audio.shape
        if length < self.n_fft:
            raise ValueError(f"audio of {length} samples is shorter than the discriminator's window ({self.n_fft})")
        spec = stft(audio.reshape(batch * channels, length), self.n_fft, self.hop_length, self.window, self.normalized)
        return spec.reshape(batch, channels, *spec.shape[-2:])


class DiscriminatorSTFT(nn.Module):
    """One scale: STFT -> 2D convolutions over (frames, frequencies) -> logits (B, out, frames, freqs')."""

    def __init__(self, config: EncodecDiscriminatorConfig, n_fft: int, hop_length: int, win_length: int):
        super().__init__()
        kernel, stride = tuple(config.kernel_size), tuple(config.stride)
        self.spec_transform = Spectrogram(n_fft, hop_length, win_length, config.normalized)
        self.negative_slope = config.negative_slope
        filters = config.filters
        # the first convolution has no weight norm, as in audiocraft
        self.convs = nn.ModuleList(
            [NormConv2d(2 * config.in_channels, filters, kernel, padding=get_2d_padding(kernel))]
        )
        channels = min(config.filters_scale * filters, config.max_filters)
        for i, dilation in enumerate(config.dilations):
            out = min(config.filters_scale ** (i + 1) * filters, config.max_filters)
            self.convs.append(
                NormConv2d(
                    channels,
                    out,
                    kernel,
                    stride=stride,
                    dilation=(dilation, 1),
                    padding=get_2d_padding(kernel, (dilation, 1)),
                    norm="weight_norm",
                )
            )
            channels = out
        out = min(config.filters_scale ** (len(config.dilations) + 1) * filters, config.max_filters)
        square = (kernel[0], kernel[0])
        self.convs.append(NormConv2d(channels, out, square, padding=get_2d_padding(square), norm="weight_norm"))
        self.conv_post = NormConv2d(
            out, config.out_channels, square, padding=get_2d_padding(square), norm="weight_norm"
        )

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = self.spec_transform(audio)  # (B, C, F, frames) complex
        hidden = torch.cat([spec.real, spec.imag], dim=1).transpose(2, 3)  # (B, 2C, frames, F)
        features = []
        for conv in self.convs:
            hidden = F.leaky_relu(conv(hidden), self.negative_slope)
            features.append(hidden)
        return self.conv_post(hidden), features


@dataclass
class EncodecDiscriminatorOutput(ModelOutput):
    """
    Args:
        logits (list of `torch.FloatTensor`, one per scale): shaped (batch, out_channels, frames, frequencies').
        features (list of lists of `torch.FloatTensor`): each scale's feature maps, for feature matching.
    """

    logits: list | None = None
    features: list | None = None


class EncodecMultiScaleSTFTDiscriminator(PreTrainedModel):
    """EnCodec's MS-STFT discriminator. `forward(audio)` takes (batch, channels, samples) audio at the codec's
    rate and returns an `EncodecDiscriminatorOutput` (`logits`, `features`); the tuple form is audiocraft's
    `(logits, fmaps)`.

    `state_dict()` keys are audiocraft's (`discriminators.{k}.convs.{l}.conv.weight_g`, ...,
    `discriminators.{k}.spec_transform.window`), so `load_state_dict` takes the `adversary` weights of an
    audiocraft checkpoint; `save_pretrained` / `from_pretrained` write and read safetensors with this config.
    """

    config_class = EncodecDiscriminatorConfig
    config: EncodecDiscriminatorConfig
    main_input_name = "audio"
    base_model_prefix = "discriminator"

    def __init__(self, config: EncodecDiscriminatorConfig):
        super().__init__(config)
        self.discriminators = nn.ModuleList(
            [
                DiscriminatorSTFT(config, n_fft, hop, win)
                for n_fft, hop, win in zip(config.n_ffts, config.hop_lengths, config.win_lengths)
            ]
        )
        self.post_init()

    @torch.no_grad()
    def _init_weights(self, module):
        # PyTorch's default initialisation (what audiocraft's discriminator starts from), weight norm's g from v
        if isinstance(module, nn.Conv2d):
            weight = module.weight_v if isinstance(module, WeightNormConv2d) else module.weight
            nn.init.kaiming_uniform_(weight, a=5**0.5)
            if isinstance(module, WeightNormConv2d):
                module.weight_g.copy_(torch.linalg.vector_norm(weight, dim=(1, 2, 3), keepdim=True))
            if module.bias is not None:
                bound = 1 / (weight[0].numel() ** 0.5)
                nn.init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, Spectrogram):
            module.window.copy_(torch.hann_window(module.win_length))

    @property
    def num_discriminators(self) -> int:
        return len(self.discriminators)

    def forward(self, audio: torch.Tensor, return_dict: bool | None = None):
        if not isinstance(audio, torch.Tensor) or audio.dim() != 3:
            shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
            raise ValueError(f"the discriminator takes audio shaped (batch, channels, samples), got {shape}")
        channels = 1 if self.config.sep_channels else self.config.in_channels
        if not self.config.sep_channels and audio.shape[1] != channels:
            raise ValueError(f"this discriminator takes {channels}-channel audio, got {audio.shape[1]} channels")
        if self.config.sep_channels:
            audio = audio.reshape(-1, 1, audio.shape[-1])  # (B, C, T) -> (B * C, 1, T)
        logits, features = [], []
        for discriminator in self.discriminators:
            scale_logits, scale_features = discriminator(audio)
            logits.append(scale_logits)
            features.append(scale_features)
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if not return_dict:
            return logits, features
        return EncodecDiscriminatorOutput(logits=logits, features=features)
