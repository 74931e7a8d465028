"""Runners for exported models (exporting.py): `OnnxEncodecModel` (ONNX Runtime) and `OpenVINOEncodecModel`.

Each runs its two per-chunk steps, `encode_chunks` and `decode_chunks`, on the exported graphs; its `encode`,
`decode` and `forward` are `EncodecModel`'s own entry points (the same functions), so the chunk scheduler
(chunking.py), the input checks and the options are the model's: they take and return what `EncodecModel`'s do, and
`compress`, `tokenize_dataset` and `evaluate` run on them. A runner is not a torch module: it holds no torch
weights, only the runtime's graphs, and offers what those graphs compute (no streaming, training or
`save_pretrained`: export the `EncodecModel` again for those).

    model = OnnxEncodecModel.from_pretrained("exported")   # the folder `encodec-hf export` wrote
    codes = model.encode(input_values, bandwidth=6.0).audio_codes
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from .configuration_encodec import EncodecConfig
from .exporting import DECODER_NAME, ENCODER_NAME, EXPORT_CONFIG, require_runtime
from .inputs import INFERENCE_DEFAULTS
from .loading import check_model_folder, hub_reachable
from .modeling_encodec import EncodecModel


def exported_model_class(folder) -> type | None:
    """The runner class for a folder that `encodec-hf export` wrote (and that holds no torch weights), else None."""
    folder = Path(str(folder))
    if not folder.is_dir() or (folder / "model.safetensors").is_file():
        return None
    for runner in (OnnxEncodecModel, OpenVINOEncodecModel):
        if (folder / runner.format / EXPORT_CONFIG).is_file():
            return runner
    return None


def load_model(name_or_path, *, exported: bool = True):
    """The package's one model loader (the command line, `evaluate`, the trainer's fine-tuning): the runner of a
    folder `encodec-hf export` wrote (`exported=False` refuses one), else `EncodecModel.from_pretrained`, in eval
    mode. Errors are ValueErrors in the words the command line shows: a path that cannot be a model folder
    (`loading.check_model_folder`), a Hub id that is neither reachable nor cached. An unreachable Hub is probed
    once (huggingface_hub would retry for half a minute) and the cache used at once."""
    check_model_folder(name_or_path)
    name, path = str(name_or_path), Path(str(name_or_path))
    runner = exported_model_class(path)
    if runner is not None:
        if not exported:
            raise ValueError(
                f"{name!r} is an exported model (graphs, no torch weights); pass the model folder it was exported from"
            )
        return runner.from_pretrained(path)
    offline = {} if path.is_dir() or hub_reachable() else {"local_files_only": True}
    try:
        return EncodecModel.from_pretrained(name, **offline).eval()
    except OSError as error:
        if path.is_dir():
            raise ValueError(
                f"{name!r} is not an EnCodec model folder (no config.json and model.safetensors): "
                f"{str(error).splitlines()[0]}"
            ) from error
        reason = "cannot be reached" if offline else "could not be reached or has no such model"
        raise ValueError(
            f"cannot load {name!r}: the Hugging Face Hub {reason} and it is not in the local cache; pass a local "
            f"folder with --model DIR (encodec-hf convert CHECKPOINT --model NAME --output DIR, or --random PRESET, "
            f"makes one)"
        ) from error


def read_export_config(graphs: Path) -> dict:
    """`graphs/export.json`, checked: a JSON object whose `encoder` and `decoder` name graph files inside `graphs`
    (a plain file name: no folder, no `..`, no absolute path) and whose `num_quantizers` and `bandwidth` are
    numbers; a ValueError naming the field otherwise."""
    path = graphs / EXPORT_CONFIG
    try:
        export_config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); export the model again") from None
    if not isinstance(export_config, dict):
        raise ValueError(f"{path} should hold a JSON object, got {type(export_config).__name__}")
    for key in ("encoder", "decoder"):
        name = export_config.get(key)
        if not isinstance(name, str) or not name or Path(name).name != name or name in (".", ".."):
            raise ValueError(
                f"{path}: {key!r} should name a graph file inside {graphs} (a plain file name), got {name!r}"
            )
        if not (graphs / name).is_file() or (graphs / name).is_symlink():
            raise ValueError(f"{path}: the {key} graph {name!r} is not a file in {graphs}")
    for key in ("num_quantizers", "bandwidth"):
        value = export_config.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"{path}: {key!r} should be a positive number, got {value!r}")
    return export_config


class _ExportedEncodecModel:
    """The shared part of the runners: the exported folder's settings, the two per-chunk steps and `EncodecModel`'s
    entry points around them."""

    format = None  # "onnx" or "openvino"
    training = False  # inference only, as `EncodecModel.eval()`
    dtype = torch.float32  # of the tensors going in and out
    device = torch.device("cpu")  # where tensors go in and out; the runtime runs the graph where it was told

    def __init__(self, config: EncodecConfig, export_config: dict, graphs: Path):
        self.config, self.export_config, self.graphs = config, export_config, graphs
        self._inference_defaults = dict(INFERENCE_DEFAULTS)
        self.language_model = None

    # `EncodecModel`'s entry points and options, on this runner's per-chunk steps
    encode = EncodecModel.encode
    decode = EncodecModel.decode
    forward = __call__ = EncodecModel.forward
    set_inference_defaults = EncodecModel.set_inference_defaults
    inference_defaults = EncodecModel.inference_defaults
    inference_options = EncodecModel.inference_options

    def eval(self):
        return self

    def to(self, device):
        """Tensors go in and out on the CPU; the graphs run where the runtime was told (`from_pretrained`'s
        `providers` or `device`)."""
        if torch.device(device).type != "cpu":
            raise ValueError(
                f"{type(self).__name__} takes and returns CPU tensors, got device {device!r}; choose where the graph "
                f"runs with from_pretrained's providers (ONNX Runtime) or device (OpenVINO)"
            )
        return self

    def weights_digest(self) -> str:
        """SHA-256 of the graph files, the runner's weights (tokenization's fingerprint)."""
        import hashlib

        digest = hashlib.sha256()
        for key in ("encoder", "decoder"):
            path = self.graphs / self.export_config[key]
            digest.update(path.name.encode())
            with open(path, "rb") as source:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()

    @classmethod
    def _open(cls, folder: str | Path) -> tuple[EncodecConfig, dict, Path]:
        folder = Path(folder)
        graphs = folder / cls.format
        if not (folder / "config.json").is_file() or not (graphs / EXPORT_CONFIG).is_file():
            raise ValueError(
                f"{str(folder)!r} is not an exported {cls.format} model: expected config.json and "
                f"{cls.format}/{EXPORT_CONFIG} (written by `encodec-hf export --format {cls.format}`)"
            )
        return EncodecConfig.from_pretrained(folder), read_export_config(graphs), graphs

    def _attach_language_model(self, folder: Path) -> None:
        from .language_model import load_language_model

        self.language_model = load_language_model(folder)

    # -- the per-chunk steps ----------------------------------------------------------------------------------------

    def encode_chunks(self, chunks, num_quantizers, fast_encoding=False, mask=None, on_piece=None):
        # (N, C, T) -> codes (N, Q, F), scales (N, 1) or None; as EncodecModel.encode_chunks on the exact path
        available = self.export_config["num_quantizers"]
        if num_quantizers > available:
            raise ValueError(
                f"this export encodes {available} codebooks (bandwidth {self.export_config['bandwidth']} kbps); "
                f"{num_quantizers} were asked for: export again without --bandwidth, or with a higher one"
            )
        if mask is not None and self.config.normalize:
            raise ValueError(
                "pad_chunks needs the scale of each chunk's real samples, which this export's graph cannot take"
            )
        outputs = self._run(ENCODER_NAME, chunks.detach().float().cpu().numpy())
        codes = torch.from_numpy(outputs[0][:, :num_quantizers].astype(np.int64))  # (N, Q, F)
        scales = torch.from_numpy(outputs[1]).reshape(-1, 1) if self.config.normalize else None  # (N, 1)
        return codes, scales

    def decode_chunks(self, codes, fast_decoding=True):
        # (N, Q, F) -> (N, C, F * hop), before scales; the graph takes transformers' (1, N, Q, F)
        (audio,) = self._run(DECODER_NAME, codes.detach().cpu().numpy().astype(np.int64)[None])
        return torch.from_numpy(audio)

    def _run(self, name: str, array: np.ndarray) -> list:
        raise NotImplementedError  # each runtime's runner


class OnnxEncodecModel(_ExportedEncodecModel):
    """An exported ONNX model run by ONNX Runtime, with `EncodecModel`'s `encode` / `decode` / `forward`.

    `from_pretrained(folder, providers=None, num_threads=None, session_options=None)`: `providers` as ONNX Runtime
    takes them (default: the CPU); `num_threads` sets the sessions' intra-op threads (default: ONNX Runtime's, one
    per physical core)."""

    format = "onnx"

    @classmethod
    def from_pretrained(cls, folder, providers=None, num_threads: int | None = None, session_options=None):
        require_runtime("onnx")
        import onnxruntime

        config, export_config, graphs = cls._open(folder)
        if session_options is None:
            session_options = onnxruntime.SessionOptions()
            if num_threads is not None:
                session_options.intra_op_num_threads = num_threads
        model = cls(config, export_config, graphs)
        model.sessions = {
            name: onnxruntime.InferenceSession(
                str(graphs / export_config[key]), session_options, providers=providers or ["CPUExecutionProvider"]
            )
            for name, key in ((ENCODER_NAME, "encoder"), (DECODER_NAME, "decoder"))
        }
        model._attach_language_model(Path(folder))
        return model

    def _run(self, name: str, array: np.ndarray) -> list:
        session = self.sessions[name]
        return session.run(None, {session.get_inputs()[0].name: array})


class OpenVINOEncodecModel(_ExportedEncodecModel):
    """An exported OpenVINO model, with `EncodecModel`'s `encode` / `decode` / `forward`.

    `from_pretrained(folder, device="CPU", precision="f32", num_threads=None)`: `precision` is OpenVINO's
    INFERENCE_PRECISION_HINT. It is "f32" here because OpenVINO's own default on CPUs with bfloat16 units (AMX,
    AVX512-BF16) is bf16, which changes codes (docs/export.md gives the count); pass "bf16" for that speed."""

    format = "openvino"

    @classmethod
    def from_pretrained(cls, folder, device: str = "CPU", precision: str = "f32", num_threads: int | None = None):
        require_runtime("openvino")
        import openvino

        config, export_config, graphs = cls._open(folder)
        core = openvino.Core()
        properties = {"INFERENCE_PRECISION_HINT": precision}
        if num_threads is not None:
            properties["INFERENCE_NUM_THREADS"] = num_threads
        model = cls(config, export_config, graphs)
        model.compiled = {
            name: core.compile_model(str(graphs / export_config[key]), device, properties)
            for name, key in ((ENCODER_NAME, "encoder"), (DECODER_NAME, "decoder"))
        }
        model._attach_language_model(Path(folder))
        return model

    def _run(self, name: str, array: np.ndarray) -> list:
        compiled = self.compiled[name]
        result = compiled(array)
        return [result[output] for output in compiled.outputs]
