"""Parity with the references: EnCodec 0.1.1 for the numbers (24 and 48 kHz), transformers for the 32 kHz model.

The original models are built with random weights and codebooks fitted to their own encoder outputs (see
`encodec_hf.testing`), saved as checkpoints and converted with `encodec-hf convert`'s code path.
"""

import numpy as np
import pytest
import torch
import transformers

from encodec_hf import EncodecConfig, EncodecFeatureExtractor, EncodecModel
from encodec_hf.chunking import num_frames
from encodec_hf.testing import import_original_encodec

pytestmark = [pytest.mark.parity, pytest.mark.slow]  # full-size models throughout

# Lengths not a multiple of the stride, shorter than one frame (100 < 320), than one chunk, and 48 kHz lengths
# where the original's decode fails (47,700: see linear_overlap_add).
LENGTHS = {
    "encodec_24khz": [1, 100, 333, 12_017, 55_199],
    "encodec_48khz": [1, 100, 333, 24_017, 47_700, 110_399],
}


def original_reference(original, audio: torch.Tensor):
    """EnCodec 0.1.1's codes (list of (B, Q, F)), scales and decoded audio trimmed to the input length.

    Where the original's overlap-add fails on a frame-rounded earlier chunk, the last decoded chunk is padded
    with zeros up to the furthest chunk end first; those positions lie past the input's end and are trimmed.
    """
    from encodec.utils import _linear_overlap_add

    frames = original.encode(audio)
    length = audio.shape[-1]
    if original.segment is None:
        return frames, original.decode(frames)[..., :length]
    decoded = [original._decode_frame(frame) for frame in frames]
    stride = original.segment_stride
    reach = max(i * stride + d.shape[-1] for i, d in enumerate(decoded))
    last_end = (len(decoded) - 1) * stride + decoded[-1].shape[-1]
    if reach > last_end:
        decoded[-1] = torch.nn.functional.pad(decoded[-1], (0, reach - last_end))
    return frames, _linear_overlap_add(decoded, stride)[..., :length]


def relative_error(ours, reference):
    return ((ours - reference).norm() / reference.norm().clamp_min(1e-12)).item()


@pytest.mark.parametrize("source", ["noise", "speech"])
@pytest.mark.parametrize("name", ["encodec_24khz", "encodec_48khz"])
def test_codes_and_audio_match_the_original(converted, name, source, request):
    """The full-size models against EnCodec 0.1.1 at every bandwidth: on noise at lengths around the chunk and
    frame edges, and on real speech (espeak-ng), whose quiet pauses and loud syllables noise never has."""
    original, folder = converted[name]
    model = EncodecModel.from_pretrained(folder).eval()
    generator = torch.Generator().manual_seed(7)
    distinct = set()
    for length in LENGTHS[name] if source == "noise" else [int(2.3 * original.sample_rate)]:
        if source == "noise":
            audio = torch.randn(1, original.channels, length, generator=generator) * 0.2
        else:
            audio = request.getfixturevalue("speech")(
                original.sample_rate, original.channels, length / original.sample_rate
            )[None]
        for bandwidth in original.target_bandwidths:
            original.set_target_bandwidth(bandwidth)
            with torch.no_grad():
                frames, reference = original_reference(original, audio)
                encoded = model.encode(audio, bandwidth=bandwidth)
                ours = model.decode(encoded.audio_codes, encoded.audio_scales, torch.ones(1, length)).audio_values
            assert encoded.audio_codes.shape[0] == len(frames), (length, bandwidth)
            for index, (codes, scale) in enumerate(frames):
                assert torch.equal(encoded.audio_codes[index, :, :, : codes.shape[-1]], codes), (length, bandwidth)
                assert (encoded.audio_codes[index, :, :, codes.shape[-1] :] == 0).all()
                if scale is not None:
                    assert torch.equal(encoded.audio_scales[index], scale), (length, bandwidth)
                distinct.update(codes.unique().tolist())
            assert ours.shape == reference.shape == audio.shape
            assert relative_error(ours, reference) < 1e-5, (length, bandwidth)
    assert len(distinct) > 100  # the codes vary: the comparison is not between constant tensors


