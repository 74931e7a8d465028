"""Hub folders: remote code that loads without encodec_hf, model cards, and the push through a fake Hub.

No Hub is reachable from these machines: the push runs through huggingface_hub with its HTTP client replaced by
an httpx MockTransport that plays the Hub's endpoints and records every request.
"""

import base64
import json
import re

import httpx2
import numpy as np
import pytest
import torch
import transformers
from huggingface_hub import metadata_load
from huggingface_hub.utils import _http

from encodec_hf import (
    EncodecConfig,
    EncodecFeatureExtractor,
    EncodecModel,
)
from encodec_hf.cli import main
from encodec_hf.hub_upload import BUILD_MARKER, FOLDER_FILES, HubUploadError, build_folder, load_source, upload
from encodec_hf.testing import original_layout, run_without_encodec_hf, save_tiny_folder, tiny_model


@pytest.fixture(scope="module")
def source_folder(tmp_path_factory):
    return save_tiny_folder(tmp_path_factory.mktemp("source") / "model")


@pytest.fixture(scope="module")
def built(source_folder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("built") / "me--tiny"
    upload(source_folder, "me/tiny", local_dir=folder, dry_run=True, report=lambda line: None)
    return folder


def test_folder_contents(built):
    assert sorted(p.name for p in built.iterdir() if p.name != BUILD_MARKER) == sorted(FOLDER_FILES)
    config = json.loads((built / "config.json").read_text())
    assert config["auto_map"] == {
        "AutoConfig": "configuration_encodec.EncodecConfig",
        "AutoModel": "modeling_encodec.EncodecModel",
    }
    pre = json.loads((built / "preprocessor_config.json").read_text())
    assert pre["auto_map"]["AutoProcessor"] == "processing.EncodecFeatureExtractor"
    assert not list(built.glob("*.bin")) and not list(built.glob("*.pt"))  # no pickled weights


def test_remote_code_loads_without_encodec_hf(built, tmp_path):
    """Only transformers in the process: the Auto classes load the folder and give exactly our codes and audio."""
    rng = np.random.default_rng(0)
    clips = [rng.standard_normal(1500).astype(np.float32) * 0.2, rng.standard_normal((2, 900)).astype(np.float32) * 0.2]
    np.save(tmp_path / "a.npy", clips[0])
    np.save(tmp_path / "b.npy", clips[1])
    run_without_encodec_hf(
        f"""
        import numpy as np, torch
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor
        folder = {str(built)!r}
        model = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
        remote = "transformers_modules"
        extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        assert type(extractor).__name__ == "EncodecFeatureExtractor"
        assert type(AutoConfig.from_pretrained(folder, trust_remote_code=True)).__module__.startswith(remote)
        assert type(model).__module__.startswith(remote) and type(processor).__module__.startswith(remote)
        assert not [m for m in sys.modules if m.startswith("encodec_hf")]
        inputs = processor([np.load("a.npy"), np.load("b.npy")], sampling_rate=400, return_tensors="pt")
        with torch.no_grad():
            out = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=0.8)
            audio = model.decode(out.audio_codes, out.audio_scales, inputs["padding_mask"]).audio_values
        torch.save({{"codes": out.audio_codes, "scales": out.audio_scales, "audio": audio}}, "remote.pt")
    """,
        tmp_path,
    )
    remote = torch.load(tmp_path / "remote.pt")
    model = EncodecModel.from_pretrained(built).eval()
    inputs = EncodecFeatureExtractor.from_pretrained(built)(clips, sampling_rate=400, return_tensors="pt")
    with torch.no_grad():
        ours = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=0.8)
        audio = model.decode(ours.audio_codes, ours.audio_scales, inputs["padding_mask"]).audio_values
    assert torch.equal(remote["codes"], ours.audio_codes)
    assert all(torch.equal(a, b) for a, b in zip(remote["scales"], ours.audio_scales, strict=True))
    assert torch.equal(remote["audio"], audio)


def test_loads_in_encodec_hf_and_transformers(built, source_folder):
    source = EncodecModel.from_pretrained(source_folder)
    ours = EncodecModel.from_pretrained(built)
    theirs, info = transformers.EncodecModel.from_pretrained(built, output_loading_info=True)
    assert not any(info.values())
    for key, value in source.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value) and torch.equal(theirs.state_dict()[key], value), key
    for field in (
        "sampling_rate",
        "audio_channels",
        "chunk_length_s",
        "overlap",
        "target_bandwidths",
        "norm_type",
        "upsampling_ratios",
        "codebook_size",
        "normalize",
        "use_causal_conv",
    ):
        assert getattr(theirs.config, field) == getattr(ours.config, field) == getattr(source.config, field), field


