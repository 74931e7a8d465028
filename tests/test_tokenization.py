"""Dataset tokenization: every audio form datasets gives, exact rows, metadata and decoding, errors, streaming,
num_proc, resumable parts, torchrun with 2 CPU processes, and the command line."""

import io
import os
import socket
import subprocess
import sys

import datasets
import numpy as np
import pytest
import soundfile as sf
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)

from encodec_hf import (
    EncodecFeatureExtractor,
    EncodecModel,
    decode_tokens,
    tokenization,
    tokenization_metadata,
    tokenize_dataset,
)
from encodec_hf.cell_loader import RowReader
from encodec_hf.chunking import chunk_frames
from encodec_hf.cli import main
from encodec_hf.testing import save_tiny_folder, tiny_model
from encodec_hf.tokenization import PAD_TOKEN, tokenize_to_disk

datasets.disable_progress_bars()


@pytest.fixture(scope="module")
def model(tiny_chunked):
    return tiny_chunked


@pytest.fixture(scope="module")
def extractor(tiny_chunked_extractor):
    return tiny_chunked_extractor


@pytest.fixture
def audio_files(tmp_path):
    """Files at several rates and channel counts, as soundfile writes them."""
    rng = np.random.default_rng(0)
    specs = [("a.wav", 400, 2, 900), ("b.flac", 800, 1, 300), ("c.wav", 400, 1, 1), ("d.wav", 22_050, 2, 5000)]
    paths = []
    for name, rate, channels, frames in specs:
        sf.write(tmp_path / name, (rng.standard_normal((frames, channels)) * 0.2).astype(np.float32), rate)
        paths.append(str(tmp_path / name))
    return paths


def undecoded(paths, ids=None):
    ds = datasets.Dataset.from_dict(
        {"audio": paths, "id": ids or [f"r{i}" for i in range(len(paths))], "n": list(range(len(paths)))}
    )
    return ds.cast_column("audio", datasets.Audio(decode=False))


def expected_row(model, extractor, path):
    """What model.encode gives for the row alone."""
    data, rate = sf.read(path, dtype="float32", always_2d=True)
    inputs = extractor(data.T, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        enc = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=0.8)
    scales = [float(s[0]) for s in enc.audio_scales]
    length = inputs["input_values"].shape[-1]
    return padded(enc.audio_codes[:, 0].numpy(), length, model.config), scales, length


def padded(codes, length, config):
    """Codes as rows store them: PAD_TOKEN past each chunk's real frames."""
    codes = codes.copy()
    for index, frames in enumerate(chunk_frames(length, config)):
        codes[index, :, frames:] = PAD_TOKEN
    return codes


def test_rows_are_what_encode_gives_alone(model, extractor, audio_files):
    ds = undecoded(audio_files)
    out = tokenize_dataset(ds, model, extractor, bandwidth=0.8, batch_size=3)
    assert out.column_names == ["audio", "id", "n", "audio_codes", "audio_scales", "audio_length"]
    assert out["n"] == [0, 1, 2, 3] and out["id"] == ds["id"]
    # stored as int16 (datasets' numpy and torch formatters widen nested lists to int64 when reading)
    assert str(out.data.column("audio_codes").type) == "list<item: list<item: list<item: int16>>>"
    for row, path in zip(out, audio_files, strict=True):
        codes, scales, length = expected_row(model, extractor, path)
        np.testing.assert_array_equal(np.array(row["audio_codes"]), codes)
        np.testing.assert_allclose(row["audio_scales"], scales, rtol=1e-6)
        assert row["audio_length"] == length


