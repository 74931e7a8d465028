"""The command line end to end: real files in, real files out, one-line errors."""

import os
import subprocess
import sys

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)

from encodec_hf import (
    EncodecModel,
)
from encodec_hf.cli import main
from encodec_hf.testing import original_model, requires_original, save_tiny_folder, tiny_model


def run(*args, env=None):
    environment = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "encodec_hf", *map(str, args)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_folder(tmp_path_factory.mktemp("tiny") / "model")


@requires_original()
@pytest.mark.slow
def test_convert_then_roundtrip_48khz(tmp_path):
    torch.save(original_model("encodec_48khz").state_dict(), tmp_path / "encodec_48khz-random.th")
    result = run(
        "convert", tmp_path / "encodec_48khz-random.th", "--model", "encodec_48khz", "--output", tmp_path / "m"
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    # mono 44.1 kHz int16 in: resampled to 48 kHz and duplicated to stereo by the processor
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(44_100 * 2) / 44_100) * 32767).astype(np.int16)
    sf.write(tmp_path / "in.wav", tone, 44_100, subtype="PCM_16")
    result = run("roundtrip", tmp_path / "in.wav", tmp_path / "out.wav", "--model", tmp_path / "m", "-b", "12")
    assert result.returncode == 0, result.stderr
    assert "8 codebooks, 12 kbps" in result.stdout and "x real time" in result.stdout
    info = sf.info(tmp_path / "out.wav")
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (48_000, 2, 96_000, "PCM_16")
    audio, _ = sf.read(tmp_path / "out.wav")
    assert np.abs(audio).max() <= 0.99 + 1e-4 and np.abs(audio).max() > 0


def test_roundtrip_matches_the_library(tmp_path, tiny_folder):
    """The command writes what encode + decode give, as 16-bit PCM."""

    rng = np.random.default_rng(0)
    clip = (rng.standard_normal((2, 1234)) * 0.1).astype(np.float32)
    sf.write(tmp_path / "in.wav", clip.T, 400, subtype="FLOAT")
    result = run("roundtrip", tmp_path / "in.wav", tmp_path / "out.wav", "--model", tiny_folder, "-b", "0.8")
    assert result.returncode == 0, result.stderr
    written, rate = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    model = EncodecModel.from_pretrained(tiny_folder).eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(clip)[None], bandwidth=0.8).audio_values[0].numpy()
    assert rate == 400 and written.shape == (1234, 2)
    np.testing.assert_allclose(written.T, np.clip(expected, -0.99, 0.99), atol=1 / 32768 + 1e-6)


@pytest.mark.slow
def test_progress_bar_on_long_files(tmp_path, tiny_folder):
    sf.write(tmp_path / "long.wav", np.zeros((400 * 40, 2), dtype=np.float32), 400)
    result = run("roundtrip", tmp_path / "long.wav", tmp_path / "out.wav", "--model", tiny_folder)
    assert result.returncode == 0, result.stderr
    assert "encode" in result.stderr and "decode" in result.stderr and "%" in result.stderr  # tqdm's bar
    short = run("roundtrip", tmp_path / "long.wav", tmp_path / "out2.wav", "--model", tiny_folder)
    assert short.returncode == 0


def test_errors_are_one_line(tmp_path, tiny_folder, capsys):
    """In-process through main() (a subprocess each would cost seconds of imports); stderr is the same."""
    from encodec_hf.cli import main

    sf.write(tmp_path / "in.wav", np.zeros(100, dtype=np.float32), 400)
    cases = [
        (
            ("roundtrip", tmp_path / "in.wav", tmp_path / "o.wav"),  # default model, offline, not cached
            "Hugging Face Hub cannot be reached",
        ),
        (("roundtrip", tmp_path / "missing.wav", tmp_path / "o.wav", "--model", tiny_folder), "cannot read audio"),
        (("roundtrip", tmp_path / "in.wav", tmp_path / "in.wav", "--model", tiny_folder), "pass -f"),
        (
            ("roundtrip", tmp_path / "in.wav", tmp_path / "o.wav", "--model", tiny_folder, "-b", "3"),
            "not one of this model's bandwidths: 0.4, 0.8",
        ),
        (("roundtrip", tmp_path / "in.wav", tmp_path / "o.wav", "--model", tmp_path), "not an EnCodec model folder"),
        (("convert", tmp_path / "in.wav", "--model", "encodec_24khz", "--output", tmp_path / "x"), "cannot read"),
    ]
    for args, message in cases:
        code = main([str(a) for a in args])
        stderr = capsys.readouterr().err
        assert code == 2, (args, stderr)
        assert message in stderr, (args, stderr)
        assert stderr.strip().startswith("encodec-hf: error:") and stderr.strip().count("\n") == 0, stderr


