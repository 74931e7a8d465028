"""The chunk scheduler and the arithmetic that bites: chunk plans and their inverse, a stream's next chunk,
convolution padding, frame counts, overlap-add, batching of chunks.

Small pure functions (and one small accumulator), each with a worked example, and the two schedulers built on them
(`encode_audio`, `decode_audio`) that cut a batch into chunks, run a codec's two per-chunk steps on batches of them
and put the results together. They are shared by the feature extractor, the model, the exported-model runners, the
streams, tokenization and the .ecdc files, so that none of them holds a second copy. Vocabulary: a *chunk* is a
piece of audio the model encodes alone (1 s for the 48 kHz model; the whole clip for causal models); a *frame* is
one step of codes (`hop_length` samples, 320 at 24 kHz).

This module imports nothing from the package (a codec is anything with a `config` and the two steps), so every
other module can import it.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Iterable, Iterator

import torch


def chunk_sizes(chunk_length_s: float | None, overlap: float | None, sampling_rate: int) -> tuple:
    """(chunk_length, chunk_stride) in samples, as EnCodec 0.1.1 derives them; (None, None) without chunking.

    Worked example, the 48 kHz model (1 s chunks, 1 % overlap): chunk_length = int(1.0 * 48,000) = 48,000 and
    chunk_stride = max(1, int(0.99 * 48,000)) = 47,520. With `chunk_length_s` but no `overlap`:
    (chunk_length, None), which does not chunk either.
    """
    if chunk_length_s is None:
        return None, None
    chunk_length = int(chunk_length_s * sampling_rate)
    if overlap is None:
        return chunk_length, None
    return chunk_length, max(1, int((1.0 - overlap) * chunk_length))


def plan_chunks(length: int, chunk_length: int | None, chunk_stride: int | None) -> list[tuple[int, int]]:
    """Where each chunk of a clip of `length` samples starts and how many real samples it holds.

    EnCodec 0.1.1 cuts a clip into chunks starting every `chunk_stride` samples, each `chunk_length` long
    except the last, which keeps only the samples that exist (it is never padded). Without chunking the
    whole clip is one chunk.

    Worked example, the 48 kHz model (chunk 48,000, stride 47,520) on 100,000 samples:
    starts 0, 47,520, 95,040, so `[(0, 48000), (47520, 48000), (95040, 4960)]`. A clip of exactly
    48,000 samples gives two chunks, `[(0, 48000), (47520, 480)]`, as the original does.
    """
    if length < 1:
        raise ValueError(f"a clip needs at least one sample to be chunked, got length {length}")
    if chunk_length is None or chunk_stride is None:
        return [(0, length)]
    return [(start, min(chunk_length, length - start)) for start in range(0, length, chunk_stride)]


def stream_cut(held: int, chunk_length: int, chunk_stride: int, final: bool) -> tuple[int, int | None] | None:
    """A chunk stream's next chunk, from the `held` samples it has from that chunk's start on: None while it must
    wait for more; else `(take, keep_from)`: encode the first `take` samples, then keep the samples from `keep_from`
    on (None: nothing more to encode). The chunks are `plan_chunks`' for whatever length the stream ends at.

    Worked example, chunk 48,000, stride 47,520: 50,000 held -> (48,000, 47,520), 2,480 then kept; at the end
    (`final`) 2,480 held -> (2,480, None); 30,000 held and not final -> None.
    """
    if not (held >= chunk_length or (final and held > 0)):
        return None
    take = min(held, chunk_length)
    return take, (None if final and held <= chunk_stride else chunk_stride)


def decode_plan(
    total_chunks: int, frames: int, chunk_stride: int | None, hop_length: int, last_frame_pad_length: int = 0
) -> tuple[list[int], int]:
    """The inverse of `plan_chunks` when only the codes are known: the frames of each chunk and the samples the
    codes imply, `(total_chunks - 1) * stride + (frames - last_frame_pad_length) * hop`; chunks before the last are
    cut to the frames that reach it.

    Worked example, the 48 kHz model (stride 47,520, hop 320) with 3 chunks of 150 frames, 134 of padding in the
    last: 2 x 47,520 + 16 x 320 = 100,160 samples, chunk frames [150, 150, 16].
    """
    if not 0 <= last_frame_pad_length < frames:
        raise ValueError(f"last_frame_pad_length must be in [0, {frames}), got {last_frame_pad_length}")
    stride = chunk_stride or 0
    length = (total_chunks - 1) * stride + (frames - last_frame_pad_length) * hop_length
    return [min(frames, num_frames(length - index * stride, hop_length)) for index in range(total_chunks)], length


def num_frames(length: int, hop_length: int) -> int:
    """Code frames the encoder makes from `length` samples: ceil(length / hop) (24 kHz: 333 samples -> 2)."""
    # ceil division written as a floor division of a non-negative number: exported graphs compute `//` with ONNX's
    # Div, which truncates toward zero, and would get -(-a // b) wrong
    return (length + hop_length - 1) // hop_length


def chunk_frames(audio_length: int, config) -> list[int]:
    """The real frames of each chunk of a clip of `audio_length` samples.

    Worked example, 48 kHz (chunks of 48,000 samples every 47,520, 320 samples a frame): 100,000 samples ->
    chunks of 48,000, 48,000 and 4,960 samples -> [150, 150, 16]. 24 kHz: one chunk, ceil(length / 320) frames.
    """
    return [
        num_frames(size, config.hop_length)
        for _, size in plan_chunks(audio_length, config.chunk_length, config.chunk_stride)
    ]


def frames_per_chunk(config) -> int | None:
    """Frames of a whole chunk (150 at 48 kHz), or None for models that do not chunk."""
    return None if config.chunk_length is None else num_frames(config.chunk_length, config.hop_length)


def codes_length(num_chunks: int, last_frames: int, config) -> int:
    """The samples that `num_chunks` chunks decode to when the last holds `last_frames` real frames:
    (num_chunks - 1) x chunk_stride + min(last_frames x hop_length, chunk_stride), or last_frames x hop_length for
    models that do not chunk (see `tokens_to_codes` for why the stride caps it)."""
    if config.chunk_length is None:
        return last_frames * config.hop_length
    return (num_chunks - 1) * config.chunk_stride + min(last_frames * config.hop_length, config.chunk_stride)


def conv_extra_padding(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Zeros to add at the end so that a strided convolution's last window is full (EnCodec's pad_for_conv1d).

    Without them the transposed convolution cannot rebuild the input length. With kernel 4, stride 2 and total
    padding 2 on 5 samples, the windows start at 0, 2, 4 of the 7 padded samples and the last one needs one more:

        p 1 2 3 4 5 p .      (p: fixed padding, .: the extra sample)
        [0  1  2  3]
            [2  3  4  5]
                [4  5  6  7]

    Returns `(ceil((length - kernel_size + padding_total) / stride) + 1 - 1) * stride + kernel_size -
    padding_total - length`, computed in integers so no float rounding can change it.
    """
    numerator = length - kernel_size + padding_total
    # ceil division; numerator + stride - 1 >= 0 for every EnCodec layer (numerator >= 1 - stride), so ONNX's
    # truncating Div gives it too (see num_frames)
    windows = (numerator + stride - 1) // stride + 1
    ideal_length = (windows - 1) * stride + kernel_size - padding_total
    return ideal_length - length


