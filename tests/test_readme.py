"""The README's Python snippet runs as written, on a local folder instead of the Hub, and prints what its
comment says."""

import contextlib
import io
import re
from pathlib import Path

import torch

from encodec_hf.testing import requires_original

README = Path(__file__).resolve().parent.parent / "README.md"


@requires_original()
def test_readme_snippet(converted):
    _, folder = converted["encodec_48khz"]
    text = README.read_text()
    snippet = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    assert 'path = "facebook/encodec_48khz"' in snippet
    snippet = snippet.replace('path = "facebook/encodec_48khz"', f"path = {str(folder)!r}")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), torch.no_grad():
        exec(compile(snippet, "README.md", "exec"), {})
    assert printed.getvalue().strip() == "torch.Size([4, 1, 4, 150]) torch.Size([1, 2, 144000])"
    assert "# (4, 1, 4, 150) codes; (1, 2, 144000) audio" in snippet