def test_model_card(built, tmp_path):
    card = (built / "README.md").read_text()
    meta = metadata_load(built / "README.md")
    assert meta["license"] == "cc-by-nc-4.0" and meta["library_name"] == "transformers"
    assert {"audio", "audio-codec", "encodec"} <= set(meta["tags"])
    assert "base_model" not in meta  # a local folder of random weights has none
    assert "| 0.4 | 1 | 0.4 kbps (400 bits/s) |" in card and "| 0.8 | 2 | 0.8 kbps (800 bits/s) |" in card
    assert "every 360 samples" in card and "RMS volume" in card
    assert "arXiv:2210.13438" in card and "Copied from" in card
    # its usage snippet runs, with only transformers, against the folder in place of the repo id
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1).replace('"me/tiny"', repr(str(built)))
    result = run_without_encodec_hf(snippet, tmp_path)
    # 1 s at 16 kHz resampled to 400 samples: 2 chunks (stride 360), 1 codebook at 0.4 kbps, stereo out
    assert "torch.Size([2, 1, 1, 100]) torch.Size([1, 2, 400])" in result.stdout


@pytest.mark.slow  # builds a full-size model
def test_card_names_the_official_base_model(tmp_path):
    torch.manual_seed(0)
    model = EncodecModel(EncodecConfig.from_preset("encodec_24khz"))
    torch.save(original_layout(model), tmp_path / "encodec_24khz-d7cc33bc.th")
    source = load_source(tmp_path / "encodec_24khz-d7cc33bc.th", "encodec_24khz")
    assert source.base_model == "facebook/encodec_24khz"
    folder = build_folder(source, tmp_path / "out", "me/e24", license="mit")
    meta = metadata_load(folder / "README.md")
    assert meta["base_model"] == "facebook/encodec_24khz" and meta["license"] == "mit"
    card = (folder / "README.md").read_text()
    assert "| 6 | 8 | 6 kbps (6000 bits/s) |" in card and "causal" in card and "sha256" in card


# -- the push, through a fake Hub --------------------------------------------------------------------------------


class FakeHub:
    """Plays the Hub endpoints that create_repo, create_branch and upload_folder use; records every request."""

    def __init__(self, fail: dict | None = None):
        self.requests = []
        self.fail = fail or {}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        body = request.content
        self.requests.append((request.method, path, dict(request.url.params), body))
        for fragment, status in self.fail.items():
            if fragment in path:
                if status == "network":
                    raise httpx2.ConnectError("connection refused", request=request)
                return httpx2.Response(status, json={"error": "denied"}, request=request)
        if path == "/api/repos/create":
            payload = json.loads(body)
            name = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
            return httpx2.Response(200, json={"url": f"https://huggingface.co/{name}", "name": name}, request=request)
        if path == "/api/validate-yaml":  # huggingface_hub checks README.md's metadata before committing
            return httpx2.Response(200, json={}, request=request)
        if "/branch/" in path:
            return httpx2.Response(200, json={}, request=request)
        if "/preupload/" in path:
            files = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in json.loads(body)["files"]
            ]
            return httpx2.Response(200, json={"files": files}, request=request)
        if "/commit/" in path:
            repo = path.split("/api/models/")[1].split("/commit/")[0]
            answer = {"commitUrl": f"https://huggingface.co/{repo}/commit/c0ffee", "commitOid": "c0ffee" * 6 + "c0ff"}
            if request.url.params.get("create_pr"):
                answer["pullRequestUrl"] = f"https://huggingface.co/{repo}/discussions/1"
            return httpx2.Response(200, json=answer, request=request)
        return httpx2.Response(404, json={"error": f"fake hub has no {request.method} {path}"}, request=request)

    def commits(self):
        out = []
        for _, path, params, body in self.requests:
            if "/commit/" in path:
                entries = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
                header = next(e["value"] for e in entries if e["key"] == "header")
                files = {
                    e["value"]["path"]: base64.b64decode(e["value"]["content"]) for e in entries if e["key"] == "file"
                }
                out.append((path, params, header, files))
        return out


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", "hf_fake_token_for_tests")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    hubs = []

    def install(fail=None):
        hub = FakeHub(fail)
        _http.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(hub)))
        hubs.append(hub)
        return hub

    yield install
    _http.set_client_factory(_http.default_client_factory)


