"""The browser demo: its backend without a browser (fast), and the page itself in a real browser (Debian's chromium
driven by Playwright): upload, numbers, players, spectrograms, downloads, a blind A/B vote, a bad file's message."""

import csv
import os
import random
import re
import shutil
import socket

import numpy as np
import pytest
import soundfile as sf

from encodec_hf import EncodecLanguageModel
from encodec_hf.demo import MAX_BANDWIDTHS, DemoBackend, build_demo, display_name
from encodec_hf.testing import synthetic_music, tiny_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    audio, rate = synthetic_music(0, seconds=4.0, rate=1_000, channels=1)
    sf.write(folder / "clip.wav", audio.T, rate)
    (folder / "bad.wav").write_text("not audio at all")
    return folder


@pytest.fixture(scope="module")
def models():
    with_lm = tiny_model()
    with_lm.language_model = EncodecLanguageModel.for_model(with_lm.config).eval()
    return {"tiny": with_lm, "tiny-2": tiny_model(seed=2)}


def test_backend_decodes_every_bandwidth_and_keeps_votes(files, models, tmp_path):
    backend = DemoBackend(models, tmp_path / "votes.csv", workdir=tmp_path / "work")
    steps = []
    result = backend.compare(str(files / "clip.wav"), "tiny", lambda fraction, text: steps.append(text))
    assert [row["bandwidth"] for row in result["rows"]] == [0.4, 0.8] and steps[-1] == "done"
    row = result["rows"][0]
    assert row["kbps"] == pytest.approx(8 * row["bytes"] / result["seconds"] / 1000)
    assert row["bytes_lm"] > 0 and {"si_snr", "mel_distance", "pesq", "stoi"} <= set(row)
    assert len(result["files"]) == 4 and all(os.path.getsize(path) > 0 for path in result["files"])  # with/without LM
    assert sf.info(result["players"][0][1]).samplerate == 400 and os.path.exists(result["figure"])
    table = backend.table(result)
    assert "| kbps (nominal) | kbps (.ecdc) | bytes | kbps with LM |" in table and table.count("\n| 0.") == 2
    assert "kbps with LM" not in backend.table(backend.compare(str(files / "clip.wav"), "tiny-2"))
    pair = backend.draw_pair(result, random.Random(0))
    assert len(pair) == 2 and pair[0][0] != pair[1][0]
    assert "Vote saved" in backend.vote(pair, "B", "clip")
    rows = list(csv.reader(open(tmp_path / "votes.csv")))
    assert rows[0] == ["time", "clip", "a", "b", "vote"] and rows[1][2:] == [pair[0][0], pair[1][0], "B"]
    with pytest.raises(ValueError, match="cannot read this file as audio"):
        backend.compare(str(files / "bad.wav"), "tiny")
    with pytest.raises(ValueError, match="upload or record a clip first"):
        backend.compare(None, "tiny")
    with pytest.raises(ValueError, match="choose A, B or no difference"):
        backend.vote(pair, "C", "clip")


def test_long_uploads_are_refused_from_the_header_and_errors_hide_server_paths(files, models, tmp_path):
    """A tiny FLAC can hold minutes of silence: its length is checked before anything is decoded. An unreadable
    upload's message names the file, not the server's folder (Gradio's upload cache)."""
    backend = DemoBackend(models, tmp_path / "votes.csv", workdir=tmp_path / "work", max_seconds=3.0)
    silence = tmp_path / "uploads" / "long.flac"
    silence.parent.mkdir()
    sf.write(silence, np.zeros((400 * 120, 1), dtype=np.float32), 400)  # 2 minutes at 400 Hz
    with pytest.raises(ValueError, match=r"long.flac lasts 120.0 s; this demo takes clips of at most 3 s"):
        backend.compare(str(silence), "tiny")
    with pytest.raises(ValueError, match="cannot read this file as audio") as refused:
        backend.compare(str(files / "bad.wav"), "tiny")
    assert str(files) not in str(refused.value) and "bad.wav" in str(refused.value)


