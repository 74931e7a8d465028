"""EnCodec configuration: every hyperparameter of the model family, with the field names of the official
`config.json` files of facebook/encodec_24khz, facebook/encodec_32khz and facebook/encodec_48khz.

The three presets live as data in `encodec_hf/configs/*.json` (exactly the official files' fields);
`EncodecConfig.from_preset("encodec_48khz")` reads them. Derived quantities (frame rate, chunk length and
stride, number of quantizers) are properties, so that editing `chunk_length_s` or `target_bandwidths` can never
leave a stale copy behind.
"""

from __future__ import annotations

import difflib
import json
import math
from importlib import resources

from transformers import PretrainedConfig

from .chunking import chunk_sizes

PRESETS = ("encodec_24khz", "encodec_32khz", "encodec_48khz")  # the official models
TRAINING_PRESETS = ("tiny",)  # configs/training/: models to train from scratch (tiny: a laptop CPU's size)

_UPPER_BOUNDS = {  # field: the largest value accepted (the official models' values in the comments)
    "sampling_rate": 384_000,  # 24,000 to 48,000
    "hidden_size": 4096,  # 128
    "num_filters": 4096,  # 32 to 64
    "num_residual_layers": 16,  # 1
    "kernel_size": 1024,  # 7
    "last_kernel_size": 1024,  # 7
    "residual_kernel_size": 1024,  # 3
    "dilation_growth_rate": 64,  # 2
    "compress": 4096,  # 2
    "num_lstm_layers": 16,  # 2
    "codebook_size": 1 << 20,  # 1024 to 2048
    "chunk_length_s": 3600,  # 1.0
}
_NORM_TYPES = ("weight_norm", "time_group_norm")
_PAD_MODES = ("reflect", "constant", "replicate", "circular")


