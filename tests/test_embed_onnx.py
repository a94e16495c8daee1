"""The ONNX Runtime backends against the torch one on real text; the CPU-variant choice and atomic export alone."""

from __future__ import annotations

import json
import platform

import numpy as np
import pytest

from rag.embed_onnx import (
    Int8Variant, _derive, cpu_flags, int8_variant, session_with_outputs, split_outlier_channels,
)

from .conftest import shared


# ---------------------------------------------------------------------------------------------- CPU variant (unit)
@pytest.mark.parametrize(
    ("flags", "machine", "expected"),
    [
        ({"avx2", "avx512f", "avx512_vnni", "amx_int8"}, "x86_64", Int8Variant("x86-vnni", reduce_range=False)),
        ({"avx2", "avx_vnni"}, "x86_64", Int8Variant("x86-vnni", reduce_range=False)),
        ({"avx2", "avx512f"}, "x86_64", Int8Variant("x86-avx2", reduce_range=True)),  # Skylake-SP: no VNNI
        ({"avx2"}, "x86_64", Int8Variant("x86-avx2", reduce_range=True)),
        ({"fp", "asimd", "asimddp"}, "aarch64", Int8Variant("arm64", reduce_range=False)),
        ({"sse4_2", "avx"}, "x86_64", None),  # int8 would not pay: fp32 ONNX
        (set(), "riscv64", None),
    ],
)
def test_int8_variant_follows_the_cpu(flags, machine, expected):
    assert int8_variant(flags, machine) == expected


def test_cpu_flags_read_x86_and_arm_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: Xeon\nflags\t\t: fpu avx2 avx512_vnni\n\n"
                   "processor\t: 1\nflags\t: fpu\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd asimddp\nCPU implementer\t: 0x41\n")
    assert cpu_flags(x86) == {"fpu", "avx2", "avx512_vnni"}
    assert cpu_flags(arm) == {"fp", "asimd", "asimddp"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_a_failed_export_leaves_nothing_behind(tmp_path):
    target = tmp_path / "onnx" / "model.onnx"
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / ".model.onnx.999999.tmp").write_bytes(b"half of a killed export")
    (tmp_path / "onnx" / ".model.onnx.999999.tmp.raw").write_bytes(b"and its raw export")

    def crash(out):
        out.write_bytes(b"partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        _derive(target, crash)
    assert sorted(p.name for p in target.parent.iterdir()) == [".lock"]
    _derive(target, lambda out: out.write_bytes(b"graph"))
    _derive(target, lambda out: pytest.fail("an existing file is made again"))
    assert target.read_bytes() == b"graph"


def _run(graph, feed: dict, outputs: list[str]) -> list[np.ndarray]:
    return session_with_outputs(graph, outputs).run(outputs, feed)


def test_split_outlier_channels_keeps_the_product_and_shrinks_the_range():
    import onnx
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(4, 3)).astype(np.float32)
    graph = helper.make_model(helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], "product")], "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, None, 4])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, None, 3])],
        [numpy_helper.from_array(weight, "w")],
    ))
    x = rng.normal(size=(2, 5, 4)).astype(np.float32)
    x[..., 3] *= 10  # the outlier channel
    peaks = np.abs(x).max(axis=(0, 1))

    added = split_outlier_channels(graph, {"product": peaks})

    copies = int(np.ceil(peaks[3] / (3.0 * np.median(peaks))))
    assert copies > 1 and added == copies - 1
    onnx.checker.check_model(graph)
    y, joined = _run(graph, {"x": x}, ["y", "product/split_joined"])
    np.testing.assert_allclose(y, x @ weight, rtol=1e-5, atol=1e-5)
    assert joined.shape[-1] == 4 + added
    assert np.abs(joined).max() <= peaks[3] / copies + 1e-6 < peaks[3]
    assert split_outlier_channels(graph, {"product": np.ones(4 + added)}) == 0  # nothing left to split


def test_onnx_backend_needs_a_data_dir():
    from rag.embed import Embedder
    from rag.errors import ConfigError
    from rag.settings import EmbedderSettings

    with pytest.raises(ConfigError, match="data_dir"):
        Embedder(EmbedderSettings(backend="onnx-int8")).backend


# ---------------------------------------------------------------------------------------------- real model
@pytest.fixture(scope="session")
def sentences() -> list[str]:
    """20 real texts of varied length: XQuAD-en paragraphs (up to the 254-token window) and questions."""
    data = json.loads(shared("qa/xquad/xquad.en.json").read_text())
    paragraphs = [p for article in data["data"] for p in article["paragraphs"]]
    return [p["context"] for p in paragraphs[::24][:10]] + [p["qas"][0]["question"] for p in paragraphs[::24][:10]]


