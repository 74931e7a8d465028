"""One weight-norm fold that never goes stale, options as arguments, and one model shared by threads."""

import threading

import pytest
import torch
import transformers  # noqa: F401  (adds Logger.warning_once)
from safetensors.torch import load_file, save_file

from encodec_hf import EncodecModel
from encodec_hf.testing import save_tiny_folder, tiny_model

PATHS = [dict(fast_encoding=False, fast_decoding=False), dict(fast_encoding=True, fast_decoding=True)]


def run(model, x, **options):
    mask = torch.ones(x.shape[0], x.shape[-1])
    with torch.inference_mode():
        encoded = model.encode(x, mask, bandwidth=0.8, fast_encoding=options["fast_encoding"])
        audio = model.decode(
            encoded.audio_codes, encoded.audio_scales, mask, fast_decoding=options["fast_decoding"]
        ).audio_values
    return encoded.audio_codes, audio


def fresh_copy(model):
    fresh = EncodecModel(model.config).eval()
    fresh.load_state_dict(model.state_dict())
    return fresh.to(model.dtype)


def assert_same_as_fresh(model, x):
    fresh = fresh_copy(model)
    for options in PATHS:
        codes, audio = run(model, x, **options)
        fresh_codes, fresh_audio = run(fresh, x, **options)
        assert torch.equal(codes, fresh_codes), options
        assert torch.equal(audio, fresh_audio), options


def scale_weights(model, factor):
    for name, parameter in model.named_parameters():
        if "original0" in name:  # weight norm's g: the folded weight scales with it
            parameter.mul_(factor)


@pytest.fixture
def warm():
    """A weight-normed model whose folds are computed (both layouts), and an input."""
    model = tiny_model()
    x = torch.randn(2, 1, 700, generator=torch.Generator().manual_seed(0)) * 0.3
    for options in PATHS:
        run(model, x, **options)
    return model, x


def test_fold_follows_in_place_edits(warm):
    model, x = warm
    before = run(model, x, **PATHS[1])[1]
    with torch.no_grad():
        scale_weights(model, 1.5)
    assert not torch.equal(run(model, x, **PATHS[1])[1], before)
    assert_same_as_fresh(model, x)


def test_fold_follows_load_state_dict(warm):
    model, x = warm
    model.load_state_dict(tiny_model(seed=7).state_dict())
    assert_same_as_fresh(model, x)


def test_fold_follows_an_optimizer_step(warm):
    model, x = warm
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    embeddings = model.encoder(x)
    loss = (model.decoder(embeddings) - x).abs().mean()
    loss.backward()
    optimizer.step()
    model.eval()
    assert_same_as_fresh(model, x)


def test_fold_follows_dtype_changes(warm):
    model, x = warm
    model.to(torch.float64)
    assert_same_as_fresh(model, x.double())
    model.to(torch.float32)
    assert_same_as_fresh(model, x)


def test_data_writes_are_seen_by_the_next_call(warm):
    """Issue 18: writes through `.data` (as EMA updates make them) bypass the version counter; each encode and decode
    folds afresh, so the next call sees them without `refresh_weights()` (63 % of codes were wrong before)."""
    model, x = warm
    before = run(model, x, **PATHS[1])[1]
    for name, parameter in model.named_parameters():
        if "original0" in name:
            parameter.data.mul_(1.5)
    assert not torch.equal(run(model, x, **PATHS[1])[1], before)
    assert_same_as_fresh(model, x)
    for name, parameter in model.named_parameters():
        if "original1" in name:  # weight norm's v, written with copy_ through .data
            parameter.data.copy_(parameter.data.flip(-1))
    assert_same_as_fresh(model, x)


def test_a_call_folds_each_layer_once(warm, monkeypatch):
    """The fresh fold costs one evaluation of each layer's weight per encode call, not one per clip or chunk."""
    from encodec_hf.layers import _FoldedWeight

    model, _ = warm
    encoder_layers = sum(hasattr(module, "folded_weight") for module in model.encoder.modules())
    x = torch.randn(4, 1, 700, generator=torch.Generator().manual_seed(1)) * 0.3  # 4 clips, each encoded alone
    real_get, folds = _FoldedWeight.get, []

    def counting_get(self, conv, channels_last):
        before = self._cache
        weight = real_get(self, conv, channels_last)
        if before is None or before[0] != self._cache[0]:
            folds.append(conv)
        return weight

    monkeypatch.setattr(_FoldedWeight, "get", counting_get)
    for _ in range(2):  # two calls: two folds of each layer
        with torch.inference_mode():
            model.encode(x, bandwidth=0.8)
    assert len(folds) == 2 * encoder_layers and len(set(map(id, folds))) == encoder_layers


def test_training_gets_live_weights_and_gradients():
    model = tiny_model().train()
    x = torch.randn(1, 1, 300) * 0.3
    model.decoder(model.encoder(x)).abs().mean().backward()
    conv = model.encoder.layers[0].conv
    assert conv.parametrizations.weight.original0.grad is not None
    assert conv.parametrizations.weight.original1.grad.abs().sum() > 0
    assert set(model.state_dict()) == set(tiny_model().state_dict())


