"""Hub-ready folders: weights, configs, this package's model code as remote code, a model card, and the push.

A folder built here loads three ways, with the same tensors:
- `transformers.AutoModel.from_pretrained(folder, trust_remote_code=True)` (and `AutoProcessor`,
  `AutoFeatureExtractor`, `AutoConfig`), for someone who has only transformers installed: the `auto_map`
  entries point at the copies of the files in `REMOTE_CODE` (the model's module and every module it imports);
- `encodec_hf.EncodecModel.from_pretrained(folder)`;
- `transformers.EncodecModel.from_pretrained(folder)`, whose numbers differ on the 48 kHz model's last chunk.

`upload` pushes a built folder in one commit through huggingface_hub, after reloading it and checking a short
clip's codes against the source model, so that nothing broken or half-written reaches the Hub.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .configuration_encodec import PRESETS, EncodecConfig
from .convert_encodec import convert_state_dict, load_original_state_dict
from .modeling_encodec import EncodecModel
from .processing import EncodecFeatureExtractor

# The model's and processor's modules and every module they import (layers.py and quantization.py, what the
# model is built of; distributed.py, which the codebooks use; streaming.py for stream_encoder / stream_decoder;
# language_model.py for the entropy-coding model; chunking.py for the arithmetic they share; loading.py for the
# strict weight checks; audio_io.py for the processor's undecoded audio files):
# transformers copies what the auto_map names and their relative imports, so all of them ship.
REMOTE_CODE = (
    "configuration_encodec.py",
    "modeling_encodec.py",
    "layers.py",
    "inputs.py",
    "quantization.py",
    "distributed.py",
    "processing.py",
    "streaming.py",
    "language_model.py",
    "chunking.py",
    "loading.py",
    "audio_io.py",
)
CONFIG_AUTO_MAP = {
    "AutoConfig": "configuration_encodec.EncodecConfig",
    "AutoModel": "modeling_encodec.EncodecModel",
}
PROCESSOR_AUTO_MAP = {
    "AutoFeatureExtractor": "processing.EncodecFeatureExtractor",
    "AutoProcessor": "processing.EncodecFeatureExtractor",
}
FOLDER_FILES = ("config.json", "model.safetensors", "preprocessor_config.json", "README.md", *REMOTE_CODE)
BUILD_MARKER = ".encodec-hf-build"  # marks a folder this module built (never uploaded)
MARKER_TEXT = "built by encodec-hf"  # how the marker begins
OPTIONAL_FILES = ("language_model",)  # the entropy-coding language model's subfolder, if the model has one
META_LICENSE = "cc-by-nc-4.0"  # Meta's EnCodec weights
OFFICIAL_CHECKPOINTS = {  # file names of the released weights -> the Hub model they are
    "encodec_24khz-d7cc33bc.th": "facebook/encodec_24khz",
    "encodec_48khz-7e698e3e.th": "facebook/encodec_48khz",
}


class HubUploadError(Exception):
    """A failure to report in one line, saying what to do."""


@dataclass
class Source:
    model: EncodecModel
    extractor: EncodecFeatureExtractor
    provenance: str  # one sentence for the model card: where the weights came from
    base_model: str | None


def load_source(source: str | Path, model_name: str | None = None) -> Source:
    """A model folder (or Hub id) that `EncodecModel.from_pretrained` reads, or an original checkpoint file
    with `model_name` (one of the presets)."""
    path = Path(source)
    if path.is_file():
        if model_name is None:
            raise HubUploadError(
                f"{source} is a checkpoint file: say which model it holds with --model {{{','.join(PRESETS)}}}"
            )
        if model_name not in PRESETS:
            raise HubUploadError(f"--model must be one of {', '.join(PRESETS)}, got {model_name!r}")
        config = EncodecConfig.from_preset(model_name)
        try:
            state_dict = convert_state_dict(load_original_state_dict(path), config)
        except ValueError as error:
            raise HubUploadError(f"{source} is not a {model_name} checkpoint: {error}") from error
        model = EncodecModel(config)
        model.load_state_dict(state_dict, strict=True)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return Source(
            model.eval(),
            EncodecFeatureExtractor.from_model_config(config),
            f"converted by encodec-hf from the original checkpoint `{path.name}` (sha256 {digest[:16]}...)",
            OFFICIAL_CHECKPOINTS.get(path.name),
        )
    try:
        model = EncodecModel.from_pretrained(str(source))
    except (OSError, ValueError) as error:
        raise HubUploadError(
            f"{source} is not an EnCodec model (a folder with config.json and model.safetensors, "
            f"a Hub id, or a checkpoint file with --model): {str(error).splitlines()[0]}"
        ) from error
    try:
        extractor = EncodecFeatureExtractor.from_pretrained(str(source))
    except OSError:
        extractor = EncodecFeatureExtractor.from_model_config(model.config)
    base = str(source) if not path.exists() else None
    return Source(model.eval(), extractor, f"copied from `{source}` by encodec-hf", base)


def _bandwidth_rows(config: EncodecConfig) -> str:
    rows = []
    for bandwidth in config.target_bandwidths:
        codebooks = config.num_quantizers_for_bandwidth(bandwidth)
        bits = codebooks * config.codebook_nbits * config.frame_rate
        rows.append(f"| {bandwidth:g} | {codebooks} | {bits / 1000:g} kbps ({bits} bits/s) |")
    return "\n".join(rows)


def _processing_facts(config: EncodecConfig) -> str:
    channels = {1: "mono", 2: "stereo"}[config.audio_channels]
    facts = [
        f"- Takes {channels} audio at {config.sampling_rate} Hz; the feature extractor resamples other rates "
        f"(soxr) and converts mono <-> stereo.",
        f"- {config.frame_rate} code frames per second ({config.hop_length} samples each), "
        f"{config.num_quantizers} codebooks of {config.codebook_size} entries.",
    ]
    if config.chunk_length is not None:
        facts.append(
            f"- Encodes in chunks of {config.chunk_length_s:g} s ({config.chunk_length} samples) starting "
            f"every {config.chunk_stride} samples ({config.overlap:.0%} overlap). The last chunk keeps only "
            f"the samples that exist, as in EnCodec 0.1.1. Decoding joins the chunks by linear "
            f"overlap-add."
        )
    else:
        facts.append(
            f"- Encodes the whole clip at once; the convolutions are "
            f"{'causal' if config.use_causal_conv else 'non-causal'}."
        )
    if config.normalize:
        facts.append(
            "- Each chunk is divided by its RMS volume (over its real samples) before encoding; the scale is "
            "returned in `audio_scales` and multiplied back after decoding."
        )
    else:
        facts.append("- No volume normalisation: `audio_scales` holds `None`.")
    return "\n".join(facts)


def model_card(config: EncodecConfig, repo_id: str, license: str, base_model: str | None, provenance: str) -> str:
    """The README.md of a published folder: YAML metadata, a runnable snippet, bandwidths and facts."""
    meta = [
        "---",
        f"license: {license}",
        "library_name: transformers",
        "pipeline_tag: feature-extraction",
        "tags:",
        "- audio",
        "- audio-codec",
        "- encodec",
        "- encodec-hf",
    ]
    if base_model:
        meta += [f"base_model: {base_model}"]
    meta += ["---"]
    channels = config.audio_channels
    example_shape = "audio" if channels == 1 else "np.stack([audio, audio])"
    return (
        "\n".join(meta)
        + f"""

