"""Export the encoder and decoder to ONNX (and OpenVINO), weight norm folded, with dynamic batch and time axes.

The graphs are the model's own layers traced by torch's ONNX exporter (`torch.onnx.export(dynamo=True)`); three
layers write their export form themselves (modeling_encodec.py): `_pad1d` pads without branches on the symbolic
length, the LSTM becomes ONNX `LSTM` nodes (the exporter would unroll it for the example's length), and the
quantizer's decoding gathers from the stacked codebooks so that one decoder serves every bandwidth.

Files (`export(model, DIR)`), beside the model's `config.json` and `preprocessor_config.json` (and its language
model, if any, so that .ecdc files with it can be written from the exported models):

    DIR/onnx/encodec_encode.onnx   input_values (batch, channels, samples) float32
                                   -> audio_codes (batch, num_quantizers, frames) int64
                                      [, audio_scales (batch, 1) float32: normalising models (48 kHz)]
    DIR/onnx/encodec_decode.onnx   audio_codes (chunks, batch, codebooks, frames) int64, any codebooks up to the model's
                                   -> audio_values (chunks x batch, channels, frames x hop) float32, before scaling
    DIR/onnx/export.json           what was exported: format, opset, dtype, num_quantizers, file names, versions

OpenVINO (`format="openvino"`) writes `DIR/openvino/encodec_encode.xml/.bin` and `encodec_decode.xml/.bin`, the
same graphs converted by `openvino.convert_model`.

The encoder computes `num_quantizers` codebooks (the bandwidth fixed per file; by default all of them). Codes at a
lower bandwidth are a prefix of those (each codebook quantizes what the previous ones left), so the file serves every
bandwidth up to its own, at the cost of computing codebooks that are then dropped: export with `bandwidth=6.0` when
only 6 kbps is wanted. Each file runs one chunk per batch item; the chunk plan, scales and overlap-add of the 48 kHz
model are done by this package's own functions in the runners of `modeling_onnx.py`. The decoder's input layout is
transformers' `decode` one, `(1, batch, codebooks, frames)` for unchunked models, as transformers.js feeds
`onnx/encodec_decode.onnx` (MusicGen); its output is the audio before each chunk's scale.
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import json
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from .configuration_encodec import EncodecConfig

FORMATS = ("onnx", "openvino")
DTYPES = ("float32", "float16")
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 23, 18  # the dynamo exporter writes opset 18 and later
ENCODER_NAME, DECODER_NAME = "encodec_encode", "encodec_decode"
EXPORT_CONFIG = "export.json"
FORMAT_FOLDERS = {"onnx": "onnx", "openvino": "openvino"}
RUNTIMES = {"onnx": ("onnxruntime", "onnx"), "openvino": ("openvino", "openvino")}  # module, pip extra


def require_runtime(format: str) -> None:
    """A one-line ImportError naming the extra to install when `format`'s runtime is missing."""
    module, extra = RUNTIMES[format]
    needed = [module] + (["onnx", "onnxscript"] if format == "onnx" else [])
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ImportError(
            f"{format} export needs {', '.join(missing)}, not installed: pip install 'encodec-hf[{extra}]'"
        )
    if not hasattr(torch.onnx, "ops"):  # torch.onnx.ops.symbolic_multi_out writes the LSTM nodes
        raise ImportError(f"export needs torch 2.8 or later (for torch.onnx.ops); this is torch {torch.__version__}")


class EncoderGraph(nn.Module):
    """What the exported encoder computes: `EncodecModel.encode_chunks` on a batch of chunks, exact layout.
    (B, C, T) float32 audio -> codes (B, Q, ceil(T / hop)) int64 [, scales (B, 1)]."""

    def __init__(self, model, num_quantizers: int):
        super().__init__()
        self.model, self.num_quantizers = model, num_quantizers

    def forward(self, input_values: torch.Tensor):
        codes, scales = self.model.encode_chunks(input_values, self.num_quantizers)
        return codes if scales is None else (codes, scales)


