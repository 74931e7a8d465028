"""Training recipes as data: the loss weights, the losses' variants, the balancer, the discriminator and the
optimiser of the paper and of audiocraft 1.3.0's compression solver. `encodec-hf train --recipe NAME` prints the
one it uses and saves it beside the checkpoints (`recipe.json`).
"""

from __future__ import annotations

import copy

RECIPES: dict[str, dict] = {
    # The paper (arXiv 2210.13438, sections 3.4 and 4.2): lambda_t 0.1, lambda_f 1, lambda_g 3, lambda_feat 3 at
    # 24 kHz (4 and 4 at 48 kHz), the balancer on, the discriminator updated with probability 2/3 at 24 kHz and
    # 1/2 at 48 kHz, Adam 3e-4 with betas (0.5, 0.9).
    "paper": {
        "weights": {"l1": 0.1, "mel": 1.0, "adv": 3.0, "feat": 3.0},
        "weights_48khz": {"adv": 4.0, "feat": 4.0},
        "commitment_weight": 1.0,
        "mel_preset": "paper",
        "adversarial_loss": "hinge2",
        "relative_feature_matching": True,
        "balancer": {"balance_grads": True, "total_norm": 1.0, "ema_decay": 0.999, "per_batch_item": True},
        "discriminator_probability": 2 / 3,
        "discriminator_probability_48khz": 0.5,
        "discriminator": {"filters": 32, "negative_slope": 0.3},
        "optimizer": {"lr": 3e-4, "betas": [0.5, 0.9], "weight_decay": 0.0},
        "adversarial_start": 0,
    },
    # audiocraft 1.3.0, config/solver/compression/default.yaml: adv 4, feat 4, l1 0.1, msspec 2 (mel and SI-SNR
    # weighted 0), hinge losses, plain (not relative) feature matching, the discriminator every step, Adam 3e-4
    # (0.5, 0.9). Its EMA of the model's weights is not reproduced.
    "audiocraft": {
        "weights": {"l1": 0.1, "mel": 2.0, "adv": 4.0, "feat": 4.0},
        "weights_48khz": {},
        "commitment_weight": 1.0,
        "mel_preset": "audiocraft",
        "adversarial_loss": "hinge",
        "relative_feature_matching": False,
        "balancer": {"balance_grads": True, "total_norm": 1.0, "ema_decay": 0.999, "per_batch_item": True},
        "discriminator_probability": 1.0,
        "discriminator_probability_48khz": 1.0,
        "discriminator": {"filters": 32, "negative_slope": 0.3},
        "optimizer": {"lr": 3e-4, "betas": [0.5, 0.9], "weight_decay": 0.0},
        "adversarial_start": 0,
    },
}

# For small models and short runs (the `tiny` preset on a CPU): the paper's, with reconstruction first: l1 and mel
# at weight 1, Adam at 1e-3, a narrow discriminator, the paper's adversarial losses joining after 2,000 steps, and
# no commitment loss. Measured on `tiny` (docs/training.md): with the paper's weights from the start, 400 steps
# leave the held-out mel distance where it began; with the commitment loss at weight 1 (or 0.1) the encoder is
# pulled onto its codebooks faster than reconstruction spreads it out, and every codebook collapses to one entry
# within 110 to 130 steps (perplexity 1, the output independent of the input); SI-SNR as a loss lets the decoder
# settle on near silence, which audiocraft's SI-SNR scores about 0 dB (see `SISNR`).
RECIPES["tiny"] = {
    **copy.deepcopy(RECIPES["paper"]),
    "weights": {"l1": 1.0, "mel": 1.0, "adv": 3.0, "feat": 3.0},
    "weights_48khz": {},
    "commitment_weight": 0.0,
    "discriminator": {"filters": 8, "negative_slope": 0.3},
    "optimizer": {"lr": 1e-3, "betas": [0.5, 0.9], "weight_decay": 0.0},
    "adversarial_start": 2000,
}


def default_recipe(model) -> str:
    """The recipe a run takes when none is named: `tiny` for the `tiny` preset (the paper's collapses it, see
    above), the paper's for everything else."""
    return "tiny" if isinstance(model, str) and model == "tiny" else "paper"


def resolve_recipe(name: str, sampling_rate: int, **overrides) -> dict:
    """The recipe `name` for a model at `sampling_rate` (48 kHz models take the `_48khz` values), with
    `overrides` for top-level keys (`lr` sets the optimiser's; `discriminator_filters` the discriminator's width;
    `weights` replaces the loss weights; None leaves a value as it is). Returns a plain dict, saved as `recipe.json`.

    Example: `resolve_recipe("paper", 48000)["weights"]` is `{"l1": 0.1, "mel": 1.0, "adv": 4.0, "feat": 4.0}`.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}")
    recipe = copy.deepcopy(RECIPES[name])
    high_rate = sampling_rate >= 48000
    extra_weights = recipe.pop("weights_48khz")
    probability_48 = recipe.pop("discriminator_probability_48khz")
    if high_rate:
        recipe["weights"].update(extra_weights)
        recipe["discriminator_probability"] = probability_48
    recipe["name"] = name
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "lr":
            if not value > 0:
                raise ValueError(f"lr must be positive, got {value!r}")
            recipe["optimizer"]["lr"] = float(value)
        elif key == "discriminator_filters":
            recipe["discriminator"]["filters"] = int(value)
        elif key == "adversarial_start":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"adversarial_start must be a non-negative integer, got {value!r}")
            recipe["adversarial_start"] = value
        elif key in recipe:
            recipe[key] = value
        else:
            raise ValueError(f"unknown recipe setting {key!r}; the settings are {', '.join(sorted(recipe))}")
    for loss, weight in recipe["weights"].items():
        if loss not in ("l1", "mel", "adv", "feat", "sisnr") or not weight >= 0:
            raise ValueError(
                f"recipe weight {loss!r}: {weight!r}; losses are l1, mel, adv, feat, sisnr, with weights >= 0"
            )
    return recipe