def test_help_lists_commands():
    result = run("--help")
    assert result.returncode == 0 and "roundtrip" in result.stdout and "convert" in result.stdout


def run_on_a_full_disk(*args, limit: int):
    """The command with writes past `limit` bytes a file failing, as on a full disk (RLIMIT_FSIZE; the signal it
    raises is ignored, so the write fails with EFBIG instead of killing the process)."""
    import resource
    import signal

    def limit_writes():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "encodec_hf", *map(str, args)],
        capture_output=True,
        text=True,
        env=dict(os.environ, HF_HUB_OFFLINE="1"),
        timeout=300,
        preexec_fn=limit_writes,
    )


@pytest.mark.slow
def test_outputs_are_written_whole_or_not_at_all(tmp_path, tiny_folder):
    """compress -f over a good .ecdc on a full disk keeps the good one; a failed compress or roundtrip leaves no
    truncated or empty file (so the next run does not say the output exists), and no temporary file."""
    rng = np.random.default_rng(3)
    sf.write(tmp_path / "in.wav", (rng.standard_normal((400 * 40, 2)) * 0.1).astype(np.float32), 400)
    model = ["--model", str(tiny_folder), "-b", "0.8"]
    assert main(["compress", str(tmp_path / "in.wav"), str(tmp_path / "good.ecdc"), *model]) == 0
    good = (tmp_path / "good.ecdc").read_bytes()
    assert len(good) > 2000
    for command, target, extra in (("compress", "good.ecdc", ["-f"]), ("roundtrip", "new.wav", [])):
        failed = run_on_a_full_disk(command, tmp_path / "in.wav", tmp_path / target, *model, *extra, limit=1000)
        assert failed.returncode == 2 and "encodec-hf: error:" in failed.stderr, failed.stderr
    assert (tmp_path / "good.ecdc").read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.ecdc", "in.wav"]


def test_convert_random_makes_a_model_to_try_without_the_hub(tmp_path, capsys):
    assert main(["convert", "--random", "tiny", "--output", str(tmp_path / "tiny"), "--with-lm"]) == 0
    assert "random weights" in capsys.readouterr().out
    sf.write(tmp_path / "in.wav", (np.random.default_rng(0).standard_normal(8000) * 0.1).astype(np.float32), 16000)
    args = ["compress", str(tmp_path / "in.wav"), str(tmp_path / "out.ecdc"), "--model", str(tmp_path / "tiny")]
    assert main([*args, "--lm"]) == 0
    assert main(["convert", "--output", str(tmp_path / "x")]) == 2
    assert "--random PRESET" in capsys.readouterr().err