def test_every_audio_form(model, extractor, audio_files):
    data, rate = sf.read(audio_files[0], dtype="float32", always_2d=True)  # stereo, 400 Hz

    class Decoder:  # stand-in for torchcodec's AudioDecoder (its wheels need a CUDA torch here)
        def get_all_samples(self):
            return type("Samples", (), {"data": torch.from_numpy(data.T.copy()), "sample_rate": rate})()

    buffer = io.BytesIO()
    sf.write(buffer, data, rate, format="WAV")
    forms = {
        "path": undecoded([audio_files[0]]),
        "bytes": datasets.Dataset.from_dict({"audio": [{"bytes": buffer.getvalue(), "path": None}]}).cast_column(
            "audio", datasets.Audio(decode=False)
        ),
        "array dict": datasets.Dataset.from_dict({"audio": [{"array": data.T.tolist(), "sampling_rate": rate}]}),
        "array + rate column": datasets.Dataset.from_dict({"audio": [data.T.tolist()], "rate": [rate]}),
    }
    codes, _, _ = expected_row(model, extractor, audio_files[0])
    for form, ds in forms.items():
        column = {"sampling_rate_column": "rate"} if form == "array + rate column" else {}
        out = tokenize_dataset(ds, model, extractor, bandwidth=0.8, **column)
        np.testing.assert_array_equal(np.array(out[0]["audio_codes"]), codes, err_msg=form)
    # decoded values by their interface, as a map function receives them
    encoder = tokenization._Encoder(model, RowReader(extractor, "audio"), 0.8, "raise")
    result = encoder({"audio": [Decoder()]}, [0])
    np.testing.assert_array_equal(result["audio_codes"][0], codes)


def test_metadata_and_decoding(model, extractor, audio_files):
    out = tokenize_dataset(undecoded(audio_files), model, extractor, bandwidth=0.8)
    meta = tokenization_metadata(out)
    assert (meta["bandwidth"], meta["frame_rate"], meta["num_quantizers"], meta["sampling_rate"]) == (0.8, 100, 2, 400)
    assert meta["skipped_rows"] == []
    for row, path in zip(out, audio_files, strict=True):
        audio = decode_tokens(model, row)
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        inputs = extractor(data.T, sampling_rate=rate, return_tensors="pt")
        with torch.no_grad():
            expected = model(inputs["input_values"], inputs["padding_mask"], bandwidth=0.8).audio_values[0].numpy()
        assert audio.shape == expected.shape == (2, row["audio_length"])
        np.testing.assert_allclose(audio, expected, rtol=1e-5, atol=1e-6)
    batch = decode_tokens(model, out[0:3])
    assert [a.shape[-1] for a in batch] == out["audio_length"][:3]


def test_decoding_generated_codes():
    unchunked = tiny_model()
    generated = np.random.default_rng(0).integers(0, 16, size=(2, 50))  # (num_quantizers, frames), as an LM emits
    audio = decode_tokens(unchunked, generated)
    assert audio.shape == (1, 200)
    assert decode_tokens(unchunked, generated, audio_length=123).shape == (1, 123)
    with pytest.raises(ValueError, match="audio_scales"):
        decode_tokens(tiny_model(chunked=True), generated)


def test_errors_are_reported_with_index_and_id(model, extractor, audio_files, tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF but not really")
    sf.write(tmp_path / "nan.wav", np.full((100, 1), np.nan, dtype=np.float32), 400, subtype="FLOAT")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), dtype=np.float32), 400)
    paths = [
        audio_files[0],
        str(tmp_path / "broken.wav"),
        str(tmp_path / "nan.wav"),
        audio_files[1],
        str(tmp_path / "empty.wav"),
    ]
    ds = undecoded(paths, ids=["ok1", "broken", "nan", "ok2", "empty"])
    with pytest.raises(ValueError, match=r"cannot tokenize row 1 \(id='broken'\)"):
        tokenize_dataset(ds, model, extractor, bandwidth=0.8, id_column="id")
    out = tokenize_dataset(ds, model, extractor, bandwidth=0.8, id_column="id", on_error="skip", batch_size=2)
    assert out["id"] == ["ok1", "ok2"]
    skipped = tokenization_metadata(out)["skipped_rows"]
    assert [s.split(":")[0] for s in skipped] == ["row 1 (id='broken')", "row 2 (id='nan')", "row 4 (id='empty')"]
    assert "NaN" in skipped[1] and "empty" in skipped[2]


def test_num_proc_and_streaming_give_the_same_rows(model, extractor, audio_files):
    ds = undecoded(audio_files * 2)
    one = tokenize_dataset(ds, model, extractor, bandwidth=0.8, batch_size=2)
    two = tokenize_dataset(ds, model, extractor, bandwidth=0.8, batch_size=2, num_proc=2)
    assert one["audio_codes"] == two["audio_codes"] and one["id"] == two["id"]
    streamed = list(tokenize_dataset(ds.to_iterable_dataset(), model, extractor, bandwidth=0.8, batch_size=3))
    assert [r["audio_codes"] for r in streamed] == one["audio_codes"]
    assert [r["audio_length"] for r in streamed] == one["audio_length"]


