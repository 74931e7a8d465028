"""Write the demo's inputs into a folder: a 10 s stereo 44.1 kHz test signal (chirp and noise bursts) and an
EnCodec 0.1.1 48 kHz checkpoint with random weights (as `encodec_48khz-random.th`)."""

import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from encodec_hf.testing import original_model  # noqa: E402

out = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
out.mkdir(parents=True, exist_ok=True)
rate, seconds = 44_100, 10.0
t = np.arange(int(rate * seconds)) / rate
chirp = 0.3 * np.sin(2 * np.pi * (100 + 400 * t) * t)
bursts = 0.1 * np.random.default_rng(0).standard_normal(t.shape) * (np.sin(2 * np.pi * 0.5 * t) > 0.9)
sf.write(out / "demo-44k1.wav", np.stack([chirp + bursts, chirp - bursts], axis=1).astype(np.float32), rate)
if not (out / "encodec_48khz-random.th").exists():
    torch.save(original_model("encodec_48khz").state_dict(), out / "encodec_48khz-random.th")
print(f"wrote {out / 'demo-44k1.wav'} and {out / 'encodec_48khz-random.th'}")
