"""EnCodec's entropy-coding language model and arithmetic coder, as EnCodec 0.1.1 defines them.

The model predicts, for every codebook at once, the distribution of the next frame's code from the codes before
it: a 5-layer Transformer (dimension 200, 8 heads, feed-forward 800, GELU) over the sum of one embedding per
codebook, attending to at most `past_context` (3.5 s) frames back, with one output head per codebook. Arithmetic
coding with those distributions cuts the bit rate by 25-40 %.

The arithmetic coder (`encodec_hf.ecdc.coder`) turns probabilities into integer ranges, so encoder and decoder
must compute bit for bit the same probabilities: this module keeps the original's operations and their order (a
streaming step per frame through `nn.TransformerEncoderLayer`), and its parameter names, so that its files and the
original's decode on either side.

The model is a transformers `PreTrainedModel` with its own config (`EncodecLanguageModelConfig`), saved in a codec
folder's `language_model/` subfolder; `EncodecModel.from_pretrained` loads it from there (local folders, the Hub
and the offline cache alike) through `load_language_model`.

Version-1 files use a deterministic mode instead (`DeterministicRunner`, `deterministic_cdf`): float64
probabilities, floored coarsely, so that batching, teacher forcing, threads or another machine no longer change
the bytes; see the comment above `PRECISION`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from .configuration_encodec import EncodecLanguageModelConfig
from .loading import check_loaded, own_storage

LANGUAGE_MODEL_FOLDER = "language_model"  # the subfolder of a codec folder that holds the language model


def sin_embedding(positions: torch.Tensor, dim: int, max_period: float = 10000) -> torch.Tensor:
    """Cosine and sine position features, (1, T, dim) for positions (1, T, 1), as the original builds them."""
    half = dim // 2
    scale = torch.arange(half, device=positions.device).view(1, 1, -1)
    if positions.dtype == torch.float64:  # the deterministic mode: float64 throughout
        scale = scale.to(torch.float64)
    phase = positions / (max_period ** (scale / (half - 1)))
    return torch.cat([torch.cos(phase), torch.sin(phase)], dim=-1)


class StreamingTransformerLayer(nn.TransformerEncoderLayer):
    """A post-norm Transformer layer whose attention also sees the previous steps' inputs (`past`), at most
    `past_context` positions back."""

    def forward(self, x: torch.Tensor, past: torch.Tensor, past_context: int):  # type: ignore[override]
        attended = x
        x = self.norm1(x + self._attention(x, past, past_context))
        x = self.norm2(x + self._ff_block(x))
        return x, attended

    def _attention(self, x: torch.Tensor, past: torch.Tensor, past_context: int) -> torch.Tensor:
        steps, history = x.shape[1], past.shape[1]
        keys = torch.cat([past, x], dim=1)  # (B, H + T, C)
        query_positions = torch.arange(history, steps + history, device=x.device).view(-1, 1)
        key_positions = torch.arange(steps + history, device=x.device).view(1, -1)
        delta = query_positions - key_positions
        allowed = (delta >= 0) & (delta <= past_context)
        return self.dropout1(self.self_attn(x, keys, keys, attn_mask=~allowed, need_weights=False)[0])


class StreamingTransformer(nn.Module):
    def __init__(
        self,
        dim: int,
        hidden_scale: float,
        num_heads: int,
        num_layers: int,
        past_context: int,
        max_period: float = 10000,
    ):
        super().__init__()
        self.past_context, self.max_period = past_context, max_period
        self.norm_in = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            [
                StreamingTransformerLayer(
                    dim, num_heads, int(dim * hidden_scale), activation=F.gelu, batch_first=True, dropout=0.0
                )
                for _ in range(num_layers)
            ]
        )

    def forward(self, x: torch.Tensor, states: list | None, offset: int):
        batch, steps, channels = x.shape
        if states is None:  # the original starts every layer's past with one zero step
            states = [torch.zeros_like(x[:, :1]) for _ in range(1 + len(self.layers))]
        positions = torch.arange(steps, device=x.device).view(1, -1, 1) + offset
        x = self.norm_in(x) + sin_embedding(positions, channels, self.max_period)
        new_states = []
        # the original keeps one state more than it has layers (the last is never read): zip stops at the layers
        for state, layer in zip(states, self.layers, strict=False):
            x, attended = layer(x, state, self.past_context)
            new_states.append(torch.cat([state, attended], dim=1)[:, -self.past_context :, :])
        return x, new_states, offset + steps


class EncodecLanguageModel(PreTrainedModel):
    """Distributions of each frame's codes given the frames before it, built from an `EncodecLanguageModelConfig`
    (`for_model` gives the original's architecture for a codec's config)."""

    config_class = EncodecLanguageModelConfig
    base_model_prefix = "language_model"
    main_input_name = "indices"

    def __init__(self, config: EncodecLanguageModelConfig):
        if not isinstance(config, EncodecLanguageModelConfig):
            raise ValueError(
                f"EncodecLanguageModel takes an EncodecLanguageModelConfig, got {type(config).__name__}; "
                f"EncodecLanguageModel.for_model(codec_config) builds the original's architecture"
            )
        super().__init__(config)
        dim = config.dim
        self.transformer = StreamingTransformer(
            dim, config.hidden_scale, config.num_heads, config.num_layers, config.past_context
        )
        # index 0 of each embedding means "no previous frame" (the first step); code c is index c + 1
        self.emb = nn.ModuleList([nn.Embedding(config.codebook_size + 1, dim) for _ in range(config.num_codebooks)])
        self.linears = nn.ModuleList([nn.Linear(dim, config.codebook_size) for _ in range(config.num_codebooks)])
        self.post_init()

    def _init_weights(self, module):
        """torch's own initialisation of each layer (the original's random model), left as the constructors made
        it: the weights that matter are always loaded."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """transformers' `from_pretrained`, strict as the codec's: a missing, extra or misshapen tensor, NaN or Inf
        fail with a ValueError naming them. The weights get storage of their own (`loading.own_storage`), so that
        the probabilities, and the .ecdc bytes, are the original's on every CPU."""
        want_info = kwargs.pop("output_loading_info", False)
        kwargs.setdefault("ignore_mismatched_sizes", True)  # so that check_loaded names them (transformers: no names)
        model, info = super().from_pretrained(pretrained_model_name_or_path, *args, output_loading_info=True, **kwargs)
        check_loaded(model, info, pretrained_model_name_or_path)
        own_storage(model)
        model.eval()
        return (model, info) if want_info else model

    @classmethod
    def for_model(cls, model_config) -> "EncodecLanguageModel":
        """The original's architecture for an EnCodec configuration."""
        return cls(EncodecLanguageModelConfig.for_model(model_config))

    def forward(self, indices: torch.Tensor, states=None, offset: int = 0):
        """indices (B, K, T), previous codes + 1 (0 at the start) -> probabilities (B, card, K, T), states, offset."""
        x = sum(self.emb[k](indices[:, k]) for k in range(indices.shape[1]))
        out, states, offset = self.transformer(x, states, offset)
        logits = torch.stack([self.linears[k](out) for k in range(indices.shape[1])], dim=1).permute(0, 3, 1, 2)
        return torch.softmax(logits, dim=1), states, offset


