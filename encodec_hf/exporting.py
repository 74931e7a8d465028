"""Export the encoder and decoder to ONNX (and OpenVINO), weight norm folded, with dynamic batch and time axes.

The graphs are the model's own layers traced by torch's ONNX exporter (`torch.onnx.export(dynamo=True)`), in a
copy of the model (`folded_copy`) where three kinds of layer are swapped for export stand-ins defined here (the
layers themselves know offline, streaming and training only): convolutions pad without branches on the symbolic
length (`ExportedConv1d`), the LSTM becomes ONNX `LSTM` nodes (`ExportedLSTMLayers`; the exporter would unroll it
for the example's length), and the quantizer's decoding gathers from the stacked codebooks so that one decoder
serves every bandwidth (`ExportedResidualVectorQuantizer`).

Files (`export(model, DIR)`), beside the model's `config.json` and `preprocessor_config.json` (and its language
model, if any, so that .ecdc files with it can be written from the exported models):

    DIR/onnx/encodec_encode.onnx   input_values (batch, channels, samples) float32
                                   -> audio_codes (batch, num_quantizers, frames) int64
                                      [, audio_scales (batch, 1) float32: normalising models (48 kHz)]
    DIR/onnx/encodec_decode.onnx   audio_codes (chunks, batch, codebooks, frames) int64, any codebooks up to the model's
                                   -> audio_values (chunks x batch, channels, frames x hop) float32, before scaling
    DIR/onnx/export.json           what was exported: format, opset, dtype, num_quantizers, file names, versions

With `streaming=True` (causal models), four more graphs stream frame by frame with explicit state:
`encodec_{encode,decode}_stream_{start,step}.onnx` (docs/export.md gives the protocol).

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
import dataclasses
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
from .layers import EncodecConv1d, EncodecLSTMLayers
from .quantization import EncodecResidualVectorQuantizer

FORMATS = ("onnx", "openvino")
DTYPES = ("float32", "float16")
MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 18, 23, 18  # the dynamo exporter writes opset 18 and later
ENCODER_NAME, DECODER_NAME = "encodec_encode", "encodec_decode"
STREAM_NAMES = (
    "encodec_encode_stream_start",
    "encodec_encode_stream_step",
    "encodec_decode_stream_start",
    "encodec_decode_stream_step",
)
EXPORT_CONFIG = "export.json"
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


# -- export stand-ins: the forms an exported graph needs, swapped into the exporter's own copy of the model -------


def _pad1d_exported(x: torch.Tensor, left: int, right, mode: str, end: int | None = None) -> torch.Tensor:
    """`layers._pad1d` for a (B, C, T) graph whose T (and so `right`) is symbolic: the same values without a branch
    on the length, so that the exported graph takes any length. Each padded end is a gather: position j (in x's
    coordinates) reads x_ext[|j|], mirrored at x_ext's end, where x_ext is x followed by the zeros `_pad1d` appends
    to inputs too short to reflect (as many as the true `left` and `right` ask for). ONNX Runtime's reflect Pad, which
    refuses pads close to the length, is not used.

    `end` (a plain int >= right) pads the end by that many samples instead of `right`: the ones past `right` are
    filler that a caller's convolution never reads (ExportedConv1d pads by stride - 1 >= its symbolic extra). Then no
    tensor is sized by a symbolic amount: torch's exporter specialises the length for an arange of `right` (even for
    a check that right >= 0), and a slice of it makes tracing slow (a minute for the 24 kHz model, 20 s without).

    Example: x = [a, b] padded 3 left, 0 right: x_ext = [a, b, 0, 0] (2 zeros make it longer than 3), positions
    -3..-1 read x_ext[3, 2, 1] = [0, 0, b]: [0, 0, b, a, b], what `_pad1d` gives."""
    from torch.fx.experimental.symbolic_shapes import statically_known_true

    end = right if end is None else end
    if statically_known_true(left == 0) and statically_known_true(end == 0):
        return x
    if mode != "reflect":
        return nn.functional.pad(x, (left, end), mode)
    length = x.shape[-1]
    extended = length + torch.sym_max(0, torch.sym_max(left, right) - length + 1)  # x_ext's length

    def read(source: torch.Tensor) -> torch.Tensor:  # x_ext at `source`: x, or 0 past its end
        picked = x.index_select(-1, source.clamp(min=0, max=length - 1))
        return torch.where(source < length, picked, torch.zeros((), dtype=x.dtype, device=x.device))

    head = read(torch.arange(left, 0, -1, device=x.device))  # positions -left .. -1
    if statically_known_true(end == 0):
        return torch.cat([head, x], dim=-1)
    position = length + torch.arange(end, device=x.device)  # positions T .. T + end - 1
    return torch.cat([head, x, read(torch.where(position < extended, position, 2 * (extended - 1) - position))], -1)


class ExportedConv1d(EncodecConv1d):
    """`EncodecConv1d` whose padding has no branch on the symbolic length. Offline, the end is padded by a fixed
    stride - 1 >= extra samples: as many windows (the last one starts at the same place) over the same values, and
    no tensor sized by the symbolic `extra`."""

    def _pad(self, hidden_states: torch.Tensor, left: int, right, spare=0) -> torch.Tensor:
        return _pad1d_exported(hidden_states, left, right, self.pad_mode, right + spare)


class ExportedLSTMLayers(EncodecLSTMLayers):
    """`EncodecLSTMLayers` as ONNX `LSTM` nodes, one a layer."""

    def forward(self, sequence: torch.Tensor, state: tuple | None = None, stepwise: bool = False):
        # (T, B, input_size) -> (T, B, hidden_size), and the final (h, c), each (num_layers, B, hidden_size)
        if state is None:
            zeros = sequence.new_zeros(self.num_layers, sequence.shape[1], self.hidden_size)
            state = (zeros, zeros)
        return self._onnx_lstm(sequence, state, self.flat_weights())

    def _onnx_lstm(self, sequence: torch.Tensor, state: tuple, weights: list):
        """torch.lstm as ONNX `LSTM` nodes, one a layer, while exporting: torch's exporter would unroll the
        recurrence for the example's length (and freeze it). ONNX orders the gates i, o, f, c where torch orders
        i, f, g, o; both biases go in one (1, 8H) input. ONNX Runtime's kernel sums in another order than torch's:
        outputs within about 1e-6."""
        hidden_size, hidden, cell = self.hidden_size, [], []
        steps, batch = sequence.shape[0], sequence.shape[1]
        dtype = sequence.dtype  # float16 exports run their LSTM in float32: ONNX Runtime has no float16 LSTM on CPU
        sequence, weights = sequence.float(), [weight.float() for weight in weights]
        state = (state[0].float(), state[1].float())
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]

            def reorder(tensor):
                i, f, g, o = tensor.chunk(4, dim=0)
                return torch.cat([i, o, f, g], dim=0).unsqueeze(0)

            bias = torch.cat([reorder(b_ih), reorder(b_hh)], dim=1)  # (1, 8H)
            h0, c0 = state[0][layer : layer + 1], state[1][layer : layer + 1]  # (1, B, H)
            inputs = (sequence, reorder(w_ih), reorder(w_hh), bias, None, h0, c0)
            attrs = {"hidden_size": hidden_size}
            shapes = [(steps, 1, batch, hidden_size), (1, batch, hidden_size), (1, batch, hidden_size)]
            out, h_n, c_n = torch.onnx.ops.symbolic_multi_out(
                "::LSTM", inputs, attrs, dtypes=[sequence.dtype] * 3, shapes=shapes, version=14
            )
            sequence = out.squeeze(1)  # Y (T, 1, B, H) -> (T, B, H)
            hidden.append(h_n[0])
            cell.append(c_n[0])
        return sequence.to(dtype), (torch.stack(hidden).to(dtype), torch.stack(cell).to(dtype))


class ExportedResidualVectorQuantizer(EncodecResidualVectorQuantizer):
    """The number of codebooks is symbolic in an exported decoder (one file serves every bandwidth): decoding is the
    same sum, as one gather from the stacked codebooks and a reduction (rounding within about 1e-7)."""

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        # (num_quantizers, B, F) -> (B, D, F)
        table = torch.stack([layer.codebook.embed for layer in self.layers])  # (Q_max, K, D)
        picks = torch.arange(codes.shape[0], device=codes.device)[:, None, None]  # (Q, 1, 1)
        return table[picks, codes].sum(0).permute(0, 2, 1)  # (Q, B, F, D) -> (B, D, F)


EXPORT_STAND_INS = {
    EncodecConv1d: ExportedConv1d,
    EncodecLSTMLayers: ExportedLSTMLayers,
    EncodecResidualVectorQuantizer: ExportedResidualVectorQuantizer,
}


class EncoderGraph(nn.Module):
    """What the exported encoder computes: `EncodecModel.encode_chunks` on a batch of chunks, exact layout, whole
    (never in pieces: the graph takes any length).
    (B, C, T) float32 audio -> codes (B, Q, ceil(T / hop)) int64 [, scales (B, 1)]."""

    def __init__(self, model, num_quantizers: int):
        super().__init__()
        self.model, self.num_quantizers = model, num_quantizers

    def forward(self, input_values: torch.Tensor):
        codes, scales = self.model.encode_chunks(input_values, self.num_quantizers, in_pieces=False)
        return codes if scales is None else (codes, scales)


class DecoderGraph(nn.Module):
    """What the exported decoder computes: `EncodecModel.decode_chunks`, exact layout, on every chunk of every item.
    (K, B, Q, F) int64 codes -> (K * B, C, F * hop) float32 audio, before the chunks' scales."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, audio_codes: torch.Tensor):
        chunks, batch, quantizers, frames = audio_codes.shape
        codes = audio_codes.reshape(chunks * batch, quantizers, frames)
        return self.model.decode_chunks(codes, fast_decoding=False, in_pieces=False)