def test_push_sends_one_commit_with_every_file(fake_hub, source_folder, tmp_path, capsys):
    hub = fake_hub()
    code = main(
        [
            "upload",
            str(source_folder),
            "--repo-id",
            "me/tiny",
            "--local-dir",
            str(tmp_path / "built"),
            "--private",
            "--revision",
            "v1",
            "--commit-message",
            "first upload",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "committed: https://huggingface.co/me/tiny/commit/c0ffee" in out.out
    create = [json.loads(r[3]) for r in hub.requests if r[1] == "/api/repos/create"]
    assert len(create) == 1
    assert (create[0]["organization"], create[0]["name"]) == ("me", "tiny")
    assert create[0].get("private") is True or create[0].get("visibility") == "private"
    assert any(r[0] == "POST" and r[1] == "/api/models/me/tiny/branch/v1" for r in hub.requests)
    commits = hub.commits()
    assert len(commits) == 1
    path, params, header, files = commits[0]
    assert path == "/api/models/me/tiny/commit/v1" and header["summary"] == "first upload"
    assert sorted(files) == sorted(FOLDER_FILES)
    for name, content in files.items():
        assert content == (tmp_path / "built" / name).read_bytes(), name
    unexpected = [
        r[:2]
        for r in hub.requests
        if not any(s in r[1] for s in ("/repos/create", "/branch/", "/preupload/", "/commit/", "/validate-yaml"))
    ]
    assert unexpected == []


def test_push_as_pull_request(fake_hub, source_folder, capsys):
    hub = fake_hub()
    assert main(["upload", str(source_folder), "--repo-id", "me/tiny", "--create-pr"]) == 0
    assert "committed: https://huggingface.co/me/tiny/discussions/1" in capsys.readouterr().out
    ((path, params, _, _),) = hub.commits()
    assert params.get("create_pr") == "1" and path == "/api/models/me/tiny/commit/main"


def test_dry_run_pushes_nothing(fake_hub, source_folder, capsys):
    hub = fake_hub()
    assert main(["upload", str(source_folder), "--repo-id", "me/tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"would upload {len(FOLDER_FILES)} files" in out and re.search(r"model\.safetensors\s+[\d,]+ bytes", out)
    assert hub.requests == []


def test_mismatch_stops_the_upload(fake_hub, source_folder, monkeypatch, capsys):
    hub = fake_hub()
    real = EncodecModel.from_pretrained.__func__

    def corrupted(cls, *args, **kwargs):
        model = real(cls, *args, **kwargs)
        if "built" in str(args[0]) or "encodec-hf-upload" in str(args[0]):
            with torch.no_grad():
                for layer in model.quantizer.layers:
                    layer.codebook.embed.copy_(torch.roll(layer.codebook.embed, 1, 0))
        return model

    monkeypatch.setattr(EncodecModel, "from_pretrained", classmethod(corrupted))
    assert main(["upload", str(source_folder), "--repo-id", "me/tiny"]) == 2
    assert "does not reproduce the source model's codes" in capsys.readouterr().err
    assert hub.requests == []


@pytest.mark.parametrize(
    "fail, message",
    [
        ({"/repos/create": 403}, "no permission to write to me/tiny (HTTP 403)"),
        ({"/commit/": 401}, "no permission"),
        ({"/repos/create": "network"}, "could not reach the Hugging Face Hub"),  # (preupload would be retried 5 times)
        ({"/commit/": 500}, "the Hub refused the upload"),
    ],
)
def test_push_failures_are_one_line(fake_hub, source_folder, capsys, fail, message):
    hub = fake_hub(fail)
    assert main(["upload", str(source_folder), "--repo-id", "me/tiny"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.strip().count("\n") == 0, err
    assert not any("/commit/" in r[1] and not fail.get("/commit/") for r in hub.requests)  # nothing half-uploaded


def test_no_token(monkeypatch, tmp_path, source_folder, capsys):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_home"))
    assert main(["upload", str(source_folder), "--repo-id", "me/tiny"]) == 2
    assert "no Hugging Face token: set HF_TOKEN or run `hf auth login`" in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        (["SRC_FILE", "--repo-id", "me/x"], "say which model it holds with --model"),
        (["SRC_FILE", "--repo-id", "me/x", "--model", "encodec_48khz"], "is not a encodec_48khz checkpoint"),
        (["NO_DIR", "--repo-id", "me/x"], "is not an EnCodec model"),
        (["SRC_DIR", "--repo-id", "nonsense"], "--repo-id must be OWNER/NAME"),
    ],
)
def test_bad_sources(tmp_path, source_folder, capsys, args, message):
    torch.save(original_layout(EncodecModel(EncodecConfig.from_preset("encodec_24khz"))), tmp_path / "e24.th")
    replace = {"SRC_FILE": str(tmp_path / "e24.th"), "NO_DIR": str(tmp_path), "SRC_DIR": str(source_folder)}
    assert main(["upload", *[replace.get(a, a) for a in args]]) == 2
    assert message in capsys.readouterr().err


def test_local_dir_must_not_hold_other_files(tmp_path, source_folder):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(HubUploadError, match=r"holds files \(notes.txt\)"):
        upload(source_folder, "me/x", local_dir=tmp_path, dry_run=True, report=lambda line: None)


@pytest.mark.parametrize("marker", ["link", "foreign text", "our marker beside their files"])
def test_local_dir_with_a_forged_marker_keeps_its_files(tmp_path, source_folder, marker):
    """Someone's folder with a `.encodec-hf-build` that is a link to any file, a file of other text, or a real
    marker beside files a build never writes: refused, nothing deleted."""
    folder = tmp_path / "theirs"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    (folder / "config.json").write_text("{}")
    if marker == "link":
        (folder / BUILD_MARKER).symlink_to(folder / "thesis.tex")
    elif marker == "foreign text":
        (folder / BUILD_MARKER).write_text("mine\n")
    else:
        upload(source_folder, "me/x", local_dir=tmp_path / "built", dry_run=True, report=lambda line: None)
        (folder / BUILD_MARKER).write_text((tmp_path / "built" / BUILD_MARKER).read_text())
    before = sorted(p.name for p in folder.iterdir())
    with pytest.raises(HubUploadError, match="did not put there"):
        upload(source_folder, "me/x", local_dir=folder, dry_run=True, report=lambda line: None)
    assert sorted(p.name for p in folder.iterdir()) == before
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_local_dir_is_rebuilt_clean_and_links_are_never_followed(tmp_path, source_folder):
    """A folder an earlier build made is emptied first (a language model left from another model does not ship);
    links inside it are removed, never followed; a folder that is a link is refused."""
    from encodec_hf import EncodecLanguageModel

    with_lm = tiny_model(chunked=True)
    with_lm.language_model = EncodecLanguageModel.for_model(with_lm.config).eval()
    first = save_tiny_folder(tmp_path / "with-lm", with_lm)
    out = tmp_path / "out"
    upload(first, "me/x", local_dir=out, dry_run=True, report=lambda line: None)
    assert (out / "language_model").is_dir()
    outside = tmp_path / "outside.md"
    outside.write_text("keep me")
    (out / "README.md").unlink()
    (out / "README.md").symlink_to(outside)
    upload(source_folder, "me/x", local_dir=out, dry_run=True, report=lambda line: None)  # no language model
    assert not (out / "language_model").exists()
    assert outside.read_text() == "keep me" and not (out / "README.md").is_symlink()
    (tmp_path / "link").symlink_to(out, target_is_directory=True)
    with pytest.raises(HubUploadError, match="is a link or a file"):
        upload(source_folder, "me/x", local_dir=tmp_path / "link", dry_run=True, report=lambda line: None)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text("{}")  # a model's file name, but not this build's
    with pytest.raises(HubUploadError, match="did not put there"):
        upload(source_folder, "me/x", local_dir=tmp_path / "foreign", dry_run=True, report=lambda line: None)


MUSICGEN_PROBE = """
import hashlib, json, sys
import torch
if sys.argv[1] == "import":
    import encodec_hf
    from encodec_hf import EncodecModel  # the whole package, as a user's program loads it
from transformers import EncodecConfig, MusicgenConfig, MusicgenDecoderConfig, MusicgenForConditionalGeneration
from transformers import T5Config
text = T5Config(vocab_size=32, d_model=8, d_kv=4, d_ff=8, num_layers=1, num_heads=2)
audio = EncodecConfig(hidden_size=8, num_filters=4, upsampling_ratios=[2, 2], codebook_size=16, codebook_dim=8,
                      target_bandwidths=[0.4, 0.8], sampling_rate=400, num_lstm_layers=1)
decoder = MusicgenDecoderConfig(vocab_size=16, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, ffn_dim=8,
                                num_codebooks=2, audio_channels=1)
config = MusicgenConfig(text_encoder=text.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
torch.manual_seed(0)
model = MusicgenForConditionalGeneration(config).eval()
digest = hashlib.sha256()
for name, tensor in sorted(model.state_dict().items()):
    digest.update(name.encode())
    digest.update(tensor.float().numpy().tobytes())
codes = torch.randint(0, 16, (1, 1, 2, 20), generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    audio_values = model.audio_encoder.decode(codes, [None]).audio_values
print(json.dumps({"codec": type(model.audio_encoder).__module__, "weights": digest.hexdigest(),
                  "audio": hashlib.sha256(audio_values.numpy().tobytes()).hexdigest()}))
"""


@pytest.mark.slow
def test_importing_the_package_changes_nothing_transformers_builds(tmp_path):
    """transformers' MusicGen, built from a config with a seed, has the same codec class, weights and decoded audio
    with and without `import encodec_hf` (the import used to make its codec this package's, with other weights)."""
    import subprocess
    import sys

    (tmp_path / "probe.py").write_text(MUSICGEN_PROBE)
    results = []
    for mode in ("none", "import"):
        done = subprocess.run(
            [sys.executable, str(tmp_path / "probe.py"), mode], capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, done.stderr[-3000:]
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert results[0] == results[1]
    assert results[0]["codec"] == "transformers.models.encodec.modeling_encodec"


AUTO_PROBE = """
import json, sys
ORDER
assert "torch" not in sys.modules or "transformers" in sys.modules  # import encodec_hf alone stays light
from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor
if "import encodec_hf" not in "ORDER":
    import encodec_hf
import transformers
builtin = transformers.AutoModel.from_config(transformers.EncodecConfig())
assert type(builtin).__module__.startswith("transformers."), type(builtin)  # the import alone registers nothing
encodec_hf.register_auto_classes()
builtin = transformers.AutoModel.from_config(transformers.EncodecConfig())
assert type(builtin) is transformers.EncodecModel  # transformers' own config still builds its own model
kinds = {}
for auto in (AutoConfig, AutoModel, AutoFeatureExtractor, AutoProcessor):
    kinds[auto.__name__] = type(auto.from_pretrained(FOLDER, trust_remote_code=TRUST)).__module__
print(json.dumps(kinds))
"""


@pytest.mark.parametrize(
    "kind, trust, order",
    [
        ("convert", False, "import encodec_hf"),
        ("convert", True, "import transformers"),
        ("upload", True, "import encodec_hf"),  # an upload folder names remote code: trust it
        # imports transformers' modeling_utils (and its Auto package) from inside this package's import
        ("upload", True, "import encodec_hf.language_model"),
    ],
)
def test_auto_classes_give_this_packages_classes_for_its_folders(kind, order, trust, built, tmp_path):
    """After `encodec_hf.register_auto_classes()` (the package imported before or after transformers), every Auto
    class gives this package's class for a folder written by convert/save_pretrained or upload; before it, the
    import alone registers nothing."""
    import subprocess
    import sys

    folder = built if kind == "upload" else save_tiny_folder(tmp_path / "converted", tiny_model(chunked=True))
    code = AUTO_PROBE.replace("ORDER", order).replace("FOLDER", repr(str(folder))).replace("TRUST", str(trust))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    kinds = json.loads(done.stdout.strip().splitlines()[-1])
    if kind == "upload":
        # transformers reads an upload folder's AutoFeatureExtractor entry before its config, so it takes the
        # folder's copy of this package's processing.py (the same code, shipped by upload) over the installed one
        assert re.match(r"transformers_modules\.[\w.]+\.processing$", kinds.pop("AutoFeatureExtractor")), kinds
    assert all(module.startswith("encodec_hf.") for module in kinds.values()), kinds


def test_transformers_alone_still_loads_a_saved_folder(tmp_path):
    """The preprocessor config leaves out feature_extractor_type; transformers alone finds its extractor by config."""
    folder = save_tiny_folder(tmp_path / "converted", tiny_model(chunked=True))
    assert "feature_extractor_type" not in json.loads((folder / "preprocessor_config.json").read_text())
    run_without_encodec_hf(
        f"""
        from transformers import AutoFeatureExtractor, AutoModel, AutoProcessor
        folder = {str(folder)!r}
        for auto in (AutoModel, AutoFeatureExtractor, AutoProcessor):
            assert type(auto.from_pretrained(folder)).__module__.startswith("transformers."), auto
    """,
        tmp_path,
    )


def test_a_pushed_language_model_loads_by_id_from_the_offline_cache(fake_hub, tmp_path, capsys):
    """What the Hub receives, placed where huggingface_hub's cache puts a download, loads by repo id offline, with
    its language model, and compresses with use_lm=True as the source model does."""
    from encodec_hf import EncodecLanguageModel, compress

    source = tiny_model(chunked=True)
    torch.manual_seed(5)
    source.language_model = EncodecLanguageModel.for_model(source.config).eval()
    folder = save_tiny_folder(tmp_path / "source", source)
    hub = fake_hub()
    assert main(["upload", str(folder), "--repo-id", "me/tiny-lm"]) == 0, capsys.readouterr().err
    ((_, _, _, files),) = hub.commits()
    assert {"language_model/config.json", "language_model/model.safetensors"} <= set(files)
    snapshot = tmp_path / "cache" / "models--me--tiny-lm" / "snapshots" / ("0" * 40)
    for name, content in files.items():
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).write_bytes(content)
    (tmp_path / "cache" / "models--me--tiny-lm" / "refs").mkdir()
    (tmp_path / "cache" / "models--me--tiny-lm" / "refs" / "main").write_text("0" * 40)
    _http.set_client_factory(_http.default_client_factory)  # no Hub from here on: HF_HUB_OFFLINE=1
    loaded = EncodecModel.from_pretrained("me/tiny-lm", cache_dir=tmp_path / "cache").eval()
    assert loaded.language_model is not None
    audio = np.random.default_rng(1).standard_normal((2, 700)).astype(np.float32) * 0.2
    assert compress(loaded, audio, 400, bandwidth=0.8, use_lm=True) == compress(
        source, audio, 400, bandwidth=0.8, use_lm=True
    )


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def test_auto_classes_on_a_converted_folder_give_this_packages_classes_and_numbers(tmp_path):
    """All four loads gave transformers' classes, whose 48 kHz numbers differ from the original's and whose
    processor refused other rates. After `register_auto_classes()` they give this package's; the subprocess cases
    (either import order, trust_remote_code, upload folders) are in test_hub_upload.py."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoProcessor

    from encodec_hf import register_auto_classes

    register_auto_classes()  # for this process: the documented opt-in
    folder = save_tiny_folder(tmp_path / "converted", tiny_model(chunked=True))
    model = AutoModel.from_pretrained(folder).eval()
    assert isinstance(model, EncodecModel) and isinstance(AutoConfig.from_pretrained(folder), EncodecConfig)
    for auto in (AutoFeatureExtractor, AutoProcessor):
        processor = auto.from_pretrained(folder)
        assert isinstance(processor, EncodecFeatureExtractor)
    clip = np.random.default_rng(6).standard_normal((2, 2_000)).astype(np.float32) * 0.2
    inputs = processor(clip, sampling_rate=1_000, return_tensors="pt")  # another rate: resampled, not refused
    direct = EncodecModel.from_pretrained(folder).eval()
    with torch.no_grad():
        ours = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=0.8).audio_codes
        expected = direct.encode(inputs["input_values"], inputs["padding_mask"], bandwidth=0.8).audio_codes
    assert torch.equal(ours, expected)


def test_upload_local_dir_refuses_a_folder_it_did_not_build(tmp_path):
    """upload --local-dir shipped what an earlier build left there, and followed links."""
    from encodec_hf.hub_upload import HubUploadError, upload

    source = save_tiny_folder(tmp_path / "source", tiny_model(chunked=True))
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("not ours")
    with pytest.raises(HubUploadError, match="did not put there"):
        upload(source, "me/x", local_dir=tmp_path / "theirs", dry_run=True, report=lambda line: None)
    (tmp_path / "link").symlink_to(tmp_path / "theirs")
    with pytest.raises(HubUploadError, match="link"):
        upload(source, "me/x", local_dir=tmp_path / "link", dry_run=True, report=lambda line: None)