def test_num_proc_with_a_weight_norm_model_and_the_model_pickles(audio_files):
    """The 24 kHz architecture's convolutions are weight-norm parametrized, which torch refuses to pickle;
    `.map(num_proc=2)` pickles the model for its workers."""
    import pickle

    causal = tiny_model()  # weight norm, causal: the 24 kHz model's layers
    causal.set_inference_defaults(chunk_batch_size=3)
    extractor = EncodecFeatureExtractor.from_model_config(causal.config)
    copy = pickle.loads(pickle.dumps(causal))
    assert type(copy) is type(causal) and copy.inference_defaults == causal.inference_defaults
    for (name, value), (_, copied) in zip(causal.state_dict().items(), copy.state_dict().items(), strict=True):
        assert torch.equal(value, copied), name
    ds = undecoded(audio_files * 2)
    one = tokenize_dataset(ds, causal, extractor, bandwidth=0.8, batch_size=2)
    two = tokenize_dataset(ds, causal, extractor, bandwidth=0.8, batch_size=2, num_proc=2)
    assert one["audio_codes"] == two["audio_codes"] and one["audio_length"] == two["audio_length"]


@pytest.mark.slow
def test_num_proc_with_the_full_size_24khz_model(converted, tmp_path):

    _, folder = converted["encodec_24khz"]
    model = EncodecModel.from_pretrained(folder).eval()
    extractor = EncodecFeatureExtractor.from_model_config(model.config)
    rng = np.random.default_rng(2)
    paths = []
    for k, seconds in enumerate((0.5, 1.3, 0.2, 0.9)):
        sf.write(tmp_path / f"{k}.wav", (rng.standard_normal(int(seconds * 16_000)) * 0.2).astype(np.float32), 16_000)
        paths.append(str(tmp_path / f"{k}.wav"))
    ds = undecoded(paths)
    one = tokenize_dataset(ds, model, extractor, bandwidth=6.0, batch_size=2)
    two = tokenize_dataset(ds, model, extractor, bandwidth=6.0, batch_size=2, num_proc=2)
    assert one["audio_codes"] == two["audio_codes"]


def cut_power_at_part(monkeypatch, part: int) -> None:
    """Make tokenize_to_disk's `part`-th part raise KeyboardInterrupt, as a killed run stops mid-way."""
    real, calls = tokenization.tokenize_dataset, []

    def interrupted(*args, **kwargs):
        calls.append(kwargs["_offset"])
        if len(calls) == part:
            raise KeyboardInterrupt("power cut")
        return real(*args, **kwargs)

    monkeypatch.setattr(tokenization, "tokenize_dataset", interrupted)


def test_resumes_after_an_interruption(model, extractor, audio_files, tmp_path, monkeypatch):
    ds = undecoded(audio_files * 3)  # 12 rows, parts of 2
    reference = tokenize_dataset(ds, model, extractor, bandwidth=0.8)
    real = tokenization.tokenize_dataset
    cut_power_at_part(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2)
    assert sorted(p.name for p in (tmp_path / "out.parts").iterdir() if p.name.startswith("rows-")) == [
        "rows-000000000000-000000000002",
        "rows-000000000002-000000000004",
        "rows-000000000004-000000000006",
    ]
    calls = []
    monkeypatch.setattr(
        tokenization, "tokenize_dataset", lambda *a, **k: (calls.append(k["_offset"]), real(*a, **k))[1]
    )
    tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2)
    assert calls == [6, 8, 10]  # only the missing parts were done
    written = datasets.load_from_disk(str(tmp_path / "out"))
    assert written["audio_codes"] == reference["audio_codes"] and written["n"] == reference["n"]
    assert not (tmp_path / "out.parts").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_two_processes_with_readers_write_the_one_process_dataset(model, extractor, audio_files, tmp_path):
    folder = save_tiny_folder(tmp_path / "model", model)
    undecoded(audio_files * 2 + audio_files[:1]).save_to_disk(str(tmp_path / "input"))  # 9 rows: uneven shards
    single = main(
        [
            "tokenize",
            str(tmp_path / "input"),
            "--model",
            str(folder),
            "--output",
            str(tmp_path / "one"),
            "-b",
            "0.8",
            "--rows-per-part",
            "2",
        ]
    )
    assert single == 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_addr",
            "127.0.0.1",
            "--master_port",
            str(free_port()),
            "-m",
            "encodec_hf",
            "tokenize",
            str(tmp_path / "input"),
            "--model",
            str(folder),
            "--output",
            str(tmp_path / "two"),
            "-b",
            "0.8",
            "--rows-per-part",
            "2",
            "--workers",  # each rank with its own reader process: the rows of one process with none
            "1",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one = datasets.load_from_disk(str(tmp_path / "one"))
    two = datasets.load_from_disk(str(tmp_path / "two"))
    assert len(one) == len(two) == 9
    for column in one.column_names:
        assert one[column] == two[column], column