def overlap_add_weights(chunk_length: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """EnCodec's triangle of overlap-add weights, highest in the middle of a chunk and never zero.

    Two chunks overlapping from S to T weigh (t - S) and (T - t); divided by their sum, the second chunk
    fades in linearly, (t - S) / (T - S). Example for chunk_length 4: linspace(0, 1, 6)[1:-1] = 0.2, 0.4,
    0.6, 0.8, so weights 0.2, 0.4, 0.4, 0.2.
    """
    t = torch.linspace(0, 1, chunk_length + 2, dtype=dtype, device=device)[1:-1]
    return 0.5 - (t - 0.5).abs()


class OverlapAdd:
    """EnCodec 0.1.1's overlap-add, one chunk at a time: `add` returns the samples no later chunk can change.

    Chunk i (`(..., length_i)`) starts at `i * stride`. Every position is the weighted mean of the chunks covering
    it, with `overlap_add_weights` computed for the first chunk's length (a shorter last chunk uses the start of
    that triangle), summed in float32 at least so that bfloat16 chunks do not round the small weights at the chunk
    edges to zero. Each position's sums are made in the same order as the original's whole-clip buffer, so the
    samples are bit for bit the original's whether they come out chunk by chunk (streaming) or at once
    (`linear_overlap_add`).

    Worked example, stride 2, two chunks of 4 samples (weights 0.2, 0.4, 0.4, 0.2): `add(a)` returns samples 0-1
    (a[0], a[1]: nothing else covers them); `add(b)` returns samples 2-3, (0.4 a[2] + 0.2 b[0]) / 0.6 and
    (0.2 a[3] + 0.4 b[1]) / 0.6; `finish()` returns b[2], b[3].
    """

    def __init__(self, stride: int):
        self.stride = stride
        self.index = 0  # chunks added
        self.offset = 0  # absolute position of the buffers' first sample
        self.weight = self.out = self.sum_weight = None
        self.dtype = None  # of the chunks, for the output

    def add(self, chunk: torch.Tensor) -> torch.Tensor:
        # chunk: (..., length) -> (..., n) samples now final
        if self.weight is None:
            self.dtype = chunk.dtype
            dtype = torch.promote_types(chunk.dtype, torch.float32)
            self.weight = overlap_add_weights(chunk.shape[-1], dtype, chunk.device)
            self.out = torch.zeros(*chunk.shape[:-1], 0, dtype=dtype, device=chunk.device)
            self.sum_weight = torch.zeros(0, dtype=dtype, device=chunk.device)
        start = self.index * self.stride - self.offset  # the chunk's start within the buffers
        length = chunk.shape[-1]
        end = start + length
        if end > self.out.shape[-1]:
            grow = end - self.out.shape[-1]
            self.out = torch.nn.functional.pad(self.out, (0, grow))
            self.sum_weight = torch.nn.functional.pad(self.sum_weight, (0, grow))
        self.out[..., start:end] += self.weight[:length] * chunk.to(self.out.dtype)
        self.sum_weight[start:end] += self.weight[:length]
        self.index += 1
        ready = self.index * self.stride - self.offset  # the next chunk starts there
        return self._release(min(ready, self.out.shape[-1]))

    def finish(self) -> torch.Tensor:
        """The samples still held (after the last chunk)."""
        if self.out is None:
            raise ValueError("overlap-add needs at least one chunk")
        return self._release(self.out.shape[-1])

    def _release(self, count: int) -> torch.Tensor:
        out = self.out[..., :count] / self.sum_weight[:count]
        self.out, self.sum_weight = self.out[..., count:], self.sum_weight[count:]
        self.offset += count
        return out.to(self.dtype)


def linear_overlap_add(chunks: list[torch.Tensor], stride: int) -> torch.Tensor:
    """Join decoded chunks (each `(..., length_i)`, a whole number of frames) that start every `stride` samples,
    as EnCodec 0.1.1 does.

    See `OverlapAdd` for the weights. The result covers every chunk: usually `stride * (len(chunks) - 1) +
    chunks[-1].shape[-1]` samples, as in the original. The original allocates exactly that and fails ("The size
    of tensor a (47840) must match the size of tensor b (48000)") when an earlier chunk, rounded up to whole
    frames, reaches further than the last one: 48 kHz clips whose last chunk holds 161 to 320 samples after a
    partial chunk, such as 47,681 to 47,840 samples. Here the buffer grows to the furthest chunk end instead,
    which changes no sample where the original works; callers trim to the real length.
    """
    if not chunks:
        raise ValueError("linear_overlap_add needs at least one chunk")
    joiner = OverlapAdd(stride)
    pieces = [joiner.add(chunk) for chunk in chunks]
    pieces.append(joiner.finish())
    return torch.cat(pieces, dim=-1)


def batch_jobs(jobs: Iterable[tuple[Hashable, object]], batch_size: int) -> Iterator[tuple[Hashable, list]]:
    """Cut (key, job) pairs into (key, batch) of at most `batch_size` jobs that share the key, keys in first-seen
    order.

    The model encodes or decodes chunks of equal length together; the key is that length. Worked example,
    batch_size 2: `[(48000, a), (48000, b), (4960, c), (48000, d)]` -> `(48000, [a, b])`, `(48000, [d])`,
    `(4960, [c])`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    groups: dict = {}
    for key, job in jobs:
        groups.setdefault(key, []).append(job)
    for key, members in groups.items():
        for first in range(0, len(members), batch_size):
            yield key, members[first : first + batch_size]


def bucket_jobs(jobs: Iterable[tuple[int, object]], batch_size: int) -> Iterator[tuple[int, list]]:
    """Cut (length, job) pairs into (longest length, batch) of at most `batch_size` jobs of similar lengths, for
    batches padded to their longest member: the jobs are sorted longest first (ties in given order), so each batch
    wastes as little padding as the lengths allow.

    Worked example, batch_size 2: `[(300, a), (1000, b), (320, c), (990, d), (10, e)]` -> `(1000, [b, d])`,
    `(320, [c, a])`, `(10, [e])`: 2,620 real samples in 2,650 padded, where batching in the given order would pad
    [a, b] to 1,000, [c, d] to 990 and [e] to 10: 3,990 samples.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    ordered = sorted(jobs, key=lambda pair: -pair[0])
    for first in range(0, len(ordered), batch_size):
        part = ordered[first : first + batch_size]
        yield part[0][0], [job for _, job in part]


INDEX_LIMIT = 2**31 - 1  # elements a CUDA kernel indexes with 32 bits


def chunks_per_call(samples: int, channels: int, limit: int = INDEX_LIMIT) -> int:
    """How many chunks of `samples` samples one batch may hold so that no activation reaches `limit` elements:
    the widest activation at the full rate has `channels` channels (the model's `num_filters`), plus up to 64
    samples of padding. CUDA kernels index with 32 bits and refuse bigger tensors (reflect padding raised "input
    tensor must fit into 32-bit index math" for 2,560 chunks of 1 s of 48 kHz on an H200).

    Worked example, the 48 kHz model (32 filters) on 1 s chunks: 32 x (48,000 + 64) = 1,538,048 elements a chunk,
    so at most 2,147,483,647 // 1,538,048 = 1,396 chunks per batch. Never less than 1.
    """
    return max(1, limit // (channels * (samples + 64)))


def cap_batches(groups: Iterable[tuple[Hashable, list]], cap) -> Iterator[tuple[Hashable, list]]:
    """Split each (key, batch) of `groups` into batches of at most `cap(key)` jobs, in order.

    Worked example, cap 2: `(48000, [a, b, c])` -> `(48000, [a, b])`, `(48000, [c])`.
    """
    for key, members in groups:
        size = cap(key)
        for first in range(0, len(members), size):
            yield key, members[first : first + size]


# -- the schedulers ---------------------------------------------------------------------------------------------


def encode_audio(codec, input_values: torch.Tensor, lengths: list[int], num_quantizers: int, options, report):
    """Encode a batch (B, C, T) whose item i holds `lengths[i]` real samples: cut each item into its chunks
    (`plan_chunks`), run `codec.encode_chunks` on batches of them and place the results. Returns codes (K, B, Q, F),
    scales (K, B, 1) or None (models that do not normalise; 1 where a chunk does not exist) and the last frame pad
    length (frames of padding at the end of the longest item's last chunk). `options` is an `InferenceOptions`;
    `report(done, total)` is told of each batch of chunks done.

    Each chunk is cut at its real length, so an item never sees another item's padding. Exact encoding runs each
    chunk alone (`options.encode_batch` is 1): EnCodec's convolutions round differently in a batch (the original
    itself changes a few codes between a clip alone and the same clip in a batch), and a batch item must get
    exactly the codes it gets alone. Fast encoding batches chunks of equal length, or with `pad_chunks` (causal
    models) chunks of similar length, zero-padded to the longest of their batch.
    """
    config = codec.config
    hop, batch, channels = config.hop_length, input_values.shape[0], input_values.shape[1]
    plans = [plan_chunks(n, config.chunk_length, config.chunk_stride) for n in lengths]
    total_chunks = max(len(plan) for plan in plans)
    frames = max(num_frames(size, hop) for plan in plans for _, size in plan)
    codes = input_values.new_zeros((total_chunks, batch, num_quantizers, frames), dtype=torch.long)
    scales = input_values.new_ones((total_chunks, batch, 1)) if config.normalize else None
    jobs = [
        (size, (index, item, start, size))
        for item, plan in enumerate(plans)
        for index, (start, size) in enumerate(plan)
    ]
    pad = options.pad_chunks
    groups = bucket_jobs(jobs, options.encode_batch) if pad else batch_jobs(jobs, options.encode_batch)
    done = 0
    for width, part in cap_batches(groups, lambda width: chunks_per_call(width, config.num_filters)):
        chunks = input_values.new_zeros((len(part), channels, width))  # (N, C, width)
        mask = torch.zeros((len(part), 1, width), dtype=torch.bool, device=input_values.device) if pad else None
        for row, (_, item, start, size) in enumerate(part):
            chunks[row, :, :size] = input_values[item, :, start : start + size]
            if mask is not None:
                mask[row, :, :size] = True

        on_piece = functools.partial(_report_share, report, done, len(part), len(jobs))
        # (N, Q, ceil(width / hop)), (N, 1)
        chunk_codes, chunk_scales = codec.encode_chunks(chunks, num_quantizers, options.fast_encoding, mask, on_piece)
        for row, (index, item, _, size) in enumerate(part):
            real = num_frames(size, hop)
            codes[index, item, :, :real] = chunk_codes[row, :, :real]
            if chunk_scales is not None:
                scales[index, item] = chunk_scales[row]
        done += len(part)
        report(done, len(jobs))
    longest = plans[lengths.index(max(lengths))]
    last_frame_pad_length = frames - num_frames(longest[-1][1], hop) if len(longest) == total_chunks else 0
    return codes, scales, last_frame_pad_length


def _report_share(report, done: int, count: int, total: int, share: float) -> None:
    """Tell `report` of `share` (0 to 1) of a batch of `count` chunks done, after `done` of `total`."""
    report(done + share * count, total)


def decode_plans(config, audio_codes: torch.Tensor, lengths: list[int] | None, last_frame_pad_length: int = 0):
    """Each item's decode plan (the frames of each of its chunks) and final length in samples: from the items' real
    `lengths` (a padding mask's) when known, checked against the codes' shape, else `decode_plan` of the codes."""
    total_chunks, batch, _, frames = audio_codes.shape
    hop = config.hop_length
    if lengths is None:
        plan, length = decode_plan(total_chunks, frames, config.chunk_stride, hop, int(last_frame_pad_length or 0))
        return [plan] * batch, [length] * batch
    plans = []
    for item, length in enumerate(lengths):
        plan = chunk_frames(length, config)
        if len(plan) > total_chunks or max(plan) > frames:
            raise ValueError(
                f"padding_mask gives item {item} {length} samples, which need {len(plan)} chunk(s) of up to "
                f"{max(plan)} frames; audio_codes has {total_chunks} of {frames}. Pass the padding_mask that encode "
                f"was given."
            )
        plans.append(plan)
    return plans, lengths


def decode_audio(codec, audio_codes: torch.Tensor, scales: list, plans: list, lengths: list[int], options, report):
    """Decode codes (K, B, Q, F) by `plans` (from `decode_plans`): chunks with the same number of frames go through
    `codec.decode_chunks` together, each is multiplied by its scale ((B, 1, 1) or None per chunk), and each item's
    chunks are joined by `linear_overlap_add`. Returns (B, C, max(lengths)) audio, 0 past an item's end."""
    config = codec.config
    jobs = [(frames, (index, item)) for item, plan in enumerate(plans) for index, frames in enumerate(plan)]
    groups = cap_batches(
        batch_jobs(jobs, options.decode_batch),
        lambda frames: chunks_per_call(frames * config.hop_length, config.num_filters),
    )
    decoded, done = {}, 0
    for frames, part in groups:
        codes = torch.stack([audio_codes[index, item, :, :frames] for index, item in part])
        audio = codec.decode_chunks(codes, options.fast_decoding)  # (N, C, frames * hop)
        for row, (index, item) in enumerate(part):
            scale = scales[index]
            decoded[index, item] = audio[row] if scale is None else audio[row] * scale[item].float()
        done += len(part)
        report(done, len(jobs))
    audio_values = decoded[0, 0].new_zeros((len(plans), config.audio_channels, max(lengths)))
    for item, plan in enumerate(plans):
        chunks = [decoded[index, item] for index in range(len(plan))]
        audio = linear_overlap_add(chunks, config.chunk_stride) if config.chunk_length is not None else chunks[0]
        audio_values[item, :, : lengths[item]] = audio[:, : lengths[item]]
    return audio_values


__all__ = [
    "encode_audio",
    "decode_plans",
    "decode_audio",
    "stream_cut",
    "decode_plan",
    "chunk_sizes",
    "plan_chunks",
    "num_frames",
    "conv_extra_padding",
    "overlap_add_weights",
    "OverlapAdd",
    "linear_overlap_add",
    "batch_jobs",
    "bucket_jobs",
    "chunks_per_call",
    "chunk_frames",
    "frames_per_chunk",
    "codes_length",
    "cap_batches",
    "INDEX_LIMIT",
]
