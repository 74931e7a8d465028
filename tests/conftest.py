"""Shared fixtures. Helpers (tiny models, the reference builders) live in `encodec_hf.testing`, importable from
tests, benchmarks and scripts alike. Nothing here touches the network (HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from encodec_hf.convert_encodec import convert_checkpoint  # noqa: E402
from encodec_hf.testing import import_original_encodec, original_model  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

# Fixtures that build full-size models: a test that uses one is in the slow tier.
FULL_SIZE_FIXTURES = {"converted", "model_24k"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if FULL_SIZE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _torch_threads_as_they_were():
    """A command run in-process with --threads sets torch's thread count for the whole process: put it back, so
    that a later test comparing against a subprocess (which starts with the default) rounds as that one does."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def speech():
    """`speech(rate, channels, seconds)`: real speech (espeak-ng), skipping the test where espeak-ng is missing."""
    import shutil

    from encodec_hf.testing import speech_clip

    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (scripts/setup.sh installs it as root)")
    return speech_clip


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def converted(tmp_path_factory):
    """{name: (original model, Hub folder converted from its checkpoint)} for the 24 and 48 kHz models."""
    if import_original_encodec() is None:
        pytest.skip("EnCodec 0.1.1 is not installed (pip install --no-deps encodec==0.1.1)")
    out = {}
    for name in ("encodec_24khz", "encodec_48khz"):
        root = tmp_path_factory.mktemp(name)
        original = original_model(name)
        torch.save(original.state_dict(), root / f"{name}-random.th")
        convert_checkpoint(root / f"{name}-random.th", name, root / "hf")
        out[name] = (original, root / "hf")
    return out


@pytest.fixture(scope="module")
def tiny_chunked():
    """A tiny chunked model (400 Hz; chunks of 100 frames every 90 frames), shared within a test module."""
    from encodec_hf.testing import tiny_model

    return tiny_model(chunked=True)


@pytest.fixture(scope="module")
def tiny_chunked_extractor(tiny_chunked):
    from encodec_hf import EncodecFeatureExtractor

    return EncodecFeatureExtractor.from_model_config(tiny_chunked.config)