def test_cli_folder_of_files_and_errors(model, extractor, audio_files, tmp_path, capsys):
    folder = save_tiny_folder(tmp_path / "model", model)
    audio_dir = os.path.dirname(audio_files[0])
    assert main(["tokenize", audio_dir, "--model", str(folder), "--output", str(tmp_path / "out"), "-b", "0.8"]) == 0
    assert "wrote 4 rows" in capsys.readouterr().out
    written = datasets.load_from_disk(str(tmp_path / "out"))
    assert written["file"] == ["a.wav", "b.flac", "c.wav", "d.wav"]
    assert main(["tokenize", "someone/some-dataset", "--model", str(folder), "--output", str(tmp_path / "x")]) == 2
    assert "cannot load dataset 'someone/some-dataset'" in capsys.readouterr().err
    # a folder of files gets the audio column it is asked for
    assert (
        main(
            [
                "tokenize",
                audio_dir,
                "--model",
                str(folder),
                "--output",
                str(tmp_path / "y"),
                "-b",
                "0.8",
                "--audio-column",
                "sound",
            ]
        )
        == 0
    )
    assert "sound" in datasets.load_from_disk(str(tmp_path / "y")).column_names
    capsys.readouterr()
    assert (
        main(
            [
                "tokenize",
                str(tmp_path / "out"),
                "--model",
                str(folder),
                "--output",
                str(tmp_path / "z"),
                "--audio-column",
                "nope",
            ]
        )
        == 2
    )
    assert "has no column 'nope'" in capsys.readouterr().err


def test_fast_encoding_is_an_argument_and_recorded(model, extractor, audio_files):
    ds = undecoded(audio_files[:2])
    fast = tokenize_dataset(ds, model, extractor, 0.8, fast_encoding=True)
    exact = tokenize_dataset(ds, model, extractor, 0.8)
    assert tokenization_metadata(fast)["fast_encoding"] is True
    assert tokenization_metadata(exact)["fast_encoding"] is False
    data, rate = sf.read(audio_files[0], dtype="float32", always_2d=True)
    inputs = extractor(data.T, sampling_rate=rate, return_tensors="pt")
    with torch.no_grad():
        enc = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=0.8, fast_encoding=True)
    expected = padded(enc.audio_codes[:, 0].numpy(), inputs["input_values"].shape[-1], model.config)
    np.testing.assert_array_equal(np.asarray(fast[0]["audio_codes"]), expected)


def test_resume_with_other_settings_is_refused(model, extractor, audio_files, tmp_path, monkeypatch):
    """Parts made with another bandwidth, model or input are never mixed into the output; restart starts over."""
    ds = undecoded(audio_files * 2)  # 8 rows, parts of 2
    real = tokenization.tokenize_dataset
    cut_power_at_part(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2)
    monkeypatch.setattr(tokenization, "tokenize_dataset", real)
    with pytest.raises(ValueError, match="bandwidth: 0.8 then, 0.4 now"):
        tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.4, rows_per_part=2)
    with pytest.raises(ValueError, match="model weights"):
        tokenize_to_disk(ds, tiny_model(seed=9, chunked=True), extractor, tmp_path / "out", 0.8, rows_per_part=2)
    with pytest.raises(ValueError, match="input"):
        tokenize_to_disk(
            undecoded(audio_files * 2 + audio_files[:3]), model, extractor, tmp_path / "out", 0.8, rows_per_part=2
        )
    with pytest.raises(ValueError, match="options"):
        tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2, fast_encoding=True)
    tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.4, rows_per_part=2, restart=True)
    written = datasets.load_from_disk(str(tmp_path / "out"))
    assert tokenization_metadata(written)["bandwidth"] == 0.4 and len(written) == 8
    assert np.asarray(written[0]["audio_codes"]).shape[1] == 1  # one codebook at 0.4 kbps, in every row