# -- frame streams: step models with explicit state --------------------------------------------------------------
#
# The layers' own streaming (`forward(x, state=...)`, the code `StreamEncoder` / `StreamDecoder` run) traced for a fixed
# push: the start of a stream (the first `start_frames` frames, which the reflect padding at the start of the first
# and last convolutions needs before any output is final) and then one frame at a time. The state objects' tensors
# are the graphs' extra inputs and outputs, in a fixed order; the rest of each state (counters, flags) is the same
# after every one-frame step, so it is part of the graph. Batch 1.


def state_tensors(states) -> list:
    """The tensors of streaming states (lists, tuples and state dataclasses nested), depth first, empty ones left
    out: a step graph's state inputs and outputs, in order."""
    found = []

    def walk(value):
        if isinstance(value, torch.Tensor):
            if value.numel():
                found.append(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        elif dataclasses.is_dataclass(value):
            for item in dataclasses.fields(value):
                walk(getattr(value, item.name))

    walk(states)
    return found


def with_state_tensors(template, tensors) -> list:
    """A copy of the states `template` with its non-empty tensors replaced, in `state_tensors`' order."""
    remaining = iter(tensors)

    def build(value):
        if isinstance(value, torch.Tensor):
            return next(remaining) if value.numel() else value
        if isinstance(value, list):
            return [build(item) for item in value]
        if isinstance(value, tuple):
            return tuple(build(item) for item in value)
        if dataclasses.is_dataclass(value):
            return dataclasses.replace(
                value, **{f.name: build(getattr(value, f.name)) for f in dataclasses.fields(value)}
            )
        return value

    return build(template)


class StreamEncoderGraph(nn.Module):
    """Start (`template=None`): (1, C, start_frames x hop) audio -> codes (1, Q, start_frames) and the state tensors.
    Step: (1, C, hop) audio and the state tensors -> codes (1, Q, 1) and the next state tensors."""

    def __init__(self, model, num_quantizers: int, template=None):
        super().__init__()
        self.model, self.num_quantizers, self.template = model, num_quantizers, template

    def forward(self, input_values, *state):
        states = self.model.encoder.init_states() if self.template is None else with_state_tensors(self.template, state)
        embeddings = self.model.encoder(input_values, states=states)  # (1, D, frames)
        codes = self.model.quantizer.encode(embeddings, self.num_quantizers).transpose(0, 1)
        return (codes, *state_tensors(states))


class StreamDecoderGraph(nn.Module):
    """Start: codes (1, Q, start_frames) -> audio (1, C, start_frames x hop) and the state tensors. Step: codes
    (1, Q, 1) and the state tensors -> audio (1, C, hop) and the next state tensors."""

    def __init__(self, model, template=None):
        super().__init__()
        self.model, self.template = model, template

    def forward(self, audio_codes, *state):
        states = self.model.decoder.init_states() if self.template is None else with_state_tensors(self.template, state)
        embeddings = self.model.quantizer.decode(audio_codes.transpose(0, 1))  # (1, D, frames)
        return (self.model.decoder(embeddings.to(self.model.dtype), states=states).float(), *state_tensors(states))


def stream_start_frames(model, limit: int = 64) -> int:
    """Frames a causal model's frame stream needs before its first output: the encoder's first code and the
    decoder's first sample are final once this many frames are in (7 for the 24 kHz model: its first and last
    convolutions reflect-pad 6 inputs at the start). Found by pushing frames into the layers' streams."""
    hop, config = model.config.hop_length, model.config
    with torch.no_grad():
        states = model.encoder.init_states()
        for count in range(1, limit + 1):
            out = model.encoder(torch.zeros(1, config.audio_channels, hop), states=states)
            if out.shape[-1]:
                if out.shape[-1] != count:
                    raise ValueError(f"this model's stream emits {out.shape[-1]} frames after {count}; expected all")
                return count
    raise ValueError(f"this model's stream emitted nothing in {limit} frames")


def _stream_graphs(model, num_quantizers: int) -> tuple[list, dict]:
    """The four step models, with their examples and names, and what a caller needs to know of them."""
    config, hop = model.config, model.config.hop_length
    start = stream_start_frames(model)
    generator = torch.Generator().manual_seed(0)
    audio = 0.1 * torch.randn(1, config.audio_channels, (start + 1) * hop, generator=generator)
    codes = torch.randint(0, config.codebook_size, (1, num_quantizers, start + 1), generator=generator)
    with torch.no_grad():
        # The state after the start, as the template of every later one (checked: a step keeps its shapes).
        encoder_states, decoder_states = model.encoder.init_states(), model.decoder.init_states()
        model.encoder(audio[..., : start * hop], states=encoder_states)
        model.decoder(model.quantizer.decode(codes[..., :start].transpose(0, 1)), states=decoder_states)
        encoder_state, decoder_state = state_tensors(encoder_states), state_tensors(decoder_states)
        for template, graph, example in (
            (encoder_states, StreamEncoderGraph(model, num_quantizers, encoder_states), audio[..., start * hop :]),
            (decoder_states, StreamDecoderGraph(model, decoder_states), codes[..., start:]),
        ):
            before = [tuple(t.shape) for t in state_tensors(template)]
            after = [tuple(t.shape) for t in graph(example, *state_tensors(template))[1:]]
            if before != after:
                raise ValueError(f"a one-frame step changes the stream state's shapes ({before} -> {after})")

    def names(prefix, count):
        return tuple(f"{prefix}_{index}" for index in range(count))

    encoder_in, decoder_in = names("state", len(encoder_state)), names("state", len(decoder_state))
    encoder_out, decoder_out = names("next_state", len(encoder_state)), names("next_state", len(decoder_state))
    graphs = [
        (
            STREAM_NAMES[0],
            StreamEncoderGraph(model, num_quantizers),
            (audio[..., : start * hop],),
            None,
            (("input_values",), ("audio_codes", *encoder_out)),
        ),
        (
            STREAM_NAMES[1],
            StreamEncoderGraph(model, num_quantizers, encoder_states),
            (audio[..., start * hop :], *encoder_state),
            None,
            (("input_values", *encoder_in), ("audio_codes", *encoder_out)),
        ),
        (
            STREAM_NAMES[2],
            StreamDecoderGraph(model),
            (codes[..., :start],),
            None,
            (("audio_codes",), ("audio_values", *decoder_out)),
        ),
        (
            STREAM_NAMES[3],
            StreamDecoderGraph(model, decoder_states),
            (codes[..., start:], *decoder_state),
            None,
            (("audio_codes", *decoder_in), ("audio_values", *decoder_out)),
        ),
    ]
    summary = {
        "start_frames": start,
        "hop_length": hop,
        "num_quantizers": num_quantizers,
        "encoder_states": len(encoder_state),
        "decoder_states": len(decoder_state),
    }
    return graphs, summary


def folded_copy(model):
    """A float32 copy of `model` in eval mode with weight norm folded into plain weights (what converters read) and
    the export stand-ins in place of the layers they stand for."""
    # A new model rather than a deep copy: a copy shares the parametrized classes that torch makes per module, and
    # removing the parametrization from the copy would remove it from `model` too.
    folded = type(model)(copy.deepcopy(model.config)).float().eval()
    folded.load_state_dict({name: value.float() for name, value in model.state_dict().items()})
    for module in folded.modules():
        if hasattr(module, "parametrizations") and "weight" in module.parametrizations:
            torch.nn.utils.parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    for module in folded.modules():
        stand_in = EXPORT_STAND_INS.get(type(module))
        if stand_in is not None:
            module.__class__ = stand_in  # the same attributes and weights; only the forms differ
    return folded


def _export_graph(graph: nn.Module, examples: tuple, dynamic_shapes, names: tuple, path: Path, opset: int) -> None:
    import onnx

    inputs, outputs = names
    # The exporter narrates its steps on stdout and logs notes on its own internals (torchvision absent, ops it does
    # not fold): none of them is about the model, so they are kept out of the caller's output.
    quiet = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with (
            torch.no_grad(),
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            _export_flags(),
        ):
            warnings.simplefilter("ignore")
            program = _torch_export(graph, examples, dynamic_shapes, inputs, outputs, opset)
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    program.save(str(path), external_data=False)
    onnx.checker.check_model(str(path))


@contextlib.contextmanager
def _export_flags():
    """Global flags around torch's exporter, put back afterwards whatever happens.

    - torch.export reads cuDNN's TF32 flag through the old API, which raises once the new API has set the
      convolution or RNN precision (`torch.backends.cudnn.conv.fp32_precision = "ieee"`, docs/gpu.md's advice). The
      graph does not depend on them (nothing runs on cuDNN while tracing): both are PyTorch's defaults meanwhile.
    - An export that fails inside torch leaves `torch.backends.mkldnn.enabled` False (torch 2.13, found when a
      failed export made later PyTorch codes differ from transformers'): convolutions would then run without
      oneDNN, slower and with other rounding. The flag is restored.
    """
    mkldnn = torch.backends.mkldnn.enabled
    cudnn = getattr(torch.backends, "cudnn", None)
    saved = None
    if hasattr(getattr(cudnn, "conv", None), "fp32_precision") and hasattr(
        getattr(cudnn, "rnn", None), "fp32_precision"
    ):
        saved = (cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision)
        cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = "tf32"
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = mkldnn
        if saved is not None:
            cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision = saved


def _torch_export(graph, examples, dynamic_shapes, inputs, outputs, opset):
    return torch.onnx.export(
        graph,
        examples,
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
    streaming: bool = False,
    progress=None,
) -> Path:
    """Export `model` (an `EncodecModel`, or a folder or Hub id it loads from) to `output_dir`; returns the folder
    that holds the graphs (`output_dir/onnx` or `output_dir/openvino`).

    `bandwidth` fixes the encoder's codebooks (None: all, which serves every bandwidth); `dtype="float16"` stores
    float16 weights with float32 inputs and outputs (ONNX only); `streaming=True` (causal models) adds the step
    models of frame streams (`_stream_graphs`). `progress(line)` is told of each graph as its export starts
    (the command line prints these: a full-size model takes minutes)."""
    from .modeling_encodec import EncodecModel

    _check_export_arguments(format, opset, dtype)
    if not isinstance(model, EncodecModel):
        model = EncodecModel.from_pretrained(str(model)).eval()  # a folder without config.json: a ValueError
    config: EncodecConfig = model.config
    if streaming and (not config.use_causal_conv or config.chunk_length is not None):
        raise ValueError("streaming step models need a causal model (the 24 kHz one); this model is not causal")
    num_quantizers = config.num_quantizers_for_bandwidth(
        config.target_bandwidths[-1] if bandwidth is None else config.check_bandwidth(bandwidth)
    )
    output_dir = Path(output_dir)
    folder = output_dir / format  # the graphs' folder is named after the format
    folder.mkdir(parents=True, exist_ok=True)
    folded = folded_copy(model)
    if dtype == "float16":
        folded = folded.half()  # inputs and outputs stay float32: encode_chunks and decode_chunks cast

    graphs = _offline_graphs(folded, num_quantizers)
    stream_summary = {}
    if streaming:
        stream_graphs, stream_summary = _stream_graphs(folded, num_quantizers)
        graphs += stream_graphs

    files = _write_graphs(graphs, folder, format, opset, progress)

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
        "encoder_outputs": list(_encoder_outputs(config)),
        "decoder_inputs": ["audio_codes"],
        "decoder_outputs": ["audio_values"],
        "torch": torch.__version__,
    }
    if streaming:
        summary["streaming"] = {**stream_summary, **{name: files[name] for name in STREAM_NAMES}}
    (folder / EXPORT_CONFIG).write_text(json.dumps(summary, indent=2) + "\n")
    return folder


