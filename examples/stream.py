"""Stream a file through EnCodec's encoder and decoder as a real-time codec would, and report the latency and
the compute time per push.

    .venv/bin/python examples/stream.py IN.wav OUT.wav [--model DIR_OR_HUB_ID] [--bandwidth 6]

Without --model it uses a 24 kHz model with random weights (no network needed; the output then sounds like
noise). Each push carries --frames-per-push frames (default 1: 320 samples at 24 kHz, 13.3 ms). Causal models
(24 kHz) stream frame by frame; the 48 kHz model, which normalises each 1 s chunk, streams chunk by chunk: its
encoder returns each chunk once all its samples are in, so its latency is a chunk.
"""

import argparse
import statistics
import time

import soundfile as sf
import torch

from encodec_hf import EncodecConfig, EncodecFeatureExtractor, EncodecModel, write_audio
from encodec_hf.streaming import STARTUP_DELAY_FRAMES


def push(encoder, decoder, codes) -> torch.Tensor:
    """Hand what the encoder gave to the decoder: frame streams give codes (batch, codebooks, k), chunk streams a list
    of (codes, scale) per completed chunk."""
    if isinstance(codes, list):
        pieces = [decoder.push(chunk_codes, scale) for chunk_codes, scale in codes]
        return torch.cat(pieces, dim=-1) if pieces else torch.zeros(1, decoder.model.config.audio_channels, 0)
    return decoder.push(codes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input")
    parser.add_argument("output")
    parser.add_argument(
        "--model",
        default=None,
        help="a model folder or Hub id: 24 kHz streams frame by frame, 48 kHz chunk by chunk (default: a 24 kHz "
        "model with random weights)",
    )
    parser.add_argument("--bandwidth", type=float, default=None, help="kbps (default: 6 when the model offers it)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's, all cores; on a busy machine 1 can be faster: docs/streaming.md)",
    )
    parser.add_argument("--frames-per-push", type=int, default=1, help="frames per push (latency against overhead)")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    if args.model:
        model = EncodecModel.from_pretrained(args.model).eval()
    else:
        torch.manual_seed(0)
        model = EncodecModel(EncodecConfig.from_preset("encodec_24khz")).eval()
    extractor = EncodecFeatureExtractor.from_model_config(model.config)
    offered = model.config.target_bandwidths
    bandwidth = args.bandwidth if args.bandwidth is not None else (6.0 if 6.0 in offered else offered[0])
    data, rate = sf.read(args.input, dtype="float32", always_2d=True)
    audio = torch.from_numpy(extractor.prepare(data.T, rate))[None]  # (1, channels, samples) at the model's rate
    hop, sampling_rate = model.config.hop_length * args.frames_per_push, model.config.sampling_rate

    encoder, decoder = (
        model.stream_encoder(bandwidth=bandwidth),
        model.stream_decoder(audio_length=audio.shape[-1]),
    )
    times, pieces, first_sample_frame = [], [], None
    with torch.inference_mode():
        for frame, start in enumerate(range(0, audio.shape[-1], hop)):
            began = time.perf_counter()
            out = push(encoder, decoder, encoder.push(audio[..., start : start + hop]))
            times.append(time.perf_counter() - began)
            if out.shape[-1] and first_sample_frame is None:
                first_sample_frame = frame
            pieces.append(out)
        pieces.append(push(encoder, decoder, encoder.flush()))
        pieces.append(decoder.flush())
    result = torch.cat(pieces, dim=-1)[0].numpy()
    write_audio(args.output, result, sampling_rate)

    frame_ms = 1000 * hop / sampling_rate
    per_frame = [1000 * t for t in times]
    print(
        f"{len(times)} pushes of {frame_ms:.1f} ms ({args.frames_per_push} frame(s)), {bandwidth:g} kbps, "
        f"{torch.get_num_threads()} thread{'s' if torch.get_num_threads() != 1 else ''}"
    )
    if model.config.chunk_length is not None:
        why = "a chunk stream waits for each chunk's last sample"
    else:
        why = f"each stream waits at most {STARTUP_DELAY_FRAMES} frames for its reflect padding"
    if first_sample_frame is None:
        print(f"no samples came out before the end of the file ({why})")
    else:
        ms = (first_sample_frame + 1) * frame_ms
        print(
            f"first samples out with push {first_sample_frame + 1}: {ms:.0f} ms of audio in before any came out ({why})"
        )
    print(
        f"compute per push: mean {statistics.mean(per_frame):.2f} ms, p95 "
        f"{sorted(per_frame)[int(0.95 * len(per_frame))]:.2f} ms, max {max(per_frame):.2f} ms; "
        f"real-time factor {frame_ms / statistics.mean(per_frame):.1f}x"
    )
    print(f"wrote {args.output}: {result.shape[-1]} samples ({result.shape[-1] / sampling_rate:.2f} s)")


if __name__ == "__main__":
    main()
