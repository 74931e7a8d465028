"""The pure arithmetic of chunking: worked examples from the docstrings, and streaming overlap-add equal to the
whole-clip one bit for bit."""

import pytest
import torch

from encodec_hf.chunking import OverlapAdd, batch_jobs, linear_overlap_add, plan_chunks


def test_overlap_add_worked_example():
    a, b = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20.0, 30.0, 40.0])
    joiner = OverlapAdd(stride=2)
    first, second, rest = joiner.add(a), joiner.add(b), joiner.finish()
    torch.testing.assert_close(first, torch.tensor([1.0, 2.0]))
    torch.testing.assert_close(second, torch.tensor([(0.4 * 3 + 0.2 * 10) / 0.6, (0.2 * 4 + 0.4 * 20) / 0.6]))
    torch.testing.assert_close(rest, torch.tensor([30.0, 40.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("length", [1, 480, 47_700, 100_000, 47_700 + 47_520 * 3])
def test_streaming_overlap_add_equals_whole(length, dtype):
    """Chunks as the 48 kHz model makes them (rounded up to whole 320-sample frames), added one at a time."""
    plan = plan_chunks(length, 48_000, 47_520)
    generator = torch.Generator().manual_seed(length)
    chunks = [torch.randn(2, -(-size // 320) * 320, generator=generator).to(dtype) for _, size in plan]
    whole = linear_overlap_add(chunks, 47_520)
    joiner = OverlapAdd(47_520)
    pieces = [joiner.add(chunk) for chunk in chunks] + [joiner.finish()]
    assert all(piece.dtype == dtype for piece in pieces)
    assert torch.equal(torch.cat(pieces, dim=-1), whole)


def test_batch_jobs_worked_example():
    jobs = [(48000, "a"), (48000, "b"), (4960, "c"), (48000, "d")]
    assert list(batch_jobs(jobs, 2)) == [(48000, ["a", "b"]), (48000, ["d"]), (4960, ["c"])]
    assert [batch for _, batch in batch_jobs(jobs, 1)] == [["a"], ["b"], ["d"], ["c"]]
    with pytest.raises(ValueError, match="at least 1"):
        list(batch_jobs(jobs, 0))


def test_overlap_add_needs_a_chunk():
    with pytest.raises(ValueError, match="at least one chunk"):
        linear_overlap_add([], 2)
    with pytest.raises(ValueError, match="at least one chunk"):
        OverlapAdd(2).finish()
