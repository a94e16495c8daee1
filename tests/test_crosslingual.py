"""Cross-lingual retrieval with the default, multilingual embedder (USE v3 from PyPI, pinned in rag/default.yaml).

The real model, FAISS and BM25 over real files: case 11 (English and French questions about German documents), a
German question over English (XQuAD) and French passages. The fusion rule itself is also pinned down on hand-made
score lists, since the real corpora cannot show every branch."""

from __future__ import annotations

import json
from contextlib import closing
from pathlib import Path

import pytest
from pydantic import ValidationError

from rag.errors import ConfigError
from rag.retrieve import fuse

from .conftest import ROOT, SHARED_DATA, shared

CASE_11 = SHARED_DATA.parent / "cases" / "11-cross-language-question"
ENGLISH = ROOT / "configs" / "english.yaml"


@pytest.fixture
def pipeline(make_settings, embedder):
    from rag.pipeline import Pipeline

    with closing(Pipeline(make_settings(), embedder=embedder)) as pipeline:
        yield pipeline


def _case_11() -> Path:
    if not CASE_11.is_dir():
        pytest.skip(f"shared cases not available: {CASE_11}")
    return CASE_11


@pytest.mark.parametrize("question", [
    "What is the notice period for terminating the employment contract?",
    "Quel est le délai de préavis pour résilier le contrat de travail ?",
])
def test_case_11_a_question_in_english_or_french_finds_the_german_passage(pipeline, question):
    report = pipeline.ingest([_case_11()], progress=False)
    assert not report.failed and len(report.added) == 4
    hits = pipeline.retriever.search(question, k=3)
    assert all(hit.chunk.lang == "de" and hit.bm25_rank is None for hit in hits)  # no word in common: dense alone
    assert any("Die Kündigungsfrist beträgt" in hit.chunk.text for hit in hits[:2])
    assert hits[0].chunk.source.endswith("arbeitsvertrag.md")


def test_a_german_question_finds_the_english_and_the_french_passage(pipeline):
    from rag.eval.datasets import text_document

    english = json.loads(shared("qa/xquad/xquad.en.json").read_text())["data"]
    german = json.loads(shared("qa/xquad/xquad.de.json").read_text())["data"]
    paragraphs = [p for article in english[:8] for p in article["paragraphs"][:3]]  # 24 paragraphs, 8 subjects
    french = {
        "fr/conges": "Congés annuels. Chaque salarié à temps plein a droit à vingt-huit jours de congé payé par an.",
        "fr/cantine": "La cantine du personnel est ouverte de midi à quatorze heures, du lundi au vendredi.",
        "fr/parking": "Le parking souterrain est réservé aux véhicules de service et aux visiteurs enregistrés.",
    }
    documents = [text_document(f"en/{i}", "XQuAD", p["context"]) for i, p in enumerate(paragraphs)]
    documents += [text_document(source, "Règlement interne", text) for source, text in french.items()]
    pipeline.ingest_documents(documents, progress=False)

    asked = german[5]["paragraphs"][1]["qas"][0]["question"]  # the German version of a question on paragraph 16
    gold = paragraphs.index(english[5]["paragraphs"][1])
    assert [h.chunk.source for h in pipeline.retriever.search(asked, k=1)] == [f"en/{gold}"]
    holidays = pipeline.retriever.search("Wie viele Urlaubstage haben Vollzeitbeschäftigte im Jahr?", k=1)
    assert holidays[0].chunk.source == "fr/conges"


def test_passages_in_another_language_take_the_across_weight():
    dense = [(1, 0.9), (2, 0.5), (3, 0.1)]
    lexical = [(2, 10.0), (3, 5.0)]  # passage 1 (the best dense match) shares no word with the question
    assert [cid for cid, _ in fuse(dense, lexical, 0.2)] == [2, 3, 1]
    # 1 and 3 are written in another language: their BM25 (names, numbers) no longer outweighs the dense ranking
    fused = dict(fuse(dense, lexical, 0.2, across=frozenset({1, 3}), across_weight=1.0))
    assert fused == pytest.approx({1: 1.0, 2: 0.2 * 0.5 + 0.8 * 1.0, 3: 0.0})


def test_the_default_model_is_pinned_and_runs_on_its_own_runtime(tmp_path, monkeypatch):
    from rag.embed import Embedder
    from rag.settings import EmbedderSettings, load_settings
    from rag.verify import verify_embedder

    settings = load_settings(index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    assert (settings.embedder.model, settings.embedder.backend) == ("use-multilingual-v3", "numpy")
    folder, fingerprint, _ = verify_embedder(settings)
    assert fingerprint == settings.embedder.sha256 and folder.name == "resources"
    with pytest.raises(ValidationError, match="runs on numpy alone"):
        EmbedderSettings(backend="onnx")
    monkeypatch.setenv("RAG_EMBEDDER__BACKEND", "onnx-int8")
    with pytest.raises(ConfigError, match="runs on numpy alone: set embedder.backend to numpy"):
        load_settings(index_dir=tmp_path / "index")
    tampered = settings.embedder.model_copy(update={"file_sha256": {**settings.embedder.file_sha256,
                                                                    "weights.npz": "0" * 64}})
    with pytest.raises(ConfigError, match="weights.npz"):
        Embedder(tampered).model  # noqa: B018 - loads


def test_the_english_configuration_pins_minilm_on_its_int8_graph(tmp_path):
    from rag.settings import BUNDLED, load_settings
    from rag.verify import verify_embedder

    settings = load_settings(ENGLISH, index_dir=tmp_path / "index", data_dir=tmp_path / "data")
    assert (settings.embedder.model, settings.embedder.backend) == (BUNDLED, "onnx-int8")
    assert settings.retrieval.dense_weight == {"en": 0.5, "default": 0.2}
    assert settings.retrieval.dense_weight_across is None
    assert verify_embedder(settings)[1] == settings.embedder.sha256


def test_the_embedder_counts_its_own_pieces_and_embeds_unit_vectors(embedder):
    info = embedder.info
    assert (info.name, info.dim, info.backend) == ("use-multilingual-v3", 512, "numpy")
    vectors = embedder.encode(
        ["Die Kündigungsfrist beträgt drei Monate.", "The notice period is three months.", "La cantine ouvre à midi."]
    )
    assert vectors.shape == (3, 512)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    short, long = embedder.count_tokens(["Frist", "Die Kündigungsfrist beträgt drei Monate."])
    assert 0 < short < long
