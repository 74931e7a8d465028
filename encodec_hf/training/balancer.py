"""The loss balancer of the paper (section 3.4), as audiocraft 1.3.0's `audiocraft.losses.Balancer` computes it.

Given decoded audio `y` and losses l_i(y), the balancer back-propagates, instead of the sum of the losses,

    G = sum_i  total_norm * w_i / sum_j(w_j) * g_i / avg(||g_i||),     g_i = d l_i / d y,

where avg is an exponential moving average of each gradient's norm over the calls: each loss then contributes
its weight's share of the gradient whatever its own scale. Without `balance_grads`, G = sum_i w_i g_i (a weighted
sum). Written here rather than imported because audiocraft's needs flashy and dora (and, through its package,
torchaudio); the tests check it against audiocraft's own on the same inputs.
"""

from __future__ import annotations

import math

import torch
from torch import autograd

from ..distributed import is_initialised, sum_across_ranks


class Balancer:
    """Balance the gradients of several losses on one tensor (the decoded audio). See the module docstring.

    Args:
        weights (`dict[str, float]`): one non-negative weight per loss name. `backward` takes these losses or some
            of them (as audiocraft's: the shares are then taken among the losses given).
        balance_grads (`bool`): rescale each gradient to its weight's share (True), or just weight them (False).
        total_norm (`float`): the norm the balanced gradient aims at.
        ema_decay (`float`): decay of the moving average of the norms (1: a plain average over all calls).
        per_batch_item (`bool`): measure a gradient's norm per batch item and average them (the paper's choice).
        epsilon (`float`): keeps the division finite.
        monitor (`bool`): record in `metrics` each loss's share of the averaged norms (`ratio_NAME`).

    Example:
        >>> balancer = Balancer({"l1": 0.1, "msspec": 1.0})
        >>> effective = balancer.backward({"l1": l1, "msspec": mel}, decoded)  # doctest: +SKIP
    """

    def __init__(
        self,
        weights: dict[str, float],
        balance_grads: bool = True,
        total_norm: float = 1.0,
        ema_decay: float = 0.999,
        per_batch_item: bool = True,
        epsilon: float = 1e-12,
        monitor: bool = False,
    ):
        if not isinstance(weights, dict) or not weights:
            raise ValueError(f"weights must be a non-empty dict of loss name to weight, got {weights!r}")
        for name, weight in weights.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ValueError(f"the weight of loss {name!r} must be a finite number, got {weight!r}")
            if weight < 0:
                raise ValueError(f"the weight of loss {name!r} must be non-negative, got {weight!r}")
        if sum(weights.values()) <= 0:
            raise ValueError(f"at least one weight must be positive, got {weights!r}")
        if not 0 < (ema_decay or 1.0) <= 1:
            raise ValueError(f"ema_decay must be in (0, 1], got {ema_decay!r}")
        self.weights = dict(weights)
        self.balance_grads = balance_grads
        self.total_norm = total_norm or 1.0
        self.ema_decay = ema_decay or 1.0
        self.per_batch_item = per_batch_item
        self.epsilon = epsilon
        self.monitor = monitor
        self.metrics: dict[str, float] = {}
        # the moving average: sum of decayed norms and sum of decayed counts, per loss (flashy's `averager`)
        self._totals: dict[str, float] = {}
        self._counts: dict[str, float] = {}

    def state_dict(self) -> dict:
        """The moving averages, to resume training exactly."""
        return {"totals": dict(self._totals), "counts": dict(self._counts)}

    def load_state_dict(self, state: dict) -> None:
        self._totals, self._counts = dict(state["totals"]), dict(state["counts"])

    def _average(self, norms: dict[str, float]) -> dict[str, float]:
        for name, norm in norms.items():
            self._totals[name] = self._totals.get(name, 0.0) * self.ema_decay + norm
            self._counts[name] = self._counts.get(name, 0.0) * self.ema_decay + 1
        return {name: self._totals[name] / self._counts[name] for name in norms}

    @staticmethod
    def _average_across_ranks(norms: dict[str, float], count: int, device) -> dict[str, float]:
        # flashy's `average_metrics`: a mean over ranks weighted by each rank's batch size
        if not is_initialised():
            return norms
        values = torch.tensor([*norms.values(), 1.0], dtype=torch.float32, device=device) * count
        sum_across_ranks(values)
        return dict(zip(norms, (values[:-1] / values[-1]).tolist()))

    def backward(self, losses: dict[str, torch.Tensor], input: torch.Tensor) -> torch.Tensor:
        """Back-propagate the balanced gradient of `losses` (scalars computed from `input`, the one tensor
        through which they depend on the model) into the model; returns the effective loss, sum_i s_i * l_i with
        s_i each loss's effective weight (detached, for logging)."""
        extra = sorted(set(losses) - set(self.weights))
        if extra or not losses:
            raise ValueError(
                f"the balancer has weights for {sorted(self.weights)}; got losses {sorted(losses)} "
                f"(without a weight: {extra or 'none'})"
            )
        if sum(self.weights[name] for name in losses) <= 0:
            raise ValueError(f"the losses given ({sorted(losses)}) all have weight 0")
        for name, loss in losses.items():
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError(f"loss {name!r} must be a scalar tensor, got {getattr(loss, 'shape', type(loss))}")
            if not torch.isfinite(loss).all():
                raise ValueError(f"loss {name!r} is {loss.item()} (not finite); nothing was back-propagated")
        norms, grads = {}, {}
        for name, loss in losses.items():
            (grad,) = autograd.grad(loss, [input], retain_graph=True, allow_unused=True)
            if grad is None:
                raise ValueError(f"loss {name!r} does not depend on the balancer's input tensor")
            if self.per_batch_item:
                norm = grad.norm(dim=tuple(range(1, grad.dim())), p=2).mean()
            else:
                norm = grad.norm(p=2)
            norms[name], grads[name] = float(norm), grad
        count = len(input) if self.per_batch_item else 1
        averaged = self._average_across_ranks(self._average(norms), count, input.device)
        total = sum(averaged.values())
        self.metrics = {f"ratio_{name}": norm / total for name, norm in averaged.items()} if self.monitor else {}

        total_weight = sum(self.weights[name] for name in averaged)
        out_grad = torch.zeros_like(input)
        effective = torch.zeros((), device=input.device, dtype=input.dtype)
        for name, norm in averaged.items():
            if self.balance_grads:
                scale = self.weights[name] / total_weight * self.total_norm / (self.epsilon + norm)
            else:
                scale = self.weights[name]
            out_grad.add_(grads[name], alpha=scale)
            effective = effective + scale * losses[name].detach()
        input.backward(out_grad)
        return effective
