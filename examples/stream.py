"""Stream a file through EnCodec's encoder and decoder frame by frame, as a real-time codec would, and report
the latency and the compute time per frame.

    .venv/bin/python examples/stream.py IN.wav OUT.wav [--model DIR_OR_HUB_ID] [--bandwidth 6]

Without --model it uses a 24 kHz model with random weights (no network needed; the output then sounds like
noise). Each push carries --frames-per-push frames (default 1: 320 samples at 24 kHz, 13.3 ms).
"""

import argparse
import statistics
import time

import numpy as np
import soundfile as sf
import torch

from encodec_hf import EncodecConfig, EncodecFeatureExtractor, EncodecModel
from encodec_hf.streaming import STARTUP_DELAY_FRAMES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument("--model", default=None, help="a causal model (24 kHz); default: random weights")
    parser.add_argument("--bandwidth", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames-per-push", type=int, default=1, help="frames per push (latency against overhead)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.model:
        model = EncodecModel.from_pretrained(args.model).eval()
    else:
        torch.manual_seed(0)
        model = EncodecModel(EncodecConfig.from_preset("encodec_24khz")).eval()
    extractor = EncodecFeatureExtractor.from_model_config(model.config)
    data, rate = sf.read(args.input, dtype="float32", always_2d=True)
    audio = torch.from_numpy(extractor.prepare(data.T, rate))[None]  # (1, channels, samples) at the model's rate
    hop, sampling_rate = model.config.hop_length * args.frames_per_push, model.config.sampling_rate

    encoder, decoder = (
        model.stream_encoder(bandwidth=args.bandwidth),
        model.stream_decoder(audio_length=audio.shape[-1]),
    )
    times, pieces, first_sample_frame = [], [], None
    with torch.inference_mode():
        for frame, start in enumerate(range(0, audio.shape[-1], hop)):
            began = time.perf_counter()
            codes = encoder.push(audio[..., start : start + hop])
            out = decoder.push(codes)
            times.append(time.perf_counter() - began)
            if out.shape[-1] and first_sample_frame is None:
                first_sample_frame = frame
            pieces.append(out)
        pieces.append(decoder.push(encoder.flush()))
        pieces.append(decoder.flush())
    result = torch.cat(pieces, dim=-1)[0].numpy()
    sf.write(args.output, np.clip(result, -0.99, 0.99).T, sampling_rate, subtype="PCM_16")

    frame_ms = 1000 * hop / sampling_rate
    per_frame = [1000 * t for t in times]
    print(
        f"{len(times)} pushes of {frame_ms:.1f} ms ({args.frames_per_push} frame(s)), {args.bandwidth:g} kbps, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"first samples out with push {first_sample_frame + 1}: {(first_sample_frame + 1) * frame_ms:.0f} ms of audio "
        f"in before any comes out (each stream waits at most {STARTUP_DELAY_FRAMES} frames for its reflect "
        f"padding); then one push in, one push out"
    )
    print(
        f"compute per push: mean {statistics.mean(per_frame):.2f} ms, p95 "
        f"{sorted(per_frame)[int(0.95 * len(per_frame))]:.2f} ms, max {max(per_frame):.2f} ms; "
        f"real-time factor {frame_ms / statistics.mean(per_frame):.1f}x"
    )
    print(f"wrote {args.output}: {result.shape[-1]} samples ({result.shape[-1] / sampling_rate:.2f} s)")


if __name__ == "__main__":
    main()