# EnCodec ({config.sampling_rate // 1000} kHz, {"mono" if channels == 1 else "stereo"})

[EnCodec](https://arxiv.org/abs/2210.13438) neural audio codec, packaged by
[encodec-hf](https://pypi.org/project/encodec-hf/): the numbers of the original EnCodec 0.1.1 (identical codes)
with the API of transformers' `EncodecModel`. The model code ships with this folder, so transformers alone loads
it with `trust_remote_code=True`; `encodec_hf.EncodecModel.from_pretrained` and transformers' own
`EncodecModel.from_pretrained` read the same weights.

## Usage

```python
import numpy as np
import torch
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("{repo_id}", trust_remote_code=True)
processor = AutoProcessor.from_pretrained("{repo_id}", trust_remote_code=True)

t = np.arange(16_000) / 16_000
audio = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # any rate: resampled by the processor
inputs = processor(raw_audio={example_shape}, sampling_rate=16_000, return_tensors="pt")
with torch.no_grad():
    encoded = model.encode(inputs["input_values"], inputs["padding_mask"], bandwidth={config.target_bandwidths[0]:g})
    audio_values = model.decode(encoded.audio_codes, encoded.audio_scales, inputs["padding_mask"]).audio_values
print(encoded.audio_codes.shape, audio_values.shape)
```

`audio_codes` is shaped (num_chunks, batch, num_quantizers, frames); `audio_values` has exactly the input's
length.

## Bandwidths

| bandwidth (kbps) | codebooks | bit rate |
|---|---|---|
{_bandwidth_rows(config)}

## Processing

{_processing_facts(config)}

## Weights

{provenance[0].upper() + provenance[1:]}. Meta released the EnCodec weights under CC-BY-NC 4.0.

## Citation

```bibtex
@article{{defossez2022highfi,
  title={{High Fidelity Neural Audio Compression}},
  author={{D{{\\'e}}fossez, Alexandre and Copet, Jade and Synnaeve, Gabriel and Adi, Yossi}},
  journal={{arXiv preprint arXiv:2210.13438}},
  year={{2022}}
}}
```
"""
    )


def _add_auto_map(path: Path, auto_map: dict) -> None:
    data = json.loads(path.read_text())
    data["auto_map"] = dict(auto_map)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def build_folder(
    source: Source, local_dir: str | Path, repo_id: str, license: str = META_LICENSE, base_model: str | None = None
) -> Path:
    """Write the folder to publish into `local_dir`: a new or empty folder, or one an earlier build made (which is
    emptied first, so nothing left from another model ships). Any other non-empty folder is refused, and links
    are never followed."""
    folder = Path(local_dir)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise HubUploadError(f"--local-dir {folder} is a link or a file; use an empty folder")
    folder.mkdir(parents=True, exist_ok=True)
    entries = list(folder.iterdir())
    ours = {*FOLDER_FILES, *OPTIONAL_FILES, BUILD_MARKER}
    foreign = sorted(p.name for p in entries if p.name not in ours)
    if entries and (foreign or not _is_build_marker(folder / BUILD_MARKER)):
        names = ", ".join((foreign or sorted(p.name for p in entries))[:5])
        raise HubUploadError(
            f"--local-dir {folder} holds files ({names}) that encodec-hf did not put there; use an empty folder"
        )
    for entry in entries:  # an earlier build's: removed, links themselves and never their targets
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    (folder / BUILD_MARKER).write_text(f"{MARKER_TEXT} for {repo_id}; this folder is emptied by the next build\n")
    source.model.save_pretrained(folder)  # safetensors, never pickle; the language model in language_model/
    source.extractor.save_pretrained(folder)
    _add_auto_map(folder / "config.json", CONFIG_AUTO_MAP)
    _add_auto_map(folder / "preprocessor_config.json", PROCESSOR_AUTO_MAP)
    package = Path(__file__).resolve().parent
    for name in REMOTE_CODE:
        shutil.copyfile(package / name, folder / name)
    card = model_card(source.model.config, repo_id, license, base_model or source.base_model, source.provenance)
    (folder / "README.md").write_text(card)
    return folder


def _is_build_marker(path: Path) -> bool:
    """A marker this module wrote: a plain file (a link could point at anything) holding its text."""
    if path.is_symlink() or not path.is_file() or path.stat().st_size > 1000:
        return False
    return path.read_text(errors="replace").startswith(MARKER_TEXT)


def check_folder(folder: str | Path, source_model: EncodecModel) -> None:
    """Reload the built folder and require the same codes as the source model on a short clip."""
    folder = Path(folder)
    present = sorted(p.name for p in folder.iterdir() if p.name not in OPTIONAL_FILES + (BUILD_MARKER,))
    if sorted(FOLDER_FILES) != present:
        raise HubUploadError(
            f"{folder} should hold exactly {', '.join(sorted(FOLDER_FILES))} (and optionally "
            f"{', '.join(OPTIONAL_FILES)}); it holds {', '.join(present)}"
        )
    reloaded = EncodecModel.from_pretrained(folder).eval()
    if (source_model.language_model is None) != (reloaded.language_model is None):
        raise HubUploadError(
            f"the built folder {folder} {'lacks' if reloaded.language_model is None else 'adds'} "
            f"the source model's language model; nothing was uploaded"
        )
    if source_model.language_model is not None:
        expected_lm, got_lm = source_model.language_model.state_dict(), reloaded.language_model.state_dict()
        if expected_lm.keys() != got_lm.keys() or not all(torch.equal(expected_lm[k], got_lm[k]) for k in expected_lm):
            raise HubUploadError(
                f"the built folder {folder} does not hold the source model's language model; nothing was uploaded"
            )
    config = source_model.config
    generator = torch.Generator().manual_seed(0)
    clip = torch.randn(1, config.audio_channels, config.sampling_rate // 2 + 17, generator=generator) * 0.1
    bandwidth = config.target_bandwidths[-1]
    with torch.no_grad():
        expected = source_model.encode(clip, bandwidth=bandwidth).audio_codes
        got = reloaded.encode(clip, bandwidth=bandwidth).audio_codes
    if not torch.equal(expected, got):
        raise HubUploadError(
            f"the built folder {folder} does not reproduce the source model's codes "
            f"({int((expected != got).sum())} of {expected.numel()} differ); nothing was uploaded"
        )


def describe_folder(folder: str | Path) -> list[tuple[str, int]]:
    """(path in the repo, bytes) of every file in the folder, subfolders included; links are not followed."""
    folder = Path(folder)
    return [
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.name != BUILD_MARKER
    ]


def _one_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def push_folder(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Create the repo if needed and upload `folder` in one commit; return the commit (or pull request) URL."""
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

    token = token or get_token()
    if not token:
        raise HubUploadError(
            "no Hugging Face token: set HF_TOKEN or run `hf auth login` (or `huggingface-cli login`), then try again"
        )
    api = HfApi(token=token)
    message = commit_message or "Upload EnCodec model with encodec-hf"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision and not create_pr:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        # create_commit rather than upload_folder: with hf_xet installed, upload_folder may split a folder into
        # several commits; one commit means a failure leaves the repo as it was.
        operations = [
            CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(folder) / name))
            for name, _ in describe_folder(folder)
        ]
        info = api.create_commit(
            repo_id=repo_id, operations=operations, commit_message=message, revision=revision, create_pr=create_pr
        )
    except OfflineModeIsEnabled as error:
        raise HubUploadError(f"HF_HUB_OFFLINE is set: unset it to upload ({_one_line(error)})") from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403) or isinstance(error, RepositoryNotFoundError):
            raise HubUploadError(
                f"no permission to write to {repo_id} (HTTP {status}): it does not exist for this "
                f"token or the token may not write to it; use a token with write access to this "
                f"namespace (hf auth login), or another --repo-id"
            ) from error
        raise HubUploadError(f"the Hub refused the upload to {repo_id}: {_one_line(error)}") from error
    except OSError as error:  # network failures surface as httpx / OS errors
        raise HubUploadError(
            f"could not reach the Hugging Face Hub ({_one_line(error)}); check the network and "
            f"try again: nothing was committed"
        ) from error
    except Exception as error:
        if type(error).__module__.startswith("httpx"):
            raise HubUploadError(
                f"could not reach the Hugging Face Hub ({_one_line(error)}); check the network "
                f"and try again: nothing was committed"
            ) from error
        raise
    return info.pr_url if create_pr and info.pr_url else info.commit_url