def _interrupted_run(monkeypatch, ds, model, extractor, output):
    real = tokenization.tokenize_dataset
    cut_power_at_part(monkeypatch, 2)  # the first part of 2 rows is written
    with pytest.raises(KeyboardInterrupt):
        tokenize_to_disk(ds, model, extractor, output, 0.8, rows_per_part=2)
    monkeypatch.setattr(tokenization, "tokenize_dataset", real)


@pytest.mark.parametrize("change", ["contents", "header rate"])
def test_resume_after_the_audio_files_were_rewritten_is_refused(model, extractor, tmp_path, monkeypatch, change):
    """Files rewritten in place under the same names: the parts made from the old audio are not reused."""
    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for k in range(4):
        sf.write(folder / f"{k}.wav", (rng.standard_normal(500) * 0.2).astype(np.float32), 400)
    ds = tokenization.load_audio_dataset(folder)
    _interrupted_run(monkeypatch, ds, model, extractor, tmp_path / "out")
    data, rate = sf.read(folder / "0.wav", dtype="float32")
    if change == "contents":
        sf.write(folder / "0.wav", -data, rate)  # same size
    else:
        sf.write(folder / "0.wav", data, 800)
    os.utime(folder / "0.wav", ns=(os.stat(folder / "0.wav").st_atime_ns, os.stat(folder / "0.wav").st_mtime_ns + 1))
    with pytest.raises(ValueError, match=r"input files \(paths, sizes, times\)"):
        tokenize_to_disk(tokenization.load_audio_dataset(folder), model, extractor, tmp_path / "out", 0.8, 2)


def test_resume_from_a_copied_model_folder_or_a_relative_input_path(model, extractor, tmp_path, monkeypatch):
    """Nothing that changes the rows changed: the resume goes on, whatever the model folder or the input path is
    called. A real difference is named by its field alone, not the whole config."""
    import shutil

    folder = tmp_path / "clips"
    folder.mkdir()
    rng = np.random.default_rng(6)
    for k in range(4):
        sf.write(folder / f"{k}.wav", (rng.standard_normal(500) * 0.2).astype(np.float32), 400)
    first = save_tiny_folder(tmp_path / "model", model)
    shutil.copytree(first, tmp_path / "copied")
    monkeypatch.chdir(tmp_path)
    loaded = EncodecModel.from_pretrained(first).eval()
    _interrupted_run(monkeypatch, tokenization.load_audio_dataset(folder), loaded, extractor, tmp_path / "out")
    copied = EncodecModel.from_pretrained("copied").eval()
    out = tokenize_to_disk(tokenization.load_audio_dataset("clips"), copied, extractor, tmp_path / "out", 0.8, 2)
    assert len(datasets.load_from_disk(str(out))) == 4
    _interrupted_run(monkeypatch, tokenization.load_audio_dataset(folder), loaded, extractor, tmp_path / "again")
    other = tiny_model(chunked=True, overlap=0.2)
    other.load_state_dict(model.state_dict())
    with pytest.raises(ValueError, match="made with other settings") as refused:
        tokenize_to_disk(tokenization.load_audio_dataset(folder), other, extractor, tmp_path / "again", 0.8, 2)
    message = str(refused.value)
    assert "model config.overlap: 0.1 then, 0.2 now" in message and len(message) < 600, message


def test_two_runs_writing_the_same_part_both_finish(model, extractor, audio_files, tmp_path, monkeypatch):
    """Two tokenize runs with the same settings on one output: the one that finishes a part second keeps the
    first one's part (the same rows) instead of failing on 'Directory not empty'."""
    ds = undecoded(audio_files * 2)
    real, parts = tokenization.tokenize_dataset, tmp_path / "out.parts"

    def raced(dataset, *args, _offset=0, **kwargs):
        part = real(dataset, *args, _offset=_offset, **kwargs)
        if _offset == 2:  # the other run renames its copy of rows 2-4 into place first
            part.save_to_disk(str(parts / f"rows-{2:012d}-{4:012d}"))
        return part

    monkeypatch.setattr(tokenization, "tokenize_dataset", raced)
    tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2)
    monkeypatch.setattr(tokenization, "tokenize_dataset", real)
    expected = tokenize_dataset(ds, model, extractor, 0.8)
    assert datasets.load_from_disk(str(tmp_path / "out"))["audio_codes"] == expected["audio_codes"]