@pytest.mark.parametrize("name", ["encodec_24khz", "encodec_48khz"])
@pytest.mark.parametrize("processor", ["ours", "transformers"])
def test_padded_batch_items_match_the_original_alone(converted, name, processor):
    """Whatever processor padded the batch, each item gets the codes and audio it gets alone."""
    original, folder = converted[name]
    model = EncodecModel.from_pretrained(folder).eval()
    rate, channels = original.sample_rate, original.channels
    rng = np.random.default_rng(3)
    clips = [
        (rng.standard_normal((channels, n)) * 0.2).astype(np.float32) for n in (333, rate // 2 + 17, int(2.3 * rate))
    ]
    if processor == "ours":
        inputs = EncodecFeatureExtractor.from_pretrained(folder)(clips, sampling_rate=rate, return_tensors="pt")
    else:  # transformers pads the 48 kHz batch to whole chunks and wants mono clips 1-D
        extractor = transformers.EncodecFeatureExtractor.from_pretrained(folder)
        inputs = extractor([c[0] if channels == 1 else c for c in clips], sampling_rate=rate, return_tensors="pt")
    bandwidth = original.target_bandwidths[1]
    original.set_target_bandwidth(bandwidth)
    with torch.no_grad():
        encoded = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=bandwidth)
        audio = model.decode(encoded.audio_codes, encoded.audio_scales, inputs["padding_mask"]).audio_values
        assert audio.shape == (3, channels, max(c.shape[-1] for c in clips))
        for item, clip in enumerate(clips):
            frames, reference = original_reference(original, torch.from_numpy(clip)[None])
            for index, (codes, scale) in enumerate(frames):
                assert torch.equal(encoded.audio_codes[index, item, :, : codes.shape[-1]], codes[0])
                if scale is not None:
                    assert torch.equal(encoded.audio_scales[index][item], scale[0])
            assert relative_error(audio[item : item + 1, :, : clip.shape[-1]], reference) < 1e-5
            assert (audio[item, :, clip.shape[-1] :] == 0).all()


def test_transformers_48k_differs_where_we_follow_the_original(converted):
    """The disagreement this package settles: transformers pads the last chunk; we match the original."""
    original, folder = converted["encodec_48khz"]
    clip = (np.random.default_rng(5).standard_normal((2, int(2.3 * 48_000))) * 0.2).astype(np.float32)
    inputs = transformers.EncodecFeatureExtractor.from_pretrained(folder)(
        clip, sampling_rate=48_000, return_tensors="pt"
    )
    theirs = transformers.EncodecModel.from_pretrained(folder).eval()
    ours = EncodecModel.from_pretrained(folder).eval()
    original.set_target_bandwidth(6.0)
    with torch.no_grad():
        _, reference = original_reference(original, torch.from_numpy(clip)[None])
        their_audio = theirs(inputs["input_values"], inputs["padding_mask"], bandwidth=6.0).audio_values
        our_audio = ours(inputs["input_values"], inputs["padding_mask"], bandwidth=6.0).audio_values
    assert our_audio.shape[-1] == clip.shape[-1] < their_audio.shape[-1]
    assert relative_error(our_audio, reference) < 1e-5
    assert relative_error(their_audio[..., : clip.shape[-1]], reference) > 1e-2


def fit_codebooks(model, seed: int = 0):
    """Codebooks drawn from the encoder's outputs (transformers builds them as zeros)."""
    generator = torch.Generator().manual_seed(seed)
    config = model.config
    audio = torch.randn(2, config.audio_channels, config.sampling_rate, generator=generator) * 0.3
    with torch.no_grad():
        frames = model.encoder(audio).permute(0, 2, 1).reshape(-1, config.hidden_size)
        for layer in model.quantizer.layers:
            picks = torch.randint(0, frames.shape[0], (config.codebook_size,), generator=generator)
            layer.codebook.embed.copy_(frames[picks] * (0.5 + torch.rand(config.codebook_size, 1, generator=generator)))
            layer.codebook.embed_avg.copy_(layer.codebook.embed)


@pytest.mark.parametrize("name", ["encodec_32khz", "encodec_24khz"])
def test_identical_to_transformers_on_unpadded_audio(tmp_path, name):
    torch.manual_seed(0)
    theirs = transformers.EncodecModel(transformers.EncodecConfig(**EncodecConfig.from_preset(name).to_diff_dict()))
    fit_codebooks(theirs.eval())
    theirs.save_pretrained(tmp_path)
    ours = EncodecModel.from_pretrained(tmp_path).eval()
    rate = ours.config.sampling_rate
    for length in (1, 500, int(1.7 * rate)):
        audio = torch.randn(2, 1, length) * 0.2
        for bandwidth in ours.config.target_bandwidths:
            with torch.no_grad():
                their_codes = theirs.encode(audio, bandwidth=bandwidth).audio_codes
                our = ours.encode(audio, bandwidth=bandwidth)
                assert torch.equal(our.audio_codes, their_codes), (length, bandwidth)
                their_audio = theirs.decode(their_codes, [None]).audio_values[..., :length]
                our_audio = ours.decode(our.audio_codes, our.audio_scales, torch.ones(2, length)).audio_values
                torch.testing.assert_close(our_audio, their_audio, rtol=1e-5, atol=1e-6)
    assert our.audio_codes.unique().numel() > 50
    assert num_frames(length, ours.config.hop_length) == our.audio_codes.shape[-1]


def test_overlap_add_is_the_originals():
    if import_original_encodec() is None:
        pytest.skip("EnCodec 0.1.1 is not installed")
    from encodec.utils import _linear_overlap_add

    from encodec_hf.chunking import linear_overlap_add

    generator = torch.Generator().manual_seed(0)
    for lengths in ([48_000], [48_000, 48_000, 4_960], [48_000, 640]):
        frames = [torch.randn(2, 2, n, generator=generator) for n in lengths]
        assert torch.equal(linear_overlap_add(frames, 47_520), _linear_overlap_add(frames, 47_520))