class EncodecConfig(PretrainedConfig):
    r"""Configuration of an EnCodec model (SEANet encoder and decoder, residual vector quantizer).

    Field names and defaults follow transformers' `EncodecConfig` (defaults: the 24 kHz model), so official
    `config.json` files load unchanged. Invalid settings and misspelt field names raise `ValueError`; other keys are
    kept, as transformers keeps them.

    Args:
        target_bandwidths (`list[float]`): bandwidths in kbps the model can encode at; the last one sets the
            number of codebooks.
        sampling_rate (`int`): sample rate of the audio the model takes and returns, in Hz.
        audio_channels (`int`): 1 (mono) or 2 (stereo).
        normalize (`bool`): divide each chunk by its RMS volume before encoding (the 48 kHz model).
        chunk_length_s (`float`, *optional*): encode in chunks of this many seconds (the 48 kHz model: 1.0).
        overlap (`float`, *optional*): fraction of a chunk shared with the next one (the 48 kHz model: 0.01).
        hidden_size (`int`): dimension of the latent frames and of the codebook vectors.
        num_filters (`int`): channels of the first convolution; doubled at every downsampling.
        num_residual_layers (`int`): residual blocks per resolution.
        upsampling_ratios (`list[int]`): decoder strides; the encoder uses them reversed.
        norm_type (`str`): `"weight_norm"` or `"time_group_norm"`.
        kernel_size, last_kernel_size, residual_kernel_size (`int`): kernel sizes of the first, last and
            residual convolutions.
        dilation_growth_rate (`int`): dilation multiplier between residual layers.
        use_causal_conv (`bool`): pad convolutions on the left only (the 24 kHz model).
        pad_mode (`str`): padding mode of the convolutions.
        compress (`int`): channel reduction inside residual branches.
        num_lstm_layers (`int`): LSTM layers at the end of the encoder and start of the decoder.
        trim_right_ratio (`float`): share of a causal transposed convolution's padding trimmed on the right.
        codebook_size (`int`): entries per codebook, a power of 2.
        codebook_dim (`int`, *optional*): codebook vector size; defaults to `hidden_size`.
        use_conv_shortcut (`bool`): 1x1 convolution on the residual skip path (24 and 48 kHz) or identity (32 kHz).

    Training only (the codebooks' updates in train mode; EnCodec 0.1.1's values are the defaults, and inference
    never reads them):
        codebook_decay (`float`): decay of the exponential moving averages of cluster sizes and sums (0.99).
        codebook_epsilon (`float`): Laplace smoothing of the cluster sizes (1e-5).
        kmeans_iters (`int`): k-means iterations that initialise an uninitialised codebook on its first batch (50).
        threshold_ema_dead_code (`int`): entries whose averaged cluster size falls below this are replaced by
            random vectors of the batch (2; 0 turns replacement off).
        codebook_replacement (`str`): `"original"` replaces dead entries as EnCodec 0.1.1 does, which the
            moving-average update of the same step overwrites (a no-op but for its random draw); `"reset"` also
            resets their averaged size and sum, so that the replacement holds (vector-quantize-pytorch's fix; the
            `tiny` training preset uses it: without it small batches collapse a codebook to a few entries).
    """

    model_type = "encodec"

    target_bandwidths: list[float] | tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)
    sampling_rate: int = 24_000
    audio_channels: int = 1
    normalize: bool = False
    chunk_length_s: int | float | None = None
    overlap: float | None = None
    hidden_size: int = 128
    num_filters: int = 32
    num_residual_layers: int = 1
    upsampling_ratios: list[int] | tuple[int, ...] = (8, 5, 4, 2)
    norm_type: str = "weight_norm"
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_growth_rate: int = 2
    use_causal_conv: bool = True
    pad_mode: str = "reflect"
    compress: int = 2
    num_lstm_layers: int = 2
    trim_right_ratio: float = 1.0
    codebook_size: int = 1024
    codebook_dim: int | None = None
    use_conv_shortcut: bool = True
    codebook_decay: float = 0.99
    codebook_epsilon: float = 1e-5
    kmeans_iters: int = 50
    threshold_ema_dead_code: int = 2
    codebook_replacement: str = "original"

    def __post_init__(self, **kwargs):
        # Settings that are not fields are kept as transformers keeps them (config.json files carry keys of its own);
        # one that is nearly a field's name is a typo, refused rather than silently ignored.
        fields = sorted(EncodecConfig.__annotations__)
        for key in kwargs:
            near = difflib.get_close_matches(key, fields, n=1, cutoff=0.85)
            if near and near[0] != key:
                raise ValueError(f"EncodecConfig got the unknown setting {key!r}; did you mean {near[0]!r}?")
        if kwargs.get("model_type", self.model_type) != self.model_type:
            raise ValueError(f"model_type must be {self.model_type!r}, got {kwargs['model_type']!r}")
        kwargs.pop("model_type", None)
        self.target_bandwidths = [float(b) for b in self.target_bandwidths]
        self.upsampling_ratios = [int(r) for r in self.upsampling_ratios]
        if self.codebook_dim is None:
            self.codebook_dim = self.hidden_size
        self._validate()
        super().__post_init__(**kwargs)

    def _validate(self) -> None:
        self._validate_numbers()
        self._validate_settings()
        self._validate_geometry()

    def _validate_numbers(self) -> None:
        """Types and ranges of single fields: finite, integer where integer, bounded."""

        def positive_int(name):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        # NaN and Inf first, so that no derived value (frame rate, chunk length) is computed from one
        for name in (
            "chunk_length_s",
            "overlap",
            "trim_right_ratio",
            "codebook_decay",
            "codebook_epsilon",
        ):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        for name in ("target_bandwidths", "upsampling_ratios"):
            values = getattr(self, name)
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise ValueError(f"{name} must hold finite numbers, got {values!r}")
        # Upper bounds far above the official models (in parentheses), so that a damaged or hostile config.json
        # cannot make the loader build millions of layers or allocate without end.
        for name, high in _UPPER_BOUNDS.items():
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > high:
                raise ValueError(f"{name} must be at most {high:,}, got {value!r}")
        if len(self.upsampling_ratios) > 16 or any(r > 64 for r in self.upsampling_ratios):
            raise ValueError(f"upsampling_ratios must be at most 16 ratios of at most 64, got {self.upsampling_ratios}")
        if isinstance(self.sampling_rate, int) and self.sampling_rate < 100:
            raise ValueError(f"sampling_rate must be at least 100 Hz, got {self.sampling_rate!r}")

        for name in (
            "sampling_rate",
            "hidden_size",
            "num_filters",
            "kernel_size",
            "last_kernel_size",
            "residual_kernel_size",
            "dilation_growth_rate",
            "compress",
            "codebook_size",
            "codebook_dim",
        ):
            positive_int(name)
        for name in ("use_causal_conv", "normalize", "use_conv_shortcut"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("num_residual_layers", "num_lstm_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        for name in ("kmeans_iters", "threshold_ema_dead_code"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10_000:
                raise ValueError(f"{name} must be an integer in [0, 10000], got {value!r}")

    def _validate_settings(self) -> None:
        """Choices among named values, and the rules that tie fields together."""
        if self.codebook_replacement not in ("original", "reset"):
            raise ValueError(f"codebook_replacement must be 'original' or 'reset', got {self.codebook_replacement!r}")
        if not 0.0 <= self.codebook_decay < 1.0:
            raise ValueError(f"codebook_decay must be in [0, 1), got {self.codebook_decay!r}")
        if self.codebook_epsilon <= 0:
            raise ValueError(f"codebook_epsilon must be positive, got {self.codebook_epsilon!r}")
        if self.audio_channels not in (1, 2):
            raise ValueError(f"audio_channels must be 1 (mono) or 2 (stereo), got {self.audio_channels!r}")
        if self.norm_type not in _NORM_TYPES:
            raise ValueError(f"norm_type must be one of {', '.join(_NORM_TYPES)}, got {self.norm_type!r}")
        if self.pad_mode not in _PAD_MODES:
            raise ValueError(f"pad_mode must be one of {', '.join(_PAD_MODES)}, got {self.pad_mode!r}")
        if self.norm_type == "time_group_norm" and self.use_causal_conv:
            raise ValueError(
                "norm_type 'time_group_norm' normalises over time and cannot be causal; "
                "set use_causal_conv=False or norm_type='weight_norm'"
            )
        if not self.upsampling_ratios or any(r < 1 for r in self.upsampling_ratios):
            raise ValueError(
                f"upsampling_ratios must be a non-empty list of positive integers, got {self.upsampling_ratios}"
            )
        if not self.target_bandwidths or any(b <= 0 for b in self.target_bandwidths):
            raise ValueError(
                f"target_bandwidths must be a non-empty list of positive kbps values, got {self.target_bandwidths}"
            )
        if sorted(self.target_bandwidths) != self.target_bandwidths:
            raise ValueError(f"target_bandwidths must be in increasing order, got {self.target_bandwidths}")
        if 2 ** int(math.log2(self.codebook_size)) != self.codebook_size:
            raise ValueError(f"codebook_size must be a power of 2, got {self.codebook_size}")
        if self.codebook_dim != self.hidden_size:
            raise ValueError(
                f"codebook_dim must equal hidden_size ({self.hidden_size}): EnCodec's codebooks "
                f"have no projection; got {self.codebook_dim}"
            )
        if not 0.0 <= self.trim_right_ratio <= 1.0:
            raise ValueError(f"trim_right_ratio must be in [0, 1], got {self.trim_right_ratio}")
        if not self.use_causal_conv and self.trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1.0 only makes sense for causal convolutions")

    def _validate_geometry(self) -> None:
        """Chunks and codebooks derived from the fields (the fields are checked by then)."""
        if (self.chunk_length_s is None) != (self.overlap is None):
            raise ValueError(
                f"chunk_length_s and overlap are set together or not at all, got "
                f"chunk_length_s={self.chunk_length_s!r}, overlap={self.overlap!r}"
            )
        if self.chunk_length_s is not None:
            if self.chunk_length_s <= 0 or self.chunk_length < 1:
                raise ValueError(f"chunk_length_s must be positive, got {self.chunk_length_s!r}")
            if not 0.0 <= self.overlap <= 0.5:
                raise ValueError(f"overlap must be in [0, 0.5] (EnCodec's: 0.01), got {self.overlap!r}")
            if self.chunk_length < self.hop_length:
                raise ValueError(
                    f"chunk_length_s must give chunks of at least one frame ({self.hop_length} samples), got "
                    f"{self.chunk_length_s!r} s = {self.chunk_length} samples"
                )
        if self.num_quantizers > 1024:
            raise ValueError(
                f"target_bandwidths[-1]={self.target_bandwidths[-1]} kbps needs {self.num_quantizers} codebooks; at "
                f"most 1,024 are allowed (EnCodec's models have 4 to 32)"
            )
        if self.num_quantizers < 1:
            raise ValueError(
                f"target_bandwidths[-1]={self.target_bandwidths[-1]} kbps is below one codebook "
                f"({self.bandwidth_per_quantizer} kbps at {self.frame_rate} frames/s)"
            )

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "EncodecConfig":
        """The configuration of an official model, read from `encodec_hf/configs/NAME.json`.

        `name` is one of `encodec_24khz`, `encodec_32khz`, `encodec_48khz` (a `facebook/` prefix is accepted), or
        a training preset (`tiny`: 24 kHz, 8 filters, 32-dimensional codebooks of 256 entries, 1.2 to 4.8 kbps; 0.7 M
        parameters).
        """
        key = name.split("/")[-1]
        if key in PRESETS:
            text = resources.files(__package__).joinpath("configs", f"{key}.json").read_text()
        elif key in TRAINING_PRESETS:
            text = resources.files(__package__).joinpath("configs", "training", f"{key}.json").read_text()
        else:
            raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS + TRAINING_PRESETS)}")
        values = json.loads(text)
        values.pop("architectures", None)
        values.pop("model_type", None)
        return cls(**{**values, **overrides})

    # Derived values are properties, not fields: `chunk_length_s` or the bandwidths may be changed on a loaded
    # config, and a stored copy would then be wrong.
    @property
    def chunk_length(self) -> int | None:
        """Samples per chunk (48 kHz model: 48,000), or None when the model encodes the whole clip at once."""
        return chunk_sizes(self.chunk_length_s, self.overlap, self.sampling_rate)[0]

    @property
    def chunk_stride(self) -> int | None:
        """Samples between chunk starts (48 kHz model: int(0.99 * 48,000) = 47,520), or None."""
        return chunk_sizes(self.chunk_length_s, self.overlap, self.sampling_rate)[1]

    @property
    def hop_length(self) -> int:
        """Samples per code frame: the product of the strides (320 for the 24 and 48 kHz models)."""
        return math.prod(self.upsampling_ratios)

    @property
    def codebook_nbits(self) -> int:
        return int(math.log2(self.codebook_size))

    @property
    def frame_rate(self) -> int:
        """Code frames per second, rounded up as the original does (24 kHz: 75, 48 kHz: 150, 32 kHz: 50)."""
        return math.ceil(self.sampling_rate / self.hop_length)

    @property
    def bandwidth_per_quantizer(self) -> float:
        """kbps carried by one codebook: bits per code times frames per second."""
        return self.codebook_nbits * self.frame_rate / 1000

    @property
    def num_quantizers(self) -> int:
        """Codebooks in the model, enough for the highest target bandwidth (24 kHz: 32, 48 kHz: 16)."""
        return int(1000 * self.target_bandwidths[-1] // (self.frame_rate * self.codebook_nbits))

    def num_quantizers_for_bandwidth(self, bandwidth: float) -> int:
        """Codebooks used at `bandwidth` kbps, as the original computes it (floor, at least one).

        Example: the 24 kHz model carries 0.75 kbps per codebook, so 6.0 kbps uses 8 codebooks.
        """
        return int(max(1, math.floor(bandwidth / self.bandwidth_per_quantizer)))

    def check_bandwidth(self, bandwidth: float) -> float:
        """Return `bandwidth` as a float if the model offers it, else raise a ValueError listing the options."""
        try:
            value = float(bandwidth)
        except (TypeError, ValueError):
            value = None
        if value is None or value not in self.target_bandwidths:
            options = ", ".join(f"{b:g}" for b in self.target_bandwidths)
            raise ValueError(f"bandwidth {bandwidth!r} is not one of this model's bandwidths: {options} (kbps)")
        return value


class EncodecLanguageModelConfig(PretrainedConfig):
    r"""Configuration of EnCodec's entropy-coding language model (`EncodecLanguageModel`), saved in a model folder's
    `language_model/` subfolder.

    Args:
        num_codebooks (`int`): codebooks the model predicts (the codec's: 32 at 24 kHz, 16 at 48 kHz).
        codebook_size (`int`): entries per codebook (1024).
        past_context (`int`): frames the attention looks back: int(3.5 x frame rate) in the original.
        dim, num_layers, num_heads (`int`), hidden_scale (`float`): the Transformer's width, depth, heads and
            feed-forward ratio (the original: 200, 5, 8, 4.0).
    """

    model_type = "encodec_hf_language_model"

    num_codebooks: int = 32
    codebook_size: int = 1024
    past_context: int = 262
    dim: int = 200
    num_layers: int = 5
    num_heads: int = 8
    hidden_scale: float = 4.0

    def __post_init__(self, **kwargs):
        for name in ("num_codebooks", "codebook_size", "past_context", "dim", "num_layers", "num_heads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, high in (
            ("num_codebooks", 1024),
            ("codebook_size", 1 << 20),
            ("past_context", 100_000),
            ("dim", 8192),
            ("num_layers", 64),
            ("num_heads", 256),
        ):  # the original: 32, 1024, 525, 200, 5, 8
            if getattr(self, name) > high:
                raise ValueError(f"{name} must be at most {high:,}, got {getattr(self, name)!r}")
        if not isinstance(self.hidden_scale, (int, float)) or not math.isfinite(self.hidden_scale):
            raise ValueError(f"hidden_scale must be a finite number, got {self.hidden_scale!r}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim ({self.dim}) must be a multiple of num_heads ({self.num_heads})")
        if not 0 < float(self.hidden_scale) <= 64:
            raise ValueError(f"hidden_scale must be in (0, 64], got {self.hidden_scale!r}")
        kwargs.pop("model_type", None)
        super().__post_init__(**kwargs)

    @classmethod
    def for_model(cls, config: EncodecConfig) -> "EncodecLanguageModelConfig":
        """The original's architecture for an EnCodec configuration."""
        return cls(
            num_codebooks=config.num_quantizers,
            codebook_size=config.codebook_size,
            past_context=int(3.5 * config.frame_rate),
        )


__all__ = ["EncodecConfig", "EncodecLanguageModelConfig", "PRESETS", "TRAINING_PRESETS"]
