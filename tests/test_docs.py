"""Every Python block of the README and of docs/ runs as written (on local folders converted from EnCodec 0.1.1
with random weights instead of the Hub's), and prints what its comments say."""

import contextlib
import io
import os
import re
from pathlib import Path

import pytest
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)

from encodec_hf.testing import requires_original

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def expected_prints(block: str) -> list[str]:
    """The comment after each top-level `print(...)` line: what that line must print ("..." ends a prefix)."""
    return [
        line.split("  # ", 1)[1].strip() for line in block.splitlines() if line.startswith("print(") and "  # " in line
    ]


def test_every_page_is_collected():
    names = {page.name for page in PAGES}
    assert {
        "README.md",
        "exactness.md",
        "performance.md",
        "ecdc.md",
        "streaming.md",
        "datasets.md",
        "hub.md",
        "development.md",
        "training.md",
        "gpu.md",
        "evaluation.md",
        "export.md",
    } <= names
    assert sum(len(python_blocks(page)) for page in PAGES) >= 10


def test_no_page_points_outside_the_repository():
    for page in PAGES:
        text = page.read_text()
        assert "../shared" not in text and "/work/" not in text, page.name
        for target in re.findall(r"\]\(([^)#]+)\)", text):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), (page.name, target)


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 150


@requires_original()
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run_and_print_what_they_say(page, converted, tmp_path, monkeypatch):
    folders = {name: str(converted[name][1]) for name in ("encodec_24khz", "encodec_48khz")}
    namespace: dict = {}
    monkeypatch.chdir(tmp_path)  # snippets write files (clip.wav, with-lm/, ...)
    for index, block in enumerate(python_blocks(page)):
        code = block
        for name, folder in folders.items():
            code = code.replace(f'"facebook/{name}"', repr(folder))
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, f"{page.name} block {index}", "exec"), namespace)
        lines = printed.getvalue().splitlines()
        expected = expected_prints(block)
        assert len(lines) == len(expected) or not expected, (page.name, index, lines, expected)
        for got, want in zip(lines, expected, strict=False):
            if want.endswith("..."):
                assert got.startswith(want[:-3].rstrip()), (page.name, index, got, want)
            else:
                assert got == want, (page.name, index, got, want)
    torch.set_num_threads(min(2, os.cpu_count() or 1))  # a snippet must not leave the thread count changed


@pytest.fixture(autouse=True)
def _restore_precision_flags():
    """docs/gpu.md's snippet sets the CUDA precision flags; later tests must see the defaults."""
    flags = [
        (torch.backends.cudnn.conv, "fp32_precision"),
        (torch.backends.cudnn.rnn, "fp32_precision"),
        (torch.backends.cuda.matmul, "fp32_precision"),
    ]
    saved = [getattr(owner, name) for owner, name in flags]
    yield
    for (owner, name), value in zip(flags, saved):
        setattr(owner, name, value)


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def test_the_readme_decodes_at_the_bandwidth_it_encodes_and_says_the_default():
    """The README's model(...) line decoded at 1.5 kbps right after a 6 kbps line; the default is now stated."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    quick_start = readme.split("## Quick start")[1].split("```")[1]
    calls = [line for line in quick_start.splitlines() if "model.encode(" in line or "model(" in line]
    assert len(calls) == 2 and all("bandwidth=6.0" in line for line in calls), calls
    assert "Without `bandwidth`, `encode` uses the" in readme and "the command line uses 6" in readme