def test_plain_arrays_with_a_rate_column_from_the_command_line(tmp_path, capsys):
    """Arrays with their rate in a column: `sampling_rate` is used by itself, another name with
    --sampling-rate-column; `train --data` reads the same dataset (it skipped every row before)."""
    from encodec_hf.training.trainer import SegmentSampler

    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(n) * 0.2).astype(np.float32) for n in (800, 300, 1600)]
    folder = save_tiny_folder(tmp_path / "model", tiny_model())
    for column in ("sampling_rate", "rate"):
        data = datasets.Dataset.from_dict({"audio": clips, column: [800, 400, 1600]})
        data.save_to_disk(str(tmp_path / column))
        extra = [] if column == "sampling_rate" else ["--sampling-rate-column", column]
        args = ["tokenize", str(tmp_path / column), "--model", str(folder), "-b", "0.4"]
        assert main([*args, "--output", str(tmp_path / f"out-{column}"), *extra]) == 0, capsys.readouterr().err
        assert "h of audio" in capsys.readouterr().err  # the bar counts audio, not rows alone
        written = datasets.load_from_disk(str(tmp_path / f"out-{column}"))
        assert written["audio_length"] == [400, 300, 400]  # each clip at the model's 400 Hz
        sampler = SegmentSampler(data, 400, 1, 100, 0, "audio", None if column == "sampling_rate" else column)
        assert all(sampler.clip(row) is not None for row in range(3)) and not sampler.skipped
    model = EncodecModel.from_pretrained(folder)
    extractor = EncodecFeatureExtractor.from_model_config(model.config)
    by_library = tokenize_dataset(data, model, extractor, 0.4, sampling_rate_column="rate")
    assert by_library["audio_codes"] == written["audio_codes"]
    assert main([*args[:-4], "--output", str(tmp_path / "none"), "--model", str(folder), "-b", "0.4"]) == 2
    with pytest.raises(ValueError, match="dataset has no column 'rates'"):
        tokenize_dataset(data, model, extractor, 0.4, sampling_rate_column="rates")


def test_every_row_skipped_gives_an_empty_dataset_not_a_crash(tmp_path, capsys):
    folder = save_tiny_folder(tmp_path / "model", tiny_model())
    bad = datasets.Dataset.from_dict({"audio": [[float("nan")] * 100] * 3, "sampling_rate": [400] * 3})
    bad.save_to_disk(str(tmp_path / "bad"))
    args = ["tokenize", str(tmp_path / "bad"), "--model", str(folder), "-b", "0.4", "--output", str(tmp_path / "out")]
    assert main([*args, "--on-error", "skip", "--rows-per-part", "2"]) == 0, capsys.readouterr().err
    assert "wrote 0 rows" in capsys.readouterr().out
    written = datasets.load_from_disk(str(tmp_path / "out"))
    assert len(written) == 0 and len(tokenization_metadata(written)["skipped_rows"]) == 3
    assert not (tmp_path / "out.parts").exists()


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def test_rate_less_arrays_are_refused_by_tokenize_dataset(tiny_chunked, tiny_chunked_extractor):
    dataset = datasets.Dataset.from_dict({"audio": [np.zeros(300, dtype=np.float32)]})
    with pytest.raises(ValueError, match="plain array with no rate: name the column that holds it"):
        tokenize_dataset(dataset, tiny_chunked, tiny_chunked_extractor, 0.8)


# -- reading in worker processes (num_workers, --workers) --------------------------------------------------------