@pytest.fixture(scope="session")
def onnx_embedders(tmp_path_factory):
    """Both ONNX backends, exported once for the session into a scratch data dir."""
    from rag.embed import Embedder
    from rag.settings import EmbedderSettings

    data_dir = tmp_path_factory.mktemp("onnx-data")
    embedders = {b: Embedder(EmbedderSettings(backend=b), data_dir) for b in ("onnx", "onnx-int8")}
    for embedder in embedders.values():
        embedder.info  # exports now
    return embedders


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


# Measured on these 20 texts: fp32 min 0.9999998; int8 with x86 VNNI (8-bit weights) min 0.9968, mean 0.9977
# (without splitting the outlier channels: min 0.9883, mean 0.9933); int8 on AVX2 without VNNI (7-bit weights, the
# `x86-avx2` variant) min 0.9947, mean 0.9964. Each floor sits about 0.001-0.002 below what its variant measured.
INT8_FLOORS = {"x86-vnni": (0.995, 0.997), "arm64": (0.995, 0.997), "x86-avx2": (0.993, 0.995)}


@pytest.mark.integration
@pytest.mark.parametrize("backend", ["onnx", "onnx-int8"])
def test_onnx_vectors_match_torch(embedder, onnx_embedders, sentences, backend):
    variant = int8_variant(cpu_flags(), platform.machine())
    min_cos, mean_cos = (0.9999, 0.9999) if backend == "onnx" or variant is None else INT8_FLOORS[variant.name]
    onnx = onnx_embedders[backend]
    reference = embedder.encode(sentences)
    vectors = onnx.encode(sentences)  # one padded batch
    # Other shapes than the export's sample. Not equal to the batched int8 vectors: dynamic quantisation scales the
    # activations of the whole batch at once, so an int8 vector moves a little with its batch-mates.
    singles = np.vstack([onnx.encode([s]) for s in sentences[:3]])
    assert vectors.shape == reference.shape and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    cosines = _cosines(vectors, reference)
    assert cosines.min() >= min_cos and cosines.mean() >= mean_cos, (cosines.min(), cosines.mean())
    assert _cosines(singles, reference[:3]).min() >= min_cos
    assert onnx.count_tokens(sentences) == embedder.count_tokens(sentences)
    assert max(embedder.count_tokens(sentences)) <= onnx.info.max_tokens  # nothing here is truncated


@pytest.mark.integration
def test_splitting_the_real_graph_keeps_its_vectors(embedder, onnx_embedders, sentences):
    """The rewrite before quantisation changes no fp32 result, and it does split this model's outlier channels."""
    import onnx

    from rag.embed_onnx import calibration_texts, channel_peaks

    graph = onnx.load(str(onnx_embedders["onnx"].backend.path))
    features = embedder.model.preprocess(sentences)
    feed = {i.name: features[i.name].numpy() for i in graph.graph.input}
    before = _run(graph, feed, ["sentence_embedding"])[0]
    assert split_outlier_channels(graph, channel_peaks(graph, embedder.model, calibration_texts())) > 0
    np.testing.assert_allclose(_run(graph, feed, ["sentence_embedding"])[0], before, atol=2e-6)


@pytest.mark.integration
def test_exported_graph_is_reused_not_exported_again(onnx_embedders):
    from rag.embed import Embedder

    first = onnx_embedders["onnx-int8"]
    graphs = sorted(first.backend.path.parent.glob("*.onnx"))
    before = {p: p.stat().st_mtime_ns for p in graphs}
    again = Embedder(first.settings, first.data_dir)
    assert again.info == first.info
    assert again.backend.path == first.backend.path
    assert {p: p.stat().st_mtime_ns for p in graphs} == before
    assert first.info.backend_sha256 != onnx_embedders["onnx"].info.backend_sha256


@pytest.mark.integration
def test_torch_index_refuses_onnx_int8(embedder, onnx_embedders, tmp_path):
    from rag.errors import IndexMismatchError
    from rag.settings import ChunkSettings
    from rag.store import new_manifest
    from rag.store.embedded import IndexStore

    chunking = ChunkSettings().model_dump()
    IndexStore.open(tmp_path, new_manifest(embedder.info.manifest(), chunking)).close()
    int8 = new_manifest(onnx_embedders["onnx-int8"].info.manifest(), chunking)
    assert int8["embedder"]["backend_sha256"] == onnx_embedders["onnx-int8"].info.backend_sha256
    with pytest.raises(IndexMismatchError, match="rag reindex"):
        IndexStore.open(tmp_path, int8)
    assert "backend_sha256" not in embedder.info.manifest()  # indexes built with torch before keep their manifest