def test_an_unreachable_hub_fails_at_once_in_one_line(tmp_path):
    """Without HF_HUB_OFFLINE and without a network, huggingface_hub retried for half a minute, ten lines of it;
    the probe goes to the cache at once (the endpoint here refuses connections on this machine)."""
    sf.write(tmp_path / "in.wav", np.zeros(800, dtype=np.float32), 16000)
    environment = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    result = subprocess.run(
        [sys.executable, "-m", "encodec_hf", "compress", tmp_path / "in.wav", tmp_path / "o.ecdc", "--model", "a/b"],
        capture_output=True,
        text=True,
        env=dict(environment, HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf")),
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "encodec-hf: error: cannot load 'a/b': the Hugging Face Hub cannot be reached and it is not in the local "
        "cache; pass a local folder with --model DIR (encodec-hf convert CHECKPOINT --model NAME --output DIR, or "
        "--random PRESET, makes one)"
    ]


def test_a_missing_input_file_says_so(tmp_path, capsys):
    assert main(["compress", str(tmp_path / "none.wav"), str(tmp_path / "o.ecdc"), "--model", "a/b"]) == 2
    assert f"cannot read audio from {str(tmp_path / 'none.wav')!r}: no such file" in capsys.readouterr().err


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def cli(*args):
    from encodec_hf.cli import main

    return main([str(a) for a in args])


def compress_tiny(model):
    from encodec_hf import compress

    return compress(model, np.zeros(300, dtype=np.float32), 400, bandwidth=0.8)


def test_decompress_takes_the_model_the_file_names(tmp_path, capsys, monkeypatch):
    """Without --model, decompress asks for facebook/<the file's model> (offline here: the one-line Hub error names
    it), not the default 48 kHz model."""
    model = tiny_model()
    data = bytearray(compress_tiny(model))
    data = data.replace(b'"encodec_400hz"', b'"encodec_24khz"')  # a 24 kHz file's header (same length)
    (tmp_path / "a.ecdc").write_bytes(bytes(data))
    assert cli("decompress", tmp_path / "a.ecdc", tmp_path / "a.wav") == 2
    assert "'facebook/encodec_24khz'" in capsys.readouterr().err


def test_a_missing_local_model_fails_at_once(tmp_path, capsys, monkeypatch):
    import soundfile as sf

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    sf.write(tmp_path / "in.wav", np.zeros(100, dtype=np.float32), 400)
    assert cli("roundtrip", "in.wav", "out.wav", "--model", "models/nonexistent") == 2
    assert "does not exist (a local path" in capsys.readouterr().err


def test_help_is_light_and_threads_is_on_every_command_that_computes():
    """--help took 6 s (heavy imports first); every computing command lacked --threads."""
    import subprocess
    import sys

    probe = (
        "import sys, runpy; sys.argv = ['encodec-hf', '--help']\n"
        "try: runpy.run_module('encodec_hf', run_name='__main__')\n"
        "except SystemExit: pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in done.stdout and "tokenize" in done.stdout
    from encodec_hf.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    for name in ("roundtrip", "compress", "decompress", "tokenize", "train"):
        assert "--threads" in commands[name].format_help(), name


def test_tokenize_needs_force_keeps_or_drops_audio_and_speaks_in_options(tmp_path, capsys):
    import soundfile as sf

    folder = save_tiny_folder(tmp_path / "model")
    (tmp_path / "audio").mkdir()
    sf.write(tmp_path / "audio" / "a.wav", np.zeros((300, 2), dtype=np.float32) + 0.1, 400)
    (tmp_path / "audio" / "b.wav").write_bytes(b"not audio")
    command = ("tokenize", tmp_path / "audio", "--model", folder, "--output", tmp_path / "out", "-b", "0.8")
    assert cli(*command) == 2
    assert "--on-error skip" in capsys.readouterr().err  # the option's command-line name
    assert cli(*command, "--on-error", "skip", "--drop-audio", "--threads", "1") == 0
    assert "audio" not in datasets.load_from_disk(str(tmp_path / "out")).column_names
    assert cli(*command, "--on-error", "skip") == 2
    assert "pass -f" in capsys.readouterr().err
    assert cli(*command, "--on-error", "skip", "-f") == 0
    assert "audio" in datasets.load_from_disk(str(tmp_path / "out")).column_names


def test_hostile_inputs_end_in_one_line(tmp_path, capsys):
    """A FIFO as input (reading it would block), a damaged weights file, metadata nested 30,000 deep: exit 2, one
    line, no traceback."""
    import os
    import struct

    import soundfile as sf

    folder = save_tiny_folder(tmp_path / "model")
    sf.write(tmp_path / "in.wav", np.zeros(100, dtype=np.float32), 400)
    os.mkfifo(tmp_path / "fifo.wav")
    broken = save_tiny_folder(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    nested = b"[" * 30_000 + b"]" * 30_000
    (tmp_path / "nested.ecdc").write_bytes(b"ECDC\x00" + struct.pack("!I", len(nested)) + nested)
    cases = [
        (("roundtrip", tmp_path / "fifo.wav", tmp_path / "o.wav", "--model", folder), "not a regular file"),
        (("decompress", tmp_path / "fifo.wav", tmp_path / "o.wav", "--model", folder), "not a regular file"),
        (("roundtrip", tmp_path / "in.wav", tmp_path / "o.wav", "--model", broken), ""),
        (("decompress", tmp_path / "nested.ecdc", tmp_path / "o.wav", "--model", folder), "nested too deeply"),
    ]
    capsys.readouterr()  # the set-up's own output
    for args, message in cases:
        assert cli(*args) == 2, args
        stderr = capsys.readouterr().err.strip()
        assert stderr.startswith("encodec-hf: error:") and "\n" not in stderr, stderr
        assert message in stderr, (args, stderr)