def test_four_threads_share_one_model():
    """Each thread its own options, 20 times, on a model whose folds start cold: each gets what it gets alone."""
    model = tiny_model()
    x = torch.randn(2, 1, 900, generator=torch.Generator().manual_seed(1)) * 0.3
    options = [dict(fast_encoding=e, fast_decoding=d) for e in (False, True) for d in (False, True)]
    alone = [run(fresh_copy(model), x, **o) for o in options]
    failures, barrier = [], threading.Barrier(len(options))

    def work(index):
        barrier.wait()
        for _ in range(20):
            codes, audio = run(model, x, **options[index])
            if not (torch.equal(codes, alone[index][0]) and torch.equal(audio, alone[index][1])):
                failures.append(index)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(options))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_options_are_checked():
    model = tiny_model()
    x = torch.randn(1, 1, 100)
    with pytest.raises(TypeError):
        model.encode(x, fast_encodng=True)  # misspelled: an error, never ignored
    with pytest.raises(ValueError, match="fast_encoding must be True or False"):
        model.encode(x, fast_encoding="yes")
    with pytest.raises(ValueError, match="chunk_batch_size must be an integer of at least 1"):
        model.decode(model.encode(x).audio_codes, [None], chunk_batch_size=0)
    with pytest.raises(ValueError, match="unknown inference option 'fast'"):
        model.set_inference_defaults(fast=True)
    with pytest.raises(ValueError, match="progress must be"):
        model.encode(x, progress=3)


def test_model_wide_defaults():
    model = tiny_model(chunked=True)
    assert model.inference_defaults == {
        "fast_encoding": False,
        "fast_decoding": True,
        "chunk_batch_size": 4,
        "pad_chunks": False,
    }
    model.set_inference_defaults(fast_decoding=False, chunk_batch_size=2)
    assert model.inference_defaults["fast_decoding"] is False and model.inference_defaults["chunk_batch_size"] == 2
    model.set_inference_defaults(fast_encoding=True)
    assert model.inference_defaults["fast_encoding"] is True
    x = torch.randn(1, 2, 1000) * 0.3
    with torch.no_grad():
        by_default = model.encode(x, bandwidth=0.8).audio_codes
        by_argument = tiny_model(chunked=True).encode(x, bandwidth=0.8, fast_encoding=True).audio_codes
    assert torch.equal(by_default, by_argument)


def test_progress_as_callable_and_as_tqdm_like():
    model = tiny_model(chunked=True)
    x = torch.randn(2, 2, 1000) * 0.3  # 3 chunks each
    calls = []
    with torch.no_grad():
        encoded = model.encode(x, bandwidth=0.8, progress=lambda *args: calls.append(args))
    assert calls[-1] == ("encode", 6, 6) and [c[1] for c in calls] == sorted(c[1] for c in calls)

    class Bar:
        total, n = None, 0

        def update(self, count):
            self.n += count

    bar = Bar()
    with torch.no_grad():
        model.decode(encoded.audio_codes, encoded.audio_scales, progress=bar, chunk_batch_size=1)
    assert (bar.n, bar.total) == (6, 6)


# -- from the review of what a new user trips over (issue 18) --------------------------------------------------


def test_weight_edits_are_seen_while_another_thread_runs_another_model():
    """While another thread ran inference, in-place updates were ignored (49-94 % of codes wrong) through a
    process-wide fold cache. Folds are each layer's own and redone per call now."""
    import threading

    busy, edited = tiny_model(seed=1), tiny_model(seed=2)
    x = torch.randn(2, 1, 700, generator=torch.Generator().manual_seed(0)) * 0.3
    stop = threading.Event()

    def keep_busy():
        while not stop.is_set():
            with torch.inference_mode():
                busy.encode(x, bandwidth=0.8)

    thread = threading.Thread(target=keep_busy)
    thread.start()
    try:
        for factor in (1.5, 0.5, 2.0):
            with torch.no_grad():
                for name, parameter in edited.named_parameters():
                    if "original0" in name:
                        parameter.mul_(factor)
                fresh = EncodecModel(edited.config).eval()
                fresh.load_state_dict(edited.state_dict())
                assert torch.equal(
                    edited.encode(x, bandwidth=0.8).audio_codes, fresh.encode(x, bandwidth=0.8).audio_codes
                )
    finally:
        stop.set()
        thread.join()


@pytest.mark.parametrize("damage", ["missing", "extra", "nan", "shape"])
def test_damaged_folders_fail_the_load(tmp_path, damage):
    folder = save_tiny_folder(tmp_path / "model", tiny_model())
    tensors = load_file(folder / "model.safetensors")
    name = sorted(k for k in tensors if k.startswith("decoder."))[0]
    size = tensors[name].numel()
    if damage == "missing":
        del tensors[name]
    elif damage == "extra":
        tensors["decoder.extra.weight"] = torch.zeros(3)
    elif damage == "nan":
        tensors[name] = torch.full_like(tensors[name], float("nan"))
    else:  # transformers alone says "look at the above report!" with no report in a one-line error
        tensors[name] = torch.zeros(size + 1)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    message = {
        "missing": "1 missing keys",
        "extra": "1 unexpected keys",
        "nan": "NaN or Inf",
        "shape": rf"1 mismatched keys \({name}: \({size + 1},\) in the folder",
    }[damage]
    with pytest.raises(ValueError, match=message):
        EncodecModel.from_pretrained(folder)


def test_a_folder_without_config_json_is_refused(tmp_path):
    """transformers builds a default config (the 24 kHz model's) for a folder without config.json and loads
    whatever weights fit it."""
    folder = save_tiny_folder(tmp_path / "model", tiny_model())
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match=r"is not an EnCodec model folder \(no config.json"):
        EncodecModel.from_pretrained(folder)
