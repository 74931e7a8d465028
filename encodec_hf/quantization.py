"""EnCodec's residual vector quantizer: a Euclidean codebook (its k-means start, EMA updates and dead-code
replacement for training, as EnCodec 0.1.1 does them), one vector quantizer per codebook, and the residual stack.
Names match transformers' EncodecModel, so the state-dict keys are the Hub's."""

from __future__ import annotations

import torch
from torch import nn

from .configuration_encodec import EncodecConfig
from .distributed import average_across_ranks, broadcast_from_rank0


def sample_vectors(samples: torch.Tensor, num: int) -> torch.Tensor:
    """`num` rows of `samples` (N, D), without repetition when there are enough, drawn from torch's global random
    generator exactly as EnCodec 0.1.1 draws them (so a seed gives the original's picks)."""
    if samples.shape[0] >= num:
        indices = torch.randperm(samples.shape[0], device=samples.device)[:num]
    else:
        indices = torch.randint(0, samples.shape[0], (num,), device=samples.device)
    return samples[indices]


def kmeans(samples: torch.Tensor, num_clusters: int, num_iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means on (N, D) `samples`, started from random rows, as EnCodec 0.1.1 runs it: returns the means
    (num_clusters, D) and the last assignment's cluster sizes (num_clusters,). An empty cluster keeps its mean.

    Example: samples [[0], [0.1], [10], [10.2]] with 2 clusters give means [[0.05], [10.1]] (in some order) and
    sizes [2, 2].
    """
    dim = samples.shape[-1]
    means = sample_vectors(samples, num_clusters)
    bins = None
    for _ in range(num_iters):
        dists = -((samples[:, None, :] - means[None, :, :]) ** 2).sum(dim=-1)  # (N, K)
        buckets = dists.max(dim=-1).indices
        bins = torch.bincount(buckets, minlength=num_clusters)
        empty = bins == 0
        sums = buckets.new_zeros(num_clusters, dim, dtype=samples.dtype)
        sums.scatter_add_(0, buckets[:, None].expand(-1, dim), samples)
        means = torch.where(empty[:, None], means, sums / bins.masked_fill(empty, 1)[:, None])
    if bins is None:  # no iteration: sizes of the random start
        bins = torch.zeros(num_clusters, dtype=torch.long, device=samples.device)
    return means, bins


class EncodecEuclideanCodebook(nn.Module):
    """One codebook: `embed` (codebook_size, dim), and the statistics training keeps (`inited`, `cluster_size`,
    `embed_avg`).

    `encode` / `decode` serve inference. `forward` serves both: in eval mode it is `decode(encode(x))` and changes
    nothing; in train mode it updates the codebook exactly as EnCodec 0.1.1's `EuclideanCodebook.forward` does
    (k-means on the first batch if not `inited`, replacement of entries used less than `threshold_ema_dead_code`
    times, then exponential moving averages of cluster sizes and sums with Laplace smoothing). The buffers are
    updated in place, without autograd, and kept identical across ranks under torch.distributed.
    """

    def __init__(self, config: EncodecConfig):
        super().__init__()
        embed = torch.zeros(config.codebook_size, config.codebook_dim)
        self.codebook_size = config.codebook_size
        self.decay = config.codebook_decay
        self.epsilon = config.codebook_epsilon
        self.kmeans_iters = config.kmeans_iters
        self.threshold_ema_dead_code = config.threshold_ema_dead_code
        self.replacement = config.codebook_replacement
        self.inited = nn.Buffer(torch.ones(1))
        self.cluster_size = nn.Buffer(torch.zeros(config.codebook_size))
        self.embed = nn.Buffer(embed)
        self.embed_avg = nn.Buffer(embed.clone())

    def encode(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # (N, D) -> (N,): index of the nearest entry, with the original's expression so that ties and
        # rounding fall the same way; in float32 at least (a bfloat16 model's distances would tie often).
        hidden_states = hidden_states.float()
        embed = self.embed.float().t()
        dist = -(
            hidden_states.pow(2).sum(1, keepdim=True) - 2 * hidden_states @ embed + embed.pow(2).sum(0, keepdim=True)
        )
        return dist.max(dim=-1).indices

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return nn.functional.embedding(codes, self.embed)

    def reset(self) -> None:
        """Empty the codebook and mark it uninitialised: the next training batch initialises it with k-means (what
        EnCodec 0.1.1 does with a model built from scratch)."""
        with torch.no_grad():
            self.inited.zero_()
            self.cluster_size.zero_()
            self.embed.zero_()
            self.embed_avg.zero_()

    def forward(self, hidden_states: torch.Tensor, update: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        # (N, D) -> quantized (N, D), codes (N,). The quantized vectors use the codebook as it was before this
        # batch's update, as in the original. `update=False` (frozen codebooks) quantizes without learning.
        if not (self.training and update):
            codes = self.encode(hidden_states)
            return self.decode(codes), codes
        with torch.no_grad():
            samples = hidden_states.detach()
            if not self.inited.item():
                embed, sizes = kmeans(samples, self.codebook_size, self.kmeans_iters)
                self.embed.copy_(embed)
                self.embed_avg.copy_(embed)
                self.cluster_size.copy_(sizes)
                self.inited.fill_(1)
                broadcast_from_rank0(self.buffers())
            codes = self.encode(samples)
            quantized = self.decode(codes)
            self._expire_codes(samples)
            onehot = nn.functional.one_hot(codes, self.codebook_size).type(samples.dtype)  # (N, K)
            counts, sums = onehot.sum(0), samples.t() @ onehot  # (K,), (D, K)
            average_across_ranks(counts, sums)
            self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
            self.embed_avg.mul_(self.decay).add_(sums.t(), alpha=1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
            self.embed.copy_(self.embed_avg / smoothed.unsqueeze(1))
        return quantized, codes

    def _expire_codes(self, samples: torch.Tensor) -> None:
        # As the original (and audiocraft 1.3): entries below the threshold take random batch vectors. In both
        # references the EMA step that follows recomputes every entry from `embed_avg`, which this does not touch,
        # so the replacement is overwritten in the same step and only its random draw is felt ("original", kept
        # for parity). "reset" also sets the entries' averaged size to the threshold and their averaged sum to
        # threshold x the new vector, so that the replacement survives the update.
        if self.threshold_ema_dead_code == 0:
            return
        expired = self.cluster_size < self.threshold_ema_dead_code
        if not torch.any(expired):
            return
        sampled = sample_vectors(samples, self.codebook_size)
        self.embed.copy_(torch.where(expired[:, None], sampled, self.embed))
        if self.replacement == "reset":
            threshold = float(self.threshold_ema_dead_code)
            self.cluster_size.copy_(torch.where(expired, threshold, self.cluster_size))
            self.embed_avg.copy_(torch.where(expired[:, None], sampled * threshold, self.embed_avg))
        broadcast_from_rank0(self.buffers())


class EncodecVectorQuantization(nn.Module):
    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.codebook = EncodecEuclideanCodebook(config)

    def encode(self, hidden_states: torch.Tensor) -> torch.Tensor:
        batch, dim, frames = hidden_states.shape
        flat = hidden_states.permute(0, 2, 1).reshape(-1, dim)  # (B, D, F) -> (B * F, D)
        return self.codebook.encode(flat).view(batch, frames)  # (B, F)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self.codebook.decode(codes).permute(0, 2, 1)  # (B, F) -> (B, D, F)

    def forward(
        self, hidden_states: torch.Tensor, update_codebook: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, F) -> quantized (B, D, F), codes (B, F), commitment loss (a scalar; 0 in eval mode).

        In train mode the quantized vectors pass gradients straight through to `hidden_states`, and the
        commitment loss is the mean squared distance of `hidden_states` to them (unweighted: the training recipe
        weighs it); the codebook learns unless `update_codebook` is False."""
        batch, dim, frames = hidden_states.shape
        flat = hidden_states.permute(0, 2, 1).reshape(-1, dim)  # (B * F, D)
        quantized, codes = self.codebook(flat, update_codebook)
        loss = hidden_states.new_zeros(())
        if self.training:
            quantized = flat + (quantized - flat).detach()  # the original's expression, rounding included
            loss = nn.functional.mse_loss(quantized.detach(), flat)
        quantized = quantized.view(batch, frames, dim).permute(0, 2, 1)
        return quantized, codes.view(batch, frames), loss


class EncodecResidualVectorQuantizer(nn.Module):
    """Residual vector quantizer: each codebook quantizes what the previous ones left over."""

    def __init__(self, config: EncodecConfig):
        super().__init__()
        self.layers = nn.ModuleList([EncodecVectorQuantization(config) for _ in range(config.num_quantizers)])

    def encode(self, embeddings: torch.Tensor, num_quantizers: int) -> torch.Tensor:
        # (B, D, F) -> (num_quantizers, B, F)
        residual = embeddings.float()
        codes = []
        for layer in self.layers[:num_quantizers]:
            indices = layer.encode(residual)
            residual = residual - layer.decode(indices)
            codes.append(indices)
        return torch.stack(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        # (num_quantizers, B, F) -> (B, D, F)
        quantized = torch.tensor(0.0, device=codes.device)
        for layer, indices in zip(self.layers, codes, strict=False):  # codes may use fewer codebooks
            quantized = quantized + layer.decode(indices)
        return quantized

    def forward(
        self, embeddings: torch.Tensor, num_quantizers: int, update_codebooks: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, D, F) -> quantized (B, D, F), codes (num_quantizers, B, F), commitment loss (the mean over the
        codebooks used, as EnCodec 0.1.1's `penalty`).

        In eval mode this is `decode(encode(embeddings))` and changes nothing. In train mode every codebook used
        updates itself (see `EncodecEuclideanCodebook`), gradients pass straight through to `embeddings`, and
        the residuals are formed as the original forms them (from the straight-through values);
        `update_codebooks=False` keeps the codebooks fixed (straight-through gradients and the loss remain)."""
        if not 1 <= num_quantizers <= len(self.layers):
            raise ValueError(f"num_quantizers must be in [1, {len(self.layers)}], got {num_quantizers!r}")
        if not self.training:
            codes = self.encode(embeddings, num_quantizers)
            return self.decode(codes), codes, embeddings.new_zeros(())
        residual = embeddings.float()
        quantized_sum = 0.0
        codes, losses = [], []
        for layer in self.layers[:num_quantizers]:
            quantized, indices, loss = layer(residual, update_codebooks)
            residual = residual - quantized
            quantized_sum = quantized_sum + quantized
            codes.append(indices)
            losses.append(loss)
        return quantized_sum, torch.stack(codes), torch.stack(losses).mean()

    def reset_codebooks(self) -> None:
        """Mark every codebook uninitialised (see `EncodecEuclideanCodebook.reset`): for training from scratch."""
        for layer in self.layers:
            layer.codebook.reset()