class DecoderGraph(nn.Module):
    """What the exported decoder computes: `EncodecModel.decode_chunks`, exact layout, on every chunk of every item.
    (K, B, Q, F) int64 codes -> (K * B, C, F * hop) float32 audio, before the chunks' scales."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, audio_codes: torch.Tensor):
        chunks, batch, quantizers, frames = audio_codes.shape
        return self.model.decode_chunks(audio_codes.reshape(chunks * batch, quantizers, frames), fast_decoding=False)


def folded_copy(model):
    """A float32 copy of `model` in eval mode with weight norm folded into plain weights (what converters read)."""
    # A new model rather than a deep copy: a copy shares the parametrized classes that torch makes per module, and
    # removing the parametrization from the copy would remove it from `model` too.
    folded = type(model)(copy.deepcopy(model.config)).float().eval()
    folded.load_state_dict({name: value.float() for name, value in model.state_dict().items()})
    for module in folded.modules():
        if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
            torch.nn.utils.parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return folded


def _export_graph(graph: nn.Module, example, dynamic_shapes, names: tuple, path: Path, opset: int) -> None:
    import onnx

    inputs, outputs = names
    # The exporter narrates its steps on stdout and logs notes on its own internals (torchvision absent, ops it does
    # not fold): none of them is about the model, so they are kept out of the caller's output.
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            program = _torch_export(graph, example, dynamic_shapes, inputs, outputs, opset)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))


def _torch_export(graph, example, dynamic_shapes, inputs, outputs, opset):
    return torch.onnx.export(
        graph,
        (example,),
        dynamo=True,
        input_names=list(inputs),
        output_names=list(outputs),
        dynamic_shapes=dynamic_shapes,
        opset_version=opset,
        optimize=True,
        verify=False,
        report=False,
    )


def export(
    model,
    output_dir: str | Path,
    format: str = "onnx",
    opset: int = DEFAULT_OPSET,
    dtype: str = "float32",
    bandwidth: float | None = None,
) -> Path:
    """Export `model` (an `EncodecModel`, or a folder or Hub id it loads from) to `output_dir`; returns the folder
    that holds the graphs (`output_dir/onnx` or `output_dir/openvino`).

    `bandwidth` fixes the encoder's codebooks (None: all, which serves every bandwidth); `dtype="float16"` stores
    float16 weights with float32 inputs and outputs (ONNX only)."""
    from .modeling_encodec import EncodecModel

    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {MAX_OPSET} (torch's exporter), got {opset!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "float16" and format != "onnx":
        raise ValueError("dtype float16 is for ONNX files; OpenVINO picks its precision when it compiles")
    require_runtime("onnx")
    if format == "openvino":
        require_runtime("openvino")
    if not isinstance(model, EncodecModel):
        model = _load(model)
    config: EncodecConfig = model.config
    num_quantizers = config.num_quantizers_for_bandwidth(
        config.target_bandwidths[-1] if bandwidth is None else config.check_bandwidth(bandwidth)
    )
    output_dir = Path(output_dir)
    folder = output_dir / FORMAT_FOLDERS[format]
    folder.mkdir(parents=True, exist_ok=True)
    folded = folded_copy(model)
    if dtype == "float16":
        folded = folded.half()  # inputs and outputs stay float32: encode_chunks and decode_chunks cast

    # Examples: batch 2 and lengths that are not multiples of anything, so that no size is taken for a constant.
    channels = config.audio_channels
    length = config.chunk_length or config.sampling_rate // 2
    audio = 0.1 * torch.randn(2, channels, length + 17, generator=torch.Generator().manual_seed(0))
    codes = torch.randint(0, config.codebook_size, (1, 2, num_quantizers, 7), generator=torch.Generator())
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=1)
    chunks, quantizers = torch.export.Dim("chunks"), torch.export.Dim("codebooks", max=config.num_quantizers)
    frames = torch.export.Dim("frames", min=1)
    encoder_outputs = ("audio_codes",) + (("audio_scales",) if config.normalize else ())

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        _export_graph(
            EncoderGraph(folded, num_quantizers),
            audio,
            {"input_values": {0: batch, 2: samples}},
            (("input_values",), encoder_outputs),
            scratch / f"{ENCODER_NAME}.onnx",
            opset,
        )
        _export_graph(
            DecoderGraph(folded),
            codes,
            {"audio_codes": {0: chunks, 1: batch, 2: quantizers, 3: frames}},
            (("audio_codes",), ("audio_values",)),
            scratch / f"{DECODER_NAME}.onnx",
            opset,
        )
        files = {}
        for name in (ENCODER_NAME, DECODER_NAME):
            source = scratch / f"{name}.onnx"
            if format == "onnx":
                shutil.move(source, folder / f"{name}.onnx")
                files[name] = f"{name}.onnx"
            else:
                import openvino

                # save_model would store float16 weights by default (codes then differ): keep float32
                openvino.save_model(
                    openvino.convert_model(str(source)), str(folder / f"{name}.xml"), compress_to_fp16=False
                )
                files[name] = f"{name}.xml"

    model.config.save_pretrained(output_dir)
    _feature_extractor(config).save_pretrained(output_dir)
    if model.language_model is not None:
        from .language_model import LANGUAGE_MODEL_FOLDER

        model.language_model.save_pretrained(output_dir / LANGUAGE_MODEL_FOLDER)
    summary = {
        "format": format,
        "opset": opset,
        "dtype": dtype,
        "num_quantizers": num_quantizers,
        "bandwidth": config.target_bandwidths[-1] if bandwidth is None else float(bandwidth),
        "encoder": files[ENCODER_NAME],
        "decoder": files[DECODER_NAME],
        "encoder_inputs": ["input_values"],
        "encoder_outputs": list(encoder_outputs),
        "decoder_inputs": ["audio_codes"],
        "decoder_outputs": ["audio_values"],
        "torch": torch.__version__,
    }
    (folder / EXPORT_CONFIG).write_text(json.dumps(summary, indent=2) + "\n")
    return folder


def _feature_extractor(config: EncodecConfig):
    from .processing import EncodecFeatureExtractor

    return EncodecFeatureExtractor.from_model_config(config)


def _load(name_or_path):
    from .modeling_encodec import EncodecModel

    path = Path(str(name_or_path))
    if path.exists() and not (path / "config.json").is_file():
        raise ValueError(f"{str(path)!r} is not a model folder (no config.json); give a model folder or Hub id")
    return EncodecModel.from_pretrained(str(name_or_path)).eval()