def load_language_model(name_or_path: str | Path, **hub_kwargs) -> EncodecLanguageModel | None:
    """The entropy-coding language model of a codec folder or Hub repo, or None when it has none.

    Looks for the `language_model/` subfolder, in a local folder or through the Hub's cache (so `HF_HUB_OFFLINE=1`
    works once the repo is cached). `hub_kwargs` (revision, cache_dir, token, ...) go to the Hub.
    """
    from transformers.utils import cached_file

    path = Path(str(name_or_path))
    if path.is_dir():
        if (path / LANGUAGE_MODEL_FOLDER / "config.json").is_file():
            return EncodecLanguageModel.from_pretrained(path / LANGUAGE_MODEL_FOLDER).eval()
        return None
    quiet = dict(
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
        _raise_exceptions_for_gated_repo=False,
    )
    if cached_file(str(name_or_path), "config.json", subfolder=LANGUAGE_MODEL_FOLDER, **quiet, **hub_kwargs):
        return EncodecLanguageModel.from_pretrained(
            str(name_or_path), subfolder=LANGUAGE_MODEL_FOLDER, **hub_kwargs
        ).eval()
    return None


class DeterministicRunner:
    """The language model in float64 over a batch of independent streams, a block of frames per call, with the
    attention's keys and values cached: blocks of T frames when all codes are known (encoding), one frame at a
    time when each frame's codes come from the previous step (decoding). Both give the same probabilities up to
    float64 rounding, whatever the block size or batch, which `deterministic_cdf` makes exact.

    Indexing: the original starts each layer's past with one zero step, so the sequence a layer attends over is
    S = (zero step, frame 0, frame 1, ...); the query of frame t (S index t + 1) sees S indices
    t + 1 - past_context .. t + 1.
    """

    def __init__(self, language_model: EncodecLanguageModel, batch: int, max_block: int = 1):
        transformer = language_model.transformer
        device = next(language_model.parameters()).device
        self.weights = {name: value.detach().to(torch.float64) for name, value in language_model.state_dict().items()}
        codebooks = len(language_model.emb)
        self.card = language_model.linears[0].out_features
        self.num_layers = len(transformer.layers)
        self.num_heads = transformer.layers[0].self_attn.num_heads
        self.dim = transformer.norm_in.normalized_shape[0]
        self.eps = transformer.norm_in.eps
        self.past_context, self.max_period = transformer.past_context, transformer.max_period
        # all output heads as one matrix, so that a step is one product: (K * card, C), codebook-major
        self.heads = torch.cat([self.weights.pop(f"linears.{k}.weight") for k in range(codebooks)])
        self.head_bias = torch.cat([self.weights.pop(f"linears.{k}.bias") for k in range(codebooks)])
        self.embeddings = torch.cat([self.weights.pop(f"emb.{k}.weight") for k in range(codebooks)])  # (K*(card+1), C)
        self.positions = torch.zeros(1, 0, self.dim, dtype=torch.float64, device=device)
        self.frames = 0  # frames consumed so far
        # Key/value buffers with room for the window and one block; `self.cached` entries are filled. Writing in
        # place rather than concatenating keeps a step from copying the whole cache.
        head_dim = self.dim // self.num_heads
        self.capacity = self.past_context + max(1, max_block)
        self.cached = 1
        self.keys, self.values = [], []
        for layer in range(self.num_layers):
            keys = torch.empty(batch, self.num_heads, self.capacity, head_dim, dtype=torch.float64, device=device)
            values = torch.empty_like(keys)
            bias = self.weights[f"transformer.layers.{layer}.self_attn.in_proj_bias"]
            # the zero step's key and value: the projection of zeros is the bias
            keys[:, :, 0] = bias[self.dim : 2 * self.dim].view(self.num_heads, head_dim)
            values[:, :, 0] = bias[2 * self.dim :].view(self.num_heads, head_dim)
            self.keys.append(keys)
            self.values.append(values)

    def _layer_norm(self, x, name):
        return F.layer_norm(x, (self.dim,), self.weights[f"{name}.weight"], self.weights[f"{name}.bias"], self.eps)

    def __call__(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, K, T), the previous frames' codes + 1 (0 before the first frame) -> float64 probabilities
        (B, T, K, card) of frames `self.frames` .. `self.frames + T - 1`."""
        w = self.weights
        batch, codebooks, steps = indices.shape  # a file may use fewer codebooks than the model predicts
        if steps > self.capacity - self.past_context:
            raise ValueError(f"blocks of at most {self.capacity - self.past_context} frames, got {steps}")
        if self.cached + steps > self.capacity:  # keep the window, drop what no query can reach any more
            keep = min(self.cached, self.past_context)
            for buffer in self.keys + self.values:
                buffer[:, :, :keep] = buffer[:, :, self.cached - keep : self.cached].clone()
            self.cached = keep
        # one lookup in all codebooks' tables at once: row k * (card + 1) + index
        offsets = torch.arange(codebooks, device=indices.device).view(1, -1, 1) * (self.card + 1)
        x = F.embedding(indices + offsets, self.embeddings).sum(dim=1)  # (B, K, T, C) -> (B, T, C)
        if self.frames + steps > self.positions.shape[1]:  # position features, computed once for many frames
            count = max(2 * self.positions.shape[1], self.frames + steps)
            self.positions = sin_embedding(
                torch.arange(count, dtype=torch.float64, device=x.device).view(1, -1, 1), self.dim, self.max_period
            )  # (1, count, C)
        x = self._layer_norm(x, "transformer.norm_in") + self.positions[:, self.frames : self.frames + steps]
        heads, head_dim = self.num_heads, self.dim // self.num_heads
        cached, total = self.cached, self.cached + steps
        # S indices relative to the buffer's start: the block's queries are cached .. total - 1
        delta = torch.arange(cached, total, device=x.device).view(-1, 1) - torch.arange(total, device=x.device)
        allowed = (delta >= 0) & (delta <= self.past_context)  # (T, total)
        allowed = None if bool(allowed.all()) else allowed  # one step inside the window: nothing to mask
        for layer in range(self.num_layers):
            name = f"transformer.layers.{layer}"
            qkv = F.linear(x, w[f"{name}.self_attn.in_proj_weight"], w[f"{name}.self_attn.in_proj_bias"])
            q, k, v = qkv.view(batch, steps, 3, heads, head_dim).permute(2, 0, 3, 1, 4)  # each (B, h, T, d)
            self.keys[layer][:, :, cached:total] = k
            self.values[layer][:, :, cached:total] = v
            keys, values = self.keys[layer][:, :, :total], self.values[layer][:, :, :total]
            attention = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)  # (B, h, T, d)
            attention = F.linear(
                attention.transpose(1, 2).reshape(batch, steps, self.dim),
                w[f"{name}.self_attn.out_proj.weight"],
                w[f"{name}.self_attn.out_proj.bias"],
            )
            x = self._layer_norm(x + attention, f"{name}.norm1")
            hidden = F.gelu(F.linear(x, w[f"{name}.linear1.weight"], w[f"{name}.linear1.bias"]))
            x = self._layer_norm(
                x + F.linear(hidden, w[f"{name}.linear2.weight"], w[f"{name}.linear2.bias"]), f"{name}.norm2"
            )
        self.cached = total
        self.frames += steps
        used = codebooks * self.card
        if batch * steps <= 8:  # measured: for a few rows MKL is twice as fast with the weights as left operand
            logits = torch.addmm(self.head_bias[:used, None], self.heads[:used], x.reshape(-1, self.dim).T).T
        else:
            logits = F.linear(x, self.heads[:used], self.head_bias[:used])  # (B, T, K * card)
        return torch.softmax(logits.reshape(batch, steps, codebooks, self.card), dim=-1)


__all__ = [
    "EncodecLanguageModel",
    "EncodecLanguageModelConfig",
    "DeterministicRunner",
    "load_language_model",
    "LANGUAGE_MODEL_FOLDER",
]
