"""The entropy-coding language model as a Hugging Face sub-model: saved in `language_model/`, loaded by
`EncodecModel.from_pretrained` from a folder, from the Hub's cache offline, and by the remote code, as strictly as
the codec's weights; it follows the model through `.to()`; the codec's state dict keeps exactly the official keys."""

import json
import shutil

import numpy as np
import pytest
import torch

from encodec_hf import EncodecLanguageModel, EncodecModel, compress, decompress
from encodec_hf.hub_upload import upload
from encodec_hf.testing import run_without_encodec_hf, save_tiny_folder, tiny_model


@pytest.fixture(scope="module")
def with_lm(tmp_path_factory):
    model = tiny_model(chunked=True)
    torch.manual_seed(3)
    model.language_model = EncodecLanguageModel.for_model(model.config).eval()
    folder = save_tiny_folder(tmp_path_factory.mktemp("lm") / "model", model)
    return model, folder


def test_saved_in_a_subfolder_with_its_config(with_lm):
    model, folder = with_lm
    assert (folder / "language_model" / "config.json").is_file()
    assert (folder / "language_model" / "model.safetensors").is_file()
    assert not (folder / "language_model.safetensors").exists()
    config = json.loads((folder / "language_model" / "config.json").read_text())
    assert config["model_type"] == "encodec_hf_language_model" and config["num_codebooks"] == 2
    loaded = EncodecModel.from_pretrained(folder)
    assert set(loaded.state_dict()) == set(tiny_model(chunked=True).state_dict())  # official keys only
    for key, value in model.language_model.state_dict().items():
        assert torch.equal(loaded.language_model.state_dict()[key], value), key


def test_follows_the_model_through_to(with_lm):
    _, folder = with_lm
    loaded = EncodecModel.from_pretrained(folder)
    loaded.to(torch.float64)
    assert next(loaded.language_model.parameters()).dtype == torch.float64
    loaded.float()
    assert next(loaded.language_model.parameters()).dtype == torch.float32


def fill_hub_cache(cache, repo_id: str, folder, commit: str = "0" * 40):
    """The layout huggingface_hub's cache has after a download of every file of `folder` at `commit`."""
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    shutil.copytree(folder, root / "snapshots" / commit)


def test_a_pushed_repo_loads_by_id_from_the_offline_cache_and_compresses_with_its_lm(with_lm, tmp_path):
    model, folder = with_lm
    built = tmp_path / "built"
    upload(folder, "me/tiny-lm", local_dir=built, dry_run=True, report=lambda line: None)
    assert (built / "language_model" / "model.safetensors").is_file()
    fill_hub_cache(tmp_path / "cache", "me/tiny-lm", built)
    loaded = EncodecModel.from_pretrained("me/tiny-lm", cache_dir=tmp_path / "cache").eval()  # HF_HUB_OFFLINE=1
    assert loaded.language_model is not None
    audio = np.random.default_rng(0).standard_normal((2, 900)).astype(np.float32) * 0.2
    data = compress(loaded, audio, 400, bandwidth=0.8, use_lm=True)
    assert data == compress(model, audio, 400, bandwidth=0.8, use_lm=True)
    np.testing.assert_array_equal(decompress(data, loaded)[0], decompress(data, model)[0])


def test_remote_code_loads_the_language_model(with_lm, tmp_path):
    _, folder = with_lm
    built = tmp_path / "built"
    upload(folder, "me/tiny-lm", local_dir=built, dry_run=True, report=lambda line: None)
    run_without_encodec_hf(
        f"""
        from transformers import AutoModel
        model = AutoModel.from_pretrained({str(built)!r}, trust_remote_code=True)
        assert model.language_model is not None and type(model.language_model).__name__ == "EncodecLanguageModel"
        assert not any(key.startswith("language_model") for key in model.state_dict())
    """,
        tmp_path,
    )


def test_assigned_language_model_stays_out_of_the_state_dict(with_lm):
    model, _ = with_lm
    assert model.language_model is not None
    assert not any(key.startswith("language_model") for key in model.state_dict())
    with pytest.raises(ValueError, match="must be an EncodecLanguageModel or None"):
        tiny_model().language_model = torch.nn.Linear(2, 2)


def test_bad_construction(tmp_path):
    from encodec_hf import EncodecLanguageModelConfig
    from encodec_hf.language_model import load_language_model

    with pytest.raises(ValueError, match="num_heads"):
        EncodecLanguageModel(
            EncodecLanguageModelConfig(num_codebooks=4, codebook_size=16, past_context=7, dim=10, num_heads=3)
        )
    with pytest.raises(ValueError, match="takes an EncodecLanguageModelConfig, got int"):
        EncodecLanguageModel(4)
    assert load_language_model(save_tiny_folder(tmp_path / "no-lm")) is None


def _edit_language_model_weights(folder, tmp_path, edit):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    weights = copy / "language_model" / "model.safetensors"
    tensors = load_file(str(weights))
    edit(tensors)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    return copy


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.pop("transformer.norm_in.weight"), "1 missing keys (transformer.norm_in.weight)"),
        (lambda t: t.update(extra=torch.zeros(3)), "1 unexpected keys (extra)"),
        (lambda t: t["linears.0.bias"].fill_(float("nan")), "NaN or Inf in 1 tensor(s): linears.0.bias"),
        (
            lambda t: t.update({"linears.0.bias": torch.zeros(t["linears.0.bias"].numel() + 1)}),
            "1 mismatched keys (linears.0.bias: (17,) in the folder, (16,) in this model)",
        ),
    ],
    ids=["missing", "extra", "nan", "shape"],
)
def test_a_damaged_language_model_folder_is_refused(with_lm, tmp_path, edit, message):
    """As the codec's weights: transformers alone would fill a missing tensor with uninitialised memory, so that
    `compress --lm` wrote files no other process decoded."""
    _, folder = with_lm
    damaged = _edit_language_model_weights(folder, tmp_path, edit)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        EncodecModel.from_pretrained(damaged)
    with pytest.raises(ValueError, match="does not hold this model's weights|NaN or Inf"):
        EncodecLanguageModel.from_pretrained(damaged / "language_model")


def test_loaded_weights_have_storage_of_their_own(with_lm):
    """transformers hands out views into its load buffers, at addresses that are not 64-byte aligned; on AMD
    EPYC the language model's products then rounded otherwise and its .ecdc files differed from the original's."""
    _, folder = with_lm
    loaded = EncodecModel.from_pretrained(folder)
    for model in (loaded, loaded.language_model):
        for name, tensor in model.state_dict().items():
            assert tensor.data_ptr() % 64 == 0, name
            assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size(), name
