"""SHA-256 of .ecdc files in every mode, for checking that a change leaves the bytes as they were.

    python scripts/ecdc_hashes.py > after.txt   # then the same at the commit before, and diff

The 24 and 48 kHz architectures with random weights (`encodec_hf.testing.random_model`, seed 0, with a random
language model) on 2.5 s of seeded noise: container 0 and 1, with and without the language model (version 1 in both
its modes), at two bandwidths each: ten files.
"""

import hashlib

import numpy as np
import torch

from encodec_hf.ecdc import compress
from encodec_hf.testing import random_model

CASES = (
    ({}, "v0"),
    ({"use_lm": True}, "v0 lm"),
    ({"container_version": 1}, "v1"),
    ({"use_lm": True, "container_version": 1}, "v1 lm deterministic"),
    ({"use_lm": True, "container_version": 1, "deterministic_lm": False}, "v1 lm frame by frame"),
)


def main() -> None:
    torch.set_num_threads(1)
    for name, bandwidth in (("encodec_24khz", 6.0), ("encodec_48khz", 12.0)):
        model = random_model(name, seed=0, language_model=True)
        rate, channels = model.config.sampling_rate, model.config.audio_channels
        audio = (np.random.default_rng(7).standard_normal((channels, int(2.5 * rate))) * 0.2).astype(np.float32)
        for options, label in CASES:
            data = compress(model, audio, rate, bandwidth=bandwidth, **options)
            print(f"{name} {bandwidth:g} kbps {label}: {hashlib.sha256(data).hexdigest()} ({len(data)} bytes)")


if __name__ == "__main__":
    main()