def test_the_work_folder_keeps_the_newest_results_and_is_removed_on_close(files, models, tmp_path, monkeypatch):
    import encodec_hf.demo as demo_module

    monkeypatch.setattr(demo_module, "KEPT_RESULTS", 2)
    backend = DemoBackend(models, tmp_path / "votes.csv")
    for k in range(4):
        sf.write(tmp_path / f"c{k}.wav", (np.random.default_rng(k).standard_normal(800) * 0.2).astype(np.float32), 400)
        result = backend.compare(str(tmp_path / f"c{k}.wav"), "tiny-2")
    assert len([p for p in backend.workdir.iterdir() if p.is_dir()]) == 2
    assert os.path.exists(result["original"])
    assert result["files"] == sorted(result["files"], key=lambda f: float(os.path.basename(f).split("kbps")[0]))
    backend.close()
    assert not backend.workdir.exists()


def test_the_page_shows_a_folder_model_by_its_name(tmp_path):
    assert display_name(str(tmp_path / "models" / "encodec_24khz")) == "encodec_24khz"
    assert display_name("facebook/encodec_24khz") == "facebook/encodec_24khz"


def browser_path():
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium for the demo's page test: scripts/setup.sh installs it (as root)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return path


@pytest.mark.slow  # a Gradio server and a real browser
def test_the_page_in_a_real_browser(files, models, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    executable = browser_path()
    demo = build_demo(models, votes_path=tmp_path / "votes.csv", seed=0)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, show_error=False, quiet=True)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.locator("#input-audio input[type=file]").set_input_files(str(files / "clip.wav"))
            page.wait_for_timeout(1000)  # the upload lands before the click
            page.click("#run")
            numbers = page.locator("#numbers")
            expect(numbers).to_contain_text("x real time", timeout=120_000)
            text = numbers.inner_text()
            assert "4.00 s of audio" in text and "kbps with LM" in text and "si_snr" in text
            visible = [page.locator(f"#decoded-{slot}").is_visible() for slot in range(MAX_BANDWIDTHS)]
            assert visible == [True, True] + [False] * (MAX_BANDWIDTHS - 2)  # one player per bandwidth
            assert page.locator("#original audio").first.get_attribute("src")  # the original has a player too
            expect(page.locator("#spectrograms img")).to_have_count(1)
            downloads = page.locator("#downloads").inner_text()
            assert "0.4kbps" in downloads and "0.8kbps-lm" in downloads

            page.get_by_role("tab", name="Blind A/B").click()
            page.click("#new-pair")
            expect(page.locator("#reveal")).to_contain_text("Listen to A and B", timeout=30_000)
            reference = page.locator("#reference audio").first  # the original, to compare against
            expect(reference).to_have_attribute("src", re.compile(r"original\.wav"), timeout=30_000)
            page.locator("#choice").get_by_label("A", exact=True).check()
            page.click("#vote")
            expect(page.locator("#reveal")).to_contain_text("Vote saved", timeout=30_000)
            votes = list(csv.reader(open(tmp_path / "votes.csv")))
            assert len(votes) == 2 and votes[1][-1] == "A"
            assert votes[1][2] in page.locator("#reveal").inner_text()  # the identities, revealed after the vote

            page.get_by_role("tab", name="Compare").click()
            page.locator("#input-audio button[aria-label='Clear']").first.click()
            page.locator("#input-audio input[type=file]").set_input_files(str(files / "bad.wav"))
            page.wait_for_timeout(1000)
            page.click("#run")
            expect(page.get_by_text("cannot read this file as audio").first).to_be_visible(timeout=30_000)
            assert "Traceback" not in page.locator("body").inner_text()
            browser.close()
    finally:
        demo.close()


def test_the_command_without_gradio_says_how_to_get_it(monkeypatch, capsys):
    import importlib.util

    from encodec_hf.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["demo", "--model", "x"]) == 2
    assert 'pip install "encodec-hf[demo]"' in capsys.readouterr().err
