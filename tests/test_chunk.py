"""Chunking: offsets slice back to the text, nothing exceeds the embedder's window, structure is kept."""

from __future__ import annotations

import pytest

from rag.chunk import Chunker
from rag.load import Block, Document, load_document

from .conftest import EXAMPLES, shared


def _words(texts):
    """A whitespace tokenizer: enough to test packing logic without a model."""
    return [len(t.split()) for t in texts]


def _doc(text: str, blocks: list[Block]) -> Document:
    return Document(source="/t/doc.txt", title="T", text=text, format="text", lang="en", sha256="0", blocks=blocks)


def test_packs_blocks_and_never_crosses_headings():
    text = "one two three\n\nfour five\n\nsix seven eight nine"
    blocks = [Block(0, 13, ("Art. 1",)), Block(15, 24, ("Art. 1",)), Block(26, len(text), ("Art. 2",))]
    chunks = Chunker(_words, max_tokens=10, overlap_tokens=0).split(_doc(text, blocks))
    assert [(c.text, c.heading_path) for c in chunks] == [
        ("one two three\n\nfour five", ("Art. 1",)),
        ("six seven eight nine", ("Art. 2",)),
    ]


def test_long_block_splits_by_sentence_with_overlap():
    sentences = [f"Sentence {i} has five words." for i in range(12)]
    text = " ".join(sentences)
    chunks = Chunker(_words, max_tokens=16, overlap_tokens=5).split(_doc(text, [Block(0, len(text))]))
    assert len(chunks) > 3
    for before, after in zip(chunks, chunks[1:]):
        assert after.start < before.end, "consecutive chunks share the overlap"
        assert after.start > before.start
    assert chunks[0].start == 0 and chunks[-1].end == len(text)
    assert all(len(c.text.split()) <= 16 for c in chunks)


def test_giant_word_is_cut_not_dropped():
    text = "x" * 500
    chunks = Chunker(lambda ts: [len(t) // 4 + 1 for t in ts], 20, 0).split(_doc(text, [Block(0, 500)]))
    assert "".join(c.text for c in chunks) == text


@pytest.mark.integration
def test_real_documents_fit_the_embedder_window(embedder):
    paths = sorted(EXAMPLES.iterdir())
    paths.append(shared("corpus/gdpr/gdpr-consolidated-with-corrected-preamble-fr.xml"))
    paths.append(shared("corpus/legilux/works/constitution-1868-10-17-n1/versions/2023-07-01/de.xml"))
    paths.append(next(shared("corpus/legilux/works").rglob("*.pdf")))
    chunker = Chunker(embedder.count_tokens, min(200, embedder.info.max_tokens - 54), 32)  # the default budget
    for path in paths:
        doc = load_document(path)
        chunks = chunker.split(doc)
        assert chunks, path
        counts = embedder.count_tokens([c.embed_text for c in chunks])
        assert max(counts) <= chunker.max_tokens <= embedder.info.max_tokens, path
        for chunk in chunks:
            assert doc.text[chunk.start : chunk.end] == chunk.text
        covered = sum(c.end - c.start for c in chunks)
        assert covered >= sum(b.end - b.start for b in doc.blocks), "no text may be dropped"
        if doc.format == "pdf":
            assert all(c.page and 1 <= c.page <= doc.pages for c in chunks)
        if doc.format in ("formex", "akoma-ntoso"):
            assert sum(1 for c in chunks if any("Art" in h for h in c.heading_path)) > len(chunks) / 2


@pytest.mark.parametrize(("text", "sentences"), [
    ("Art. 3 – Plafond hebdomadaire\nLe télétravail est limité. 3 jours au plus.",
     ["Art. 3 – Plafond hebdomadaire", "Le télétravail est limité.", "3 jours au plus."]),
    ("Gemäß § 3 Abs. 2 Nr. 5 gilt dies. Siehe S. 4.", ["Gemäß § 3 Abs. 2 Nr. 5 gilt dies.", "Siehe S. 4."]),
    ("See p. 12 and Art. 1er of the law. Then stop.", ["See p. 12 and Art. 1er of the law.", "Then stop."]),
    ("Start. Art. 7 applies.", ["Start.", "Art. 7 applies."]),
    ("Il a 3 ans. 4 enfants vivent ici.", ["Il a 3 ans.", "4 enfants vivent ici."]),  # "ans." is no abbreviation
    ("Die Zahl ist 5. 6 folgt.", ["Die Zahl ist 5.", "6 folgt."]),
    ("Diese Richtlinie tritt am 1. Juli 2024 in Kraft. Sie ersetzt die alte.",
     ["Diese Richtlinie tritt am 1. Juli 2024 in Kraft.", "Sie ersetzt die alte."]),
    ("Gëllt vum 3. Mäerz un.", ["Gëllt vum 3. Mäerz un."]),
    ("Es waren 45. Juli war heiß.", ["Es waren 45.", "Juli war heiß."]),  # 45 is no day
])
def test_a_reference_to_a_numbered_part_or_a_date_does_not_end_a_sentence(text, sentences):
    from rag.chunk import sentence_spans

    assert [text[a:b] for a, b in sentence_spans(text, 0, len(text))] == sentences
