"""ONNX Runtime backends of the embedder (`embedder.backend: onnx | onnx-int8`), built locally from the pinned model.

sentence-transformers' own ONNX export needs optimum-onnx, which pins a transformers older than the one
sentence-transformers 6 requires, so the export is done here, from the same checked files the torch backend loads:

    <data_dir>/onnx/<fingerprint[:16]>/model.onnx        transformer + mean pooling + L2 norm, fp32
    <data_dir>/onnx/<fingerprint[:16]>/model-int8.onnx   the same, int8 (7-bit weights), one graph for every CPU

Both are derived artefacts, made on first use (after the source files passed their pins) and reused after: written
to a temporary name under a lock, fsynced and renamed, so a killed export leaves nothing half-written and two
processes do not export at once. The session runs from the bytes that were hashed, so the sha256 in the index
manifest is that of the graph actually used. Export and quantisation are deterministic: the same pinned model and
packages give the same bytes on any machine (tests/test_embed_onnx.py), so an index built on one opens on another,
and a graph that differs (other package versions) is refused by the manifest check instead of mixing vectors.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import ConfigError
from .files import create_once

if TYPE_CHECKING:
    import torch
    from onnx import ModelProto
    from sentence_transformers import SentenceTransformer
    from transformers import PreTrainedModel

log = logging.getLogger("rag.embed")

INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")
# Short texts in the product's four languages, written for this purpose (no evaluation data): they only need to
# reach the activations' usual peaks, which belong to the model's weights more than to any text.
CALIBRATION = Path(__file__).with_name("onnx_calibration.txt")
SPLIT_ABOVE = 3.0  # a channel whose peak exceeds this many times the median channel's is split
# One int8 graph for every CPU, with 7-bit weights. ONNX Runtime's u8s8 kernel on x86 without VNNI (AVX2, AVX-512F)
# adds pairs of u8 x s8 products in 16 bits, which saturate with 8-bit weights (2 x 255 x 127 > 32767) and not with
# 7-bit ones (2 x 255 x 64 <= 32767): with them every kernel (AVX2, VNNI, ARM dot products) computes the same
# integers, so the vectors, and the retrieval quality measured in docs/benchmarks.md, do not depend on the CPU.
REDUCE_RANGE = True


class OnnxBackend:
    """Runs the exported graph; tokenisation is the sentence-transformers model's own, so inputs are identical."""

    def __init__(self, model: SentenceTransformer, path: Path, threads: int | None):
        import onnxruntime as ort

        graph = path.read_bytes()
        self.sha256: str | None = hashlib.sha256(graph).hexdigest()
        self.path = path
        self._model = model
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # Spinning threads wait for work by burning CPU: on a machine shared with the parser thread and other
        # jobs that time is taken from them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length float32 vectors, shape (len(texts), dim): pooling and normalisation run inside the graph."""
        features = self._model.preprocess(list(texts))
        feed = {name: features[name].numpy() for name in self._inputs}
        return self._session.run(None, feed)[0]


def onnx_path(model: SentenceTransformer, data_dir: Path, fingerprint: str, backend: str) -> Path:
    """The graph for `backend`, exported (and quantised) now if this model has none yet."""
    folder = Path(data_dir) / "onnx" / fingerprint[:16]
    fp32 = folder / "model.onnx"
    create_once(fp32, lambda out: export_fp32(model, out))
    if backend == "onnx":
        return fp32
    int8 = folder / "model-int8.onnx"
    create_once(int8, lambda out: quantise(model, fp32, out))
    return int8


def export_fp32(model: SentenceTransformer, out: Path) -> None:
    """Transformer, mean pooling and L2 normalisation as one graph, with ONNX Runtime's BERT fusions applied."""
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    _check_supported(model)
    # sentence-transformers' Transformer module holds a transformers model; torch types attributes as Tensor | Module
    transformer = cast("PreTrainedModel", model[0].auto_model)
    sample = model.preprocess(["A first sample sentence, a little longer than the second.", "A second one."])
    names = [n for n in INPUT_NAMES if n in sample]
    raw = out.with_name(out.name + ".raw")
    # The TorchScript exporter with eager attention gives the graph ONNX Runtime's fusions recognise (fused attention,
    # embedding and skip layer norms): 1.25-1.35x faster than the torch.export graph of the SDPA model (fp32, int8).
    attention = transformer.config._attn_implementation
    transformer.set_attn_implementation("eager")
    try:
        # The tracer warns that shape checks in transformers' masking become constants: they hold for every shape
        # (no padding offset, no causal mask), which tests/test_embed_onnx.py checks against torch on varied batches.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _mean_pooled(transformer, names),
                tuple(sample[n] for n in names),
                str(raw),
                input_names=names,
                output_names=["sentence_embedding"],
                opset_version=17,
                dynamo=False,
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in names},
            )
        config = transformer.config
        fused = optimize_model(
            str(raw),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=0,
        )
        fused.save_model_to_file(str(out))
    except Exception as exc:  # exporter and optimiser failures come in many types; all mean "use torch"
        raise ConfigError(f"ONNX export of the embedder failed ({exc}); set embedder.backend: torch") from exc
    finally:
        transformer.set_attn_implementation(attention)
        raw.unlink(missing_ok=True)


