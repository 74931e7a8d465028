"""Training parts under torch.distributed (2 CPU processes, gloo): every rank sees different audio and draws
different random numbers, yet the codebook buffers and the balancer's averaged norms stay identical."""

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

pytestmark = pytest.mark.slow


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    from encodec_hf import EncodecModel
    from encodec_hf.testing import tiny_config
    from encodec_hf.training import Balancer, l1_loss

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(100 + rank)  # different k-means starts and replacement draws on each rank
        quantizer = EncodecModel(tiny_config(kmeans_iters=5)).quantizer.train()
        quantizer.reset_codebooks()
        balancer = Balancer({"l1": 1.0, "l2": 2.0}, monitor=True)
        ratios = []
        for step in range(4):
            embeddings = torch.randn(2, 8, 9) * (1 + rank)  # different data on each rank
            quantizer(embeddings, 2 if step % 2 == 0 else 1)
            decoded = (torch.randn(2, 1, 50) * (1 + rank)).requires_grad_()
            target = torch.zeros(2, 1, 50)
            balancer.backward({"l1": l1_loss(decoded, target), "l2": (decoded - target).pow(2).mean()}, decoded)
            ratios.append(balancer.metrics["ratio_l1"])
        torch.save({"buffers": dict(quantizer.named_buffers()), "ratios": ratios}, f"{out_dir}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_codebooks_and_balancer_stay_in_sync_across_two_processes(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    first, second = (torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1))
    assert first["buffers"].keys() == second["buffers"].keys()
    for name, value in first["buffers"].items():
        assert torch.equal(value, second["buffers"][name]), name
    assert all(v.item() == 1 for k, v in first["buffers"].items() if k.endswith("inited"))
    assert first["ratios"] == second["ratios"]
    # the ranks' data differ by a factor 2, so without the averaging their norms (hence ratios) would differ
    assert 0 < first["ratios"][0] < 1