def test_workers_give_the_rows_the_main_process_gives(model, extractor, audio_files, tmp_path):
    """Rows, their order, their codes and the skipped rows are the same with 0 and 2 reading processes; the
    metadata says how busy the model was and how fast the run went."""
    (tmp_path / "broken.wav").write_bytes(b"RIFF but not really")
    paths = [*audio_files, str(tmp_path / "broken.wav"), *audio_files[::-1]]
    ds = undecoded(paths, ids=[f"r{i}" for i in range(len(paths))])
    runs = [
        tokenize_dataset(ds, model, extractor, 0.8, batch_size=3, id_column="id", on_error="skip", num_workers=n)
        for n in (0, 2)
    ]
    assert runs[0].column_names == runs[1].column_names
    assert runs[0].features == runs[1].features
    assert runs[0].to_dict() == runs[1].to_dict()
    assert len(runs[0]) == len(paths) - 1
    metadata = [tokenization_metadata(run) for run in runs]
    assert metadata[0]["skipped_rows"] == metadata[1]["skipped_rows"]
    assert metadata[0]["skipped_rows"][0].startswith("row 4 (id='r4'): cannot read audio from")
    for values in metadata:
        assert 0 < values["model_busy"] <= 1 and values["audio_hours_per_second"] > 0
        assert values["encode_seconds"] <= values["wall_seconds"]
        assert values["audio_seconds"] == pytest.approx(sum(runs[0]["audio_length"]) / model.config.sampling_rate)
    dropped = tokenize_dataset(ds.select(range(3)), model, extractor, 0.8, remove_audio_column=True, num_workers=1)
    assert dropped.column_names == ["id", "n", "audio_codes", "audio_scales", "audio_length"]


def test_a_worker_error_names_the_row_and_its_file_and_leaves_no_worker(model, extractor, audio_files, tmp_path):
    import gc
    import multiprocessing

    (tmp_path / "broken.wav").write_bytes(b"RIFF but not really")
    ds = undecoded([audio_files[0], str(tmp_path / "broken.wav"), audio_files[1]], ids=["ok", "bad", "ok2"])
    broken = str(tmp_path / "broken.wav")
    with pytest.raises(ValueError, match=rf"cannot tokenize row 1 \(id='bad'\): cannot read audio from '{broken}'"):
        tokenize_dataset(ds, model, extractor, 0.8, batch_size=1, id_column="id", num_workers=2)
    gc.collect()
    assert multiprocessing.active_children() == []
    with pytest.raises(ValueError, match=rf"cannot tokenize row 1 \(id='bad'\): cannot read audio from '{broken}'"):
        list(tokenize_dataset(ds.to_iterable_dataset(), model, extractor, 0.8, id_column="id", num_workers=2))
    gc.collect()
    assert multiprocessing.active_children() == []
    with pytest.raises(ValueError, match=r"num_workers \(--workers\) must be a whole number of at least 0, got -1"):
        tokenize_dataset(ds, model, extractor, 0.8, num_workers=-1)
    with pytest.raises(ValueError, match="not both"):
        tokenize_dataset(ds, model, extractor, 0.8, num_workers=2, num_proc=2)


def test_workers_resume_what_the_main_process_started(model, extractor, audio_files, tmp_path, monkeypatch):
    """The worker count is not part of the resume fingerprint: parts written with 0 workers are kept by a rerun
    with 2, and the rows equal a run without parts."""
    ds = undecoded(audio_files * 2)  # 8 rows, parts of 2
    reference = tokenize_dataset(ds, model, extractor, bandwidth=0.8)
    cut_power_at_part(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2, num_workers=0)
    monkeypatch.undo()
    tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2, num_workers=2)
    written = datasets.load_from_disk(str(tmp_path / "out"))
    assert written["audio_codes"] == reference["audio_codes"] and written["n"] == reference["n"]
    metadata = tokenization_metadata(written)
    assert 0 < metadata["model_busy"] <= 1 and metadata["audio_hours_per_second"] > 0


def test_cli_workers_write_the_rows_of_no_workers(audio_files, tmp_path, capsys):
    folder = save_tiny_folder(tmp_path / "model")
    (tmp_path / "audio").mkdir()
    for path in audio_files:
        os.link(path, tmp_path / "audio" / os.path.basename(path))
    written = []
    for workers in ("0", "2"):
        out = tmp_path / f"out{workers}"
        command = ["tokenize", str(tmp_path / "audio"), "--model", str(folder), "--output", str(out), "-b", "0.8"]
        assert main([*command, "--workers", workers, "--batch-size", "2"]) == 0
        written.append(datasets.load_from_disk(str(out)))
    assert written[0].to_dict() == written[1].to_dict()
    assert main([*command[:-2], "-b", "0.8", "--workers", "-1", "-f"]) == 2
    assert "num_workers (--workers) must be a whole number of at least 0, got -1" in capsys.readouterr().err