def quantise(model: SentenceTransformer, fp32: Path, out: Path) -> None:
    """Dynamic int8 after splitting outlier channels (weights per output channel: per-tensor scales lose too much),
    with the 7-bit weights of the one graph every CPU runs (REDUCE_RANGE)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(fp32))
    split_outlier_channels(graph, channel_peaks(graph, model, calibration_texts()))
    root = logging.getLogger()
    root.addFilter(_no_preprocess_advice)
    try:
        quantize_dynamic(
            graph,
            out,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=REDUCE_RANGE,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # the fused ops' outputs carry no type
        )
    finally:
        root.removeFilter(_no_preprocess_advice)


def calibration_texts() -> list[str]:
    """The paragraphs of onnx_calibration.txt (separated by blank lines) whose activations set the int8 ranges."""
    return [text.strip() for text in CALIBRATION.read_text(encoding="utf-8").split("\n\n") if text.strip()]


def weighted_nodes(graph: ModelProto) -> list:
    """The nodes int8 quantisation turns into integer products: matrix products with a constant weight."""
    constants = {tensor.name for tensor in graph.graph.initializer}
    return [n for n in graph.graph.node if n.op_type in {"MatMul", "Attention"} and n.input[1] in constants]


def channel_peaks(graph: ModelProto, model: SentenceTransformer, texts: list[str]) -> dict[str, np.ndarray]:
    """The largest |activation| per input channel of every weighted node, over the real tokens of `texts`."""
    nodes = weighted_nodes(graph)
    session = session_with_outputs(graph, [n.input[0] for n in nodes])
    names = [i.name for i in session.get_inputs()]
    peaks: dict[str, np.ndarray] = {n.name: np.zeros(()) for n in nodes}
    for start in range(0, len(texts), 8):
        features = model.preprocess(texts[start : start + 8])
        real = features["attention_mask"].numpy().astype(bool)
        activations = session.run(None, {name: features[name].numpy() for name in names})
        for node, values in zip(nodes, activations, strict=True):
            tokens = np.abs(values.reshape((*real.shape, -1))[real])
            peaks[node.name] = np.maximum(peaks[node.name], tokens.max(axis=0))
    return peaks


def session_with_outputs(graph: ModelProto, outputs: list[str]) -> Any:
    """A CPU session over a copy of `graph` whose outputs are the named (float) tensors, intermediate ones included."""
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(graph)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None) for o in outputs)
    return ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])


def split_outlier_channels(graph: ModelProto, peaks: dict[str, np.ndarray]) -> int:
    """Rewrite `graph` so that no input channel of a weighted node peaks far above the others; the result is equal.

    Dynamic quantisation gives an activation tensor one scale, set by its largest value, and a few channels of this
    model peak 10-20x above the rest (hidden channel 99 reaches 28 where the median channel peaks near 2), leaving the
    other channels a handful of int8 steps. A channel x with weight row w is replaced by k copies of x/k, each with
    row w: the product is unchanged, the tensor's range shrinks k-fold and the weights' per-channel scales do not
    move. On PIAF-fr this lifts the int8 vectors' mean cosine to fp32 from 0.991 to 0.997 for ~10% more CPU.
    Returns the number of channels added.
    """
    from onnx import helper, numpy_helper

    weights = {tensor.name: tensor for tensor in graph.graph.initializer}
    added = 0
    for node in weighted_nodes(graph):
        peak = peaks[node.name]
        copies = np.maximum(1, np.ceil(peak / (SPLIT_ABOVE * np.median(peak)))).astype(np.int64)
        extra = np.repeat(np.arange(len(copies)), copies - 1)
        if not len(extra):
            continue
        added += len(extra)
        weight = numpy_helper.to_array(weights[node.input[1]])
        weights[node.input[1]].CopyFrom(numpy_helper.from_array(np.concatenate([weight, weight[extra]]), node.input[1]))
        share, picked = f"{node.name}/split_share", f"{node.name}/split_channels"
        graph.graph.initializer.extend(
            [
                numpy_helper.from_array((1.0 / copies).astype(np.float32), share),
                numpy_helper.from_array(extra, picked),
            ]
        )
        scaled, copied, joined = (f"{node.name}/split_{part}" for part in ("scaled", "copied", "joined"))
        position = list(graph.graph.node).index(node)
        graph.graph.node.insert(position, helper.make_node("Concat", [scaled, copied], [joined], joined, axis=-1))
        graph.graph.node.insert(position, helper.make_node("Gather", [scaled, picked], [copied], copied, axis=-1))
        graph.graph.node.insert(position, helper.make_node("Mul", [node.input[0], share], [scaled], scaled))
        node.input[0] = joined
    return added


def _no_preprocess_advice(record: logging.LogRecord) -> bool:
    """quantize_dynamic advises shape-inference pre-processing, which the fused graph does not need (nor survive)."""
    return not record.getMessage().startswith("Please consider to run pre-processing")


def _check_supported(model: SentenceTransformer) -> None:
    kinds = [type(module).__name__ for module in model]
    if kinds[:2] != ["Transformer", "Pooling"] or model[1].pooling_mode != "mean" or set(kinds[2:]) - {"Normalize"}:
        raise ConfigError(
            f"embedder.backend onnx supports transformer models with mean pooling; this one is {' + '.join(kinds)}; "
            "set embedder.backend: torch"
        )


def _mean_pooled(transformer: torch.nn.Module, names: list[str]) -> torch.nn.Module:
    """The transformer with the pooling and normalisation of the sentence-transformers modules, as one module."""
    import torch

    class MeanPooled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = transformer

        def forward(self, *tensors):
            inputs = dict(zip(names, tensors, strict=True))
            hidden = self.transformer(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return MeanPooled().eval()