def _check_export_arguments(format: str, opset, dtype: str) -> None:
    """The options of `export`, before anything is built; the runtimes it needs are installed."""
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


def _encoder_outputs(config: EncodecConfig) -> tuple[str, ...]:
    return ("audio_codes",) + (("audio_scales",) if config.normalize else ())


def _offline_graphs(folded, num_quantizers: int) -> list:
    """The encoder and decoder graphs with their examples, dynamic shapes and input / output names."""
    # Examples: batch 2 and lengths that are not multiples of anything, so that no size is taken for a constant.
    config = folded.config
    channels = config.audio_channels
    length = config.chunk_length or config.sampling_rate // 2
    audio = 0.1 * torch.randn(2, channels, length + 17, generator=torch.Generator().manual_seed(0))
    # the decoder takes any codebook count up to the model's: an example of 2 (a dimension of 1 would be frozen)
    example_quantizers = min(2, config.num_quantizers)
    codes = torch.randint(0, config.codebook_size, (1, 2, example_quantizers, 7), generator=torch.Generator())
    batch, samples = torch.export.Dim("batch"), torch.export.Dim("samples", min=1)
    chunks = torch.export.Dim("chunks")
    # a one-codebook model's decoder takes exactly one (torch.export keeps no dimension whose only size is 1)
    quantizers = torch.export.Dim("codebooks", max=config.num_quantizers) if config.num_quantizers > 1 else None
    frames = torch.export.Dim("frames", min=1)

    return [
        (
            ENCODER_NAME,
            EncoderGraph(folded, num_quantizers),
            (audio,),
            {"input_values": {0: batch, 2: samples}},
            (("input_values",), _encoder_outputs(config)),
        ),
        (
            DECODER_NAME,
            DecoderGraph(folded),
            (codes,),
            {"audio_codes": {0: chunks, 1: batch, 3: frames, **({2: quantizers} if quantizers else {})}},
            (("audio_codes",), ("audio_values",)),
        ),
    ]


def _write_graphs(graphs: list, folder: Path, format: str, opset: int, progress) -> dict:
    """Export each graph to `folder` in `format`; returns {graph name: file name}."""
    files = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for index, (name, graph, examples, dynamic_shapes, names) in enumerate(graphs):
            if progress is not None:
                progress(f"exporting {name} ({index + 1} of {len(graphs)}, {format})")
            source = scratch / f"{name}.onnx"
            _export_graph(graph, examples, dynamic_shapes, names, source, opset)
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
    return files


def _feature_extractor(config: EncodecConfig):
    from .processing import EncodecFeatureExtractor

    return EncodecFeatureExtractor.from_model_config(config)
