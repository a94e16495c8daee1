"""Question-answering datasets as plain records: documents to index and questions with their gold.

Each reader returns a `Dataset`; documents become `rag.load.Document`s so they go through the same chunker and
index as real files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import InputError
from .language import detect_language
from .load import Block, Document


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    answers: tuple[str, ...]
    gold_doc_ids: frozenset[str]
    answerable: bool = True


@dataclass
class Dataset:
    name: str
    documents: list[Document] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    sha256: str = ""


def text_document(source: str, title: str, text: str, lang: str | None = None) -> Document:
    """A one-block plain-text document, as evaluation corpora need."""
    return Document(
        source=source, title=title, text=text, format="text", lang=lang or detect_language(text),
        sha256=hashlib.sha256(text.encode()).hexdigest(), blocks=[Block(0, len(text))],
    )


def read_squad(path: Path, name: str | None = None) -> Dataset:
    """SQuAD v1/v2 JSON (XQuAD, PIAF): each paragraph is a document, a question's gold is its own paragraph."""
    raw = Path(path).read_bytes()
    try:
        articles = json.loads(raw)["data"]
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path} is not SQuAD-format JSON (expected a top-level 'data' list): {exc}") from None
    dataset = Dataset(name=name or Path(path).stem, sha256=hashlib.sha256(raw).hexdigest())
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article["paragraphs"]):
            doc = text_document(f"{dataset.name}/{a}/{p}", article.get("title", f"article {a}"), paragraph["context"])
            dataset.documents.append(doc)
            for qa in paragraph["qas"]:
                answers = tuple(dict.fromkeys(ans["text"] for ans in qa.get("answers", [])))
                dataset.questions.append(
                    Question(qa["id"], qa["question"], answers, frozenset({doc.doc_id}),
                             answerable=not qa.get("is_impossible", False))
                )
    return dataset