def upload(
    source: str | Path,
    repo_id: str,
    *,
    model_name: str | None = None,
    local_dir: str | Path | None = None,
    dry_run: bool = False,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    commit_message: str | None = None,
    license: str = META_LICENSE,
    base_model: str | None = None,
    report=print,
) -> str | None:
    """Build, check and (unless `dry_run`) push. Returns the commit URL, or None for a dry run."""
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubUploadError(f"--repo-id must be OWNER/NAME, got {repo_id!r}")
    loaded = load_source(source, model_name)
    temporary = None
    if local_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="encodec-hf-upload-")
        local_dir = temporary.name
    try:
        folder = build_folder(loaded, local_dir, repo_id, license=license, base_model=base_model)
        check_folder(folder, loaded.model)
        files = describe_folder(folder)
        total = sum(size for _, size in files)
        verb = "would upload" if dry_run else "uploading"
        report(f"{verb} {len(files)} files ({total / 1e6:.1f} MB) to {repo_id}:")
        for name, size in files:
            report(f"  {name:28s} {size:>12,d} bytes")
        if dry_run:
            return None
        url = push_folder(
            folder, repo_id, private=private, revision=revision, create_pr=create_pr, commit_message=commit_message
        )
        report(f"committed: {url}")
        return url
    finally:
        if temporary is not None:
            temporary.cleanup()


__all__ = ["upload", "build_folder", "check_folder", "push_folder", "load_source", "model_card", "HubUploadError"]
