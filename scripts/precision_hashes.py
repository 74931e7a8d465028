"""SHA-256 of codes, scales and decoded audio of the full-size 24/48 kHz architectures (random weights, seed 0) on
noise and on espeak-ng speech, in float32, float16 and bfloat16, exact and fast paths; and of .ecdc files with the
official language-model architecture on noise and speech: 32 lines. For a refactor, run it at the commit before
and after (same machine) and diff, beside scripts/ecdc_hashes.py. Needs espeak-ng.

    python scripts/precision_hashes.py > after.txt
"""

import hashlib

import numpy as np
import soxr
import torch

from encodec_hf.ecdc import compress
from encodec_hf.testing import espeak_speech, random_model

torch.set_num_threads(1)


def h(t):
    return hashlib.sha256(t.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def speech(rate, channels, seconds):
    a, r = espeak_speech(0)
    a = soxr.resample(a[0], r, rate).astype(np.float32)
    return np.stack([np.resize(a, int(seconds * rate))] * channels)


for name, bw in (("encodec_24khz", 6.0), ("encodec_48khz", 12.0)):
    base = random_model(name, seed=0, language_model=True)
    rate, ch = base.config.sampling_rate, base.config.audio_channels
    sources = {
        "noise": (np.random.default_rng(7).standard_normal((ch, int(2.3 * rate))) * 0.2).astype(np.float32),
        "speech": speech(rate, ch, 2.3),
    }
    for label, audio in sources.items():
        for use_lm in (False, True):
            data = compress(base, audio, rate, bandwidth=bw, use_lm=use_lm)
            print(name, label, "ecdc lm" if use_lm else "ecdc", hashlib.sha256(data).hexdigest()[:16], len(data))
        x = torch.from_numpy(audio)[None]
        mask = torch.ones(1, x.shape[-1])
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            model = random_model(name, seed=0).to(dtype).eval()
            for fast in (False, True):
                with torch.no_grad():
                    enc = model.encode(x.to(dtype), mask, bandwidth=bw, fast_encoding=fast)
                    dec = model.decode(enc.audio_codes, enc.audio_scales, mask, fast_decoding=fast).audio_values
                scales = [s for s in enc.audio_scales if s is not None]
                print(
                    name,
                    label,
                    str(dtype)[6:],
                    "fast" if fast else "exact",
                    h(enc.audio_codes),
                    h(torch.cat(scales)) if scales else "-",
                    h(dec),
                    bool(torch.isfinite(dec.float()).all()),
                )