def test_a_part_that_cannot_be_written_stops_the_run_and_the_rerun_resumes(
    model, extractor, audio_files, tmp_path, monkeypatch
):
    """Parts are written by a background thread while the next one encodes: a write that fails stops the run
    with its error, the parts written before stay, and a rerun writes the rest; progress is told of every part."""
    ds = undecoded(audio_files * 2)  # 8 rows, parts of 2
    reference = tokenize_dataset(ds, model, extractor, bandwidth=0.8)
    real = tokenization._write_part

    def full_disk(part, parts_dir, name):
        if name.startswith("rows-000000000004"):
            raise OSError(28, "No space left on device")
        return real(part, parts_dir, name)

    monkeypatch.setattr(tokenization, "_write_part", full_disk)
    with pytest.raises(OSError, match="No space left on device"):
        tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2)
    written = sorted(p.name for p in (tmp_path / "out.parts").iterdir() if p.name.startswith("rows-"))
    assert written == ["rows-000000000000-000000000002", "rows-000000000002-000000000004"]
    monkeypatch.undo()
    told = []
    tokenize_to_disk(ds, model, extractor, tmp_path / "out", 0.8, rows_per_part=2, progress=lambda *a: told.append(a))
    assert [rows for rows, _, _ in told] == [2, 2]  # the two missing parts
    assert all(seconds > 0 and 0 < busy <= 1 for _, seconds, busy in told)
    result = datasets.load_from_disk(str(tmp_path / "out"))
    assert result["audio_codes"] == reference["audio_codes"] and result["n"] == reference["n"]


def test_streaming_with_workers_gives_the_rows_in_order_and_stops_its_readers(model, extractor, audio_files, tmp_path):
    """A streaming dataset is iterated here and its cells read by a pool: the rows, in order, equal those read
    here (the broken row logged and left out), and a consumer that stops early leaves no reader behind."""
    import gc
    import multiprocessing

    (tmp_path / "broken.wav").write_bytes(b"RIFF but not really")
    paths = [*audio_files, str(tmp_path / "broken.wav"), *audio_files[::-1], *audio_files]
    stream = undecoded(paths).to_iterable_dataset(num_shards=3)
    here = list(tokenize_dataset(stream, model, extractor, 0.8, batch_size=3, on_error="skip"))
    pooled = tokenize_dataset(stream, model, extractor, 0.8, batch_size=3, on_error="skip", num_workers=2)
    assert tokenization_metadata(pooled)["skipped_rows"] == "logged"
    rows = list(pooled)
    assert [row["n"] for row in rows] == [n for n in range(len(paths)) if n != 4]
    assert rows == here
    dropped = tokenize_dataset(stream, model, extractor, 0.8, remove_audio_column=True, on_error="skip", num_workers=1)
    first = next(iter(dropped))
    assert "audio" not in first and first["n"] == 0 and first["audio_codes"] == here[0]["audio_codes"]
    strict = tokenize_dataset(stream, model, extractor, 0.8, batch_size=3, num_workers=2)
    with pytest.raises(ValueError, match=r"cannot tokenize row 4: cannot read audio from .*broken.wav"):
        list(strict)
    gc.collect()
    assert multiprocessing.active_children() == []


def test_speed_figures_worked_example():
    from encodec_hf.tokenization import _speed

    speed = _speed(encode_seconds=60.0, wall_seconds=100.0, audio_seconds=7200.0)  # 2 h of audio in 100 s
    assert speed["model_busy"] == 0.6 and speed["audio_hours_per_second"] == pytest.approx(0.02)


def test_pad_rows_worked_example():
    """The docstring's example: readable rows zero-padded to the longest, the unreadable one only in messages."""
    from encodec_hf.cell_loader import pad_rows

    read = [(np.full((1, 3), 0.5, np.float32), ""), (np.ones((1, 5), np.float32), ""), (None, "row 2: bad")]
    batch = pad_rows(read, channels=1)
    assert batch.values.shape == (2, 1, 5) and batch.values.dtype == torch.float32
    assert batch.values[0, 0].tolist() == [0.5, 0.5, 0.5, 0.0, 0.0] and batch.values[1, 0].tolist() == [1.0] * 5
    assert batch.padding_mask.tolist() == [[True, True, True, False, False], [True] * 5]
    assert batch.lengths == [3, 5] and batch.messages == ["", "", "row 2: bad"]
    nothing = pad_rows([(None, "row 0: bad")], channels=2)
    assert nothing.values.shape == (0, 2, 0) and nothing.lengths == [] and nothing.messages == ["row 0: bad"]
