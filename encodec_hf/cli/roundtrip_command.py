"""`encodec-hf roundtrip`: encode and decode an audio file, report bit rate and speed."""

from __future__ import annotations

import time

from .common import Commands, check_output, default_bandwidth, load_model, progress_bar, read_audio, write_audio


def add_parser(commands: Commands) -> None:
    commands.file_command(
        "roundtrip",
        "encode and decode an audio file, report bit rate and speed",
        "audio file to read (any format soundfile reads)",
        "audio file to write, at the model's sample rate",
        roundtrip,
    )


def roundtrip(args) -> int:
    import torch

    output = check_output(args.output, args.force)
    audio, rate = read_audio(args.input)
    model, extractor = load_model(args.model)
    bandwidth = model.config.check_bandwidth(default_bandwidth(model, args.bandwidth))

    inputs = extractor(audio, sampling_rate=rate, return_tensors="pt")
    seconds = inputs["input_values"].shape[-1] / model.config.sampling_rate
    bar, progress = progress_bar(seconds)
    start = time.perf_counter()
    with torch.inference_mode():
        encoded = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=bandwidth, progress=progress)
        decoded = model.decode(
            encoded.audio_codes, encoded.audio_scales, inputs["padding_mask"], progress=progress
        ).audio_values
    elapsed = time.perf_counter() - start
    bar.close()
    write_audio(output, decoded[0].float().numpy(), model.config.sampling_rate)

    codebooks = encoded.audio_codes.shape[2]
    kbps = codebooks * model.config.codebook_nbits * model.config.frame_rate / 1000
    print(
        f"{args.input} -> {output}: {seconds:.2f} s, {codebooks} codebooks, {kbps:g} kbps, "
        f"{seconds / elapsed:.1f}x real time (encode + decode, {elapsed:.2f} s)"
    )
    return 0
