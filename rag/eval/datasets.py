"""Question-answering datasets as plain records: documents to index and questions with their gold.

Each reader returns a `Dataset`. Its documents are either parsed texts (`text_document`, so they go through the same
chunker and index as real files) or a folder of real files ingested through the normal loaders. A question's gold
document ids are *keys*: the dataset's own document ids (SQuAD paragraph, BEIR `_id`, ClapNQ passage hash), for a
documents folder file paths relative to that folder, or for the `articles` format `<file>#<article number>`;
`Dataset.chunk_key` maps an indexed chunk back to its key.

Formats (docs/evaluation.md): `squad` (SQuAD v1/v2, XQuAD, PIAF; with `documents_of`, the questions of one SQuAD file
over the parallel paragraphs of another: one language's questions over another's documents), `beir`, `clapnq`,
`articles` (questions whose gold is an article of a legal text), and the generic `jsonl`. A malformed record raises
one `InputError` naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import InputError
from ..language import detect_language
from ..load import Block, Document, input_files, load_document
from ..records import ChunkRecord

FORMATS = ("squad", "beir", "clapnq", "articles", "jsonl")
# the number of an article heading: "Art. 1er", "Artikel 12 - ...", "Article 12"
ARTICLE = re.compile(r"(?:art\.?|article|artikel)\s*(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class Question:
    """One evaluation question: its reference answers and the ids of the documents that hold the answer.

    `gold_doc_ids` are dataset document ids; `answerable` False marks a question the corpus does not answer (the
    system should abstain), which normally has no gold document."""

    id: str
    text: str
    answers: tuple[str, ...]
    gold_doc_ids: frozenset[str]
    answerable: bool = True


@dataclass
class Dataset:
    """Documents and questions of one evaluation set, as read by the `read_*` functions of this module.

    Either `documents` (texts held in memory) or `documents_dir` (real files to ingest) supplies the corpus."""

    name: str
    documents: list[Document] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    sha256: str = ""  # of every input file, documents folder included: the identity of the evaluation data
    format: str = ""
    documents_dir: Path | None = None  # real files to ingest instead of `documents`
    # of the documents alone, when the questions come from another file (`read_squad_across`): the scratch index is
    # then the one of the documents' own set
    corpus_sha256: str = ""
    articles: bool = False  # gold ids name articles, `<document key>#<article number>` (`read_articles`)
    # the key of each file of `documents_dir` by the path ingestion records (links resolved): its own path inside the
    # folder, so a file linked from elsewhere keeps the name the gold ids give it (`file_keys`)
    file_keys: dict[str, str] = field(default_factory=dict)

    def doc_key(self, source: str) -> str:
        """The key gold ids use for an indexed document, whose `source` is the key itself or the file's path."""
        if self.documents_dir is None:
            return source
        return self.file_keys.get(source) or Path(source).relative_to(self.documents_dir.resolve()).as_posix()

    def chunk_key(self, chunk: ChunkRecord) -> str:
        """The key gold ids use for an indexed chunk: its document's, and in an `articles` set the article number of
        its heading path after a `#` (empty outside articles: recitals, chapter headings)."""
        key = self.doc_key(chunk.source)
        return f"{key}#{article_number(chunk.heading_path)}" if self.articles else key


def article_number(heading_path: tuple[str, ...]) -> str:
    """The number of the article in a heading path ("Art. 1er", "Artikel 12 - ...", "Article 12" -> "1", "12"), or
    "" when no heading is an article."""
    for heading in heading_path:
        if match := ARTICLE.match(heading):
            return match.group(1)
    return ""


def text_document(source: str, title: str, text: str, lang: str | None = None) -> Document:
    """A one-block plain-text document, as evaluation corpora need."""
    return Document(
        source=source,
        title=title,
        text=text,
        format="text",
        lang=lang or detect_language(text),
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        blocks=[Block(0, len(text))],
    )


def read_dataset(
    path: Path, fmt: str | None = None, documents: Path | None = None, *, documents_of: Path | None = None
) -> Dataset:
    """Read any supported format; without `fmt` it is recognised from the path (see `detect_format`). `documents` is
    the folder of a `jsonl` or `articles` set; `documents_of` a SQuAD file parallel to `path` whose paragraphs are
    indexed instead of its own (`read_squad_across`)."""
    path = Path(path)
    for given in (path, documents_of):
        if given is not None and not Path(given).exists():
            raise InputError(f"dataset {given} does not exist")
    readers = {
        "squad": (lambda p: read_squad_across(p, documents_of)) if documents_of else read_squad,
        "beir": read_beir,
        "clapnq": read_clapnq,
        "articles": lambda p: read_articles(p, documents),
        "jsonl": lambda p: read_jsonl(p, documents),
    }
    fmt = fmt or detect_format(path)
    if fmt not in readers:
        raise InputError(f"unknown dataset format {fmt!r}; use one of {', '.join(FORMATS)}")
    if documents_of is not None and fmt != "squad":
        raise InputError(f"--documents-of pairs two parallel SQuAD-format files; {path} is read as {fmt}")
    dataset = readers[fmt](path)
    _check_unique_ids(dataset, path)
    return dataset


def _check_unique_ids(dataset: Dataset, path: Path) -> None:
    """Records are stored and resumed by question id, so two questions with one id would silently become one."""
    seen: set[str] = set()
    for question in dataset.questions:
        if question.id in seen:
            raise InputError(f"{path}: question id {question.id!r} appears more than once; ids must be unique")
        seen.add(question.id)


def detect_format(path: Path) -> str:
    """A folder with corpus.jsonl is BEIR; .json is SQuAD; JSONL whose first record has ClapNQ's `input` and
    `passages` (or a folder of such files) is ClapNQ; JSONL whose first record has `gold` is `articles`; other JSONL
    is the generic format."""
    if path.is_dir():
        if (path / "corpus.jsonl").is_file():
            return "beir"
        files = sorted(path.glob("*.jsonl"))
        if files and _first_record_is_clapnq(files[0]):
            return "clapnq"
        raise InputError(f"cannot tell the format of folder {path}; pass --format ({', '.join(FORMATS)})")
    if path.suffix == ".json":
        return "squad"
    if _first_record_is_clapnq(path):
        return "clapnq"
    return "articles" if "gold" in _first_record(path) else "jsonl"


def _first_record_is_clapnq(path: Path) -> bool:
    return {"input", "passages"} <= _first_record(path).keys()


def _first_record(path: Path) -> dict:
    first = next(_jsonl(path), (0, {}))[1]
    return first if isinstance(first, dict) else {}


# ---------------------------------------------------------------------------------------------- SQuAD
def read_squad(path: Path, name: str | None = None) -> Dataset:
    """SQuAD v1/v2 JSON (XQuAD, PIAF): each paragraph is a document, a question's gold is its own paragraph."""
    raw = Path(path).read_bytes()
    try:
        articles = json.loads(raw)["data"]
    except (ValueError, KeyError) as exc:
        raise InputError(f"{path} is not SQuAD-format JSON (expected a top-level 'data' list): {exc}") from None
    dataset = Dataset(name=name or Path(path).stem, sha256=hashlib.sha256(raw).hexdigest(), format="squad")
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(article["paragraphs"]):
            doc = text_document(f"{dataset.name}/{a}/{p}", article.get("title", f"article {a}"), paragraph["context"])
            dataset.documents.append(doc)
            for qa in paragraph["qas"]:
                answers = tuple(dict.fromkeys(ans["text"] for ans in qa.get("answers", [])))
                dataset.questions.append(
                    Question(
                        qa["id"],
                        qa["question"],
                        answers,
                        frozenset({doc.source}),
                        answerable=not qa.get("is_impossible", False),
                    )
                )
    return dataset


def read_squad_across(questions: Path, documents: Path, *, names: tuple[str, str] | None = None) -> Dataset:
    """The questions of one SQuAD-format file over the paragraphs of another, parallel one: XQuAD's language versions
    hold the same articles and paragraphs in the same order (and share the question ids), so German questions can be
    asked of the English paragraphs. A question's gold is the paragraph at its own paragraph's place in `documents`.

    `names` (questions', documents'; default: the file stems) name the two sets; the dataset is `<q>><d>`. Its
    documents are exactly those of `read_squad(documents)`, and `corpus_sha256` is that file's hash, so the scratch
    index is the documents' own set's; `sha256` covers both files. Files laid out differently are an InputError."""
    asked = read_squad(questions, names[0] if names else None)
    read = read_squad(documents, names[1] if names else None)
    places = [d.source.removeprefix(f"{read.name}/") for d in read.documents]
    if [d.source.removeprefix(f"{asked.name}/") for d in asked.documents] != places:
        raise InputError(
            f"--documents-of {documents} is not parallel to {questions}: it needs the same articles and paragraphs "
            f"in the same order ({len(read.documents)} paragraphs against {len(asked.documents)})"
        )
    prefix = f"{asked.name}/"
    moved = [
        replace(q, gold_doc_ids=frozenset(f"{read.name}/{g.removeprefix(prefix)}" for g in q.gold_doc_ids))
        for q in asked.questions
    ]
    return Dataset(
        name=f"{asked.name}>{read.name}",
        documents=read.documents,
        questions=moved,
        sha256=files_sha256([Path(questions), Path(documents)]),
        format="squad",
        corpus_sha256=read.sha256,
    )


# ---------------------------------------------------------------------------------------------- BEIR
def read_beir(folder: Path, name: str | None = None) -> Dataset:
    """BEIR: corpus.jsonl (`_id`, `title`, `text`), queries.jsonl (`_id`, `text`) and qrels/<split>.tsv; the
    test split is used when there are several. Only queries with a relevant document (score > 0) are kept."""
    folder = Path(folder)
    qrels_file = _qrels_file(folder)
    dataset = Dataset(
        name=name or folder.name,
        format="beir",
        sha256=files_sha256([folder / "corpus.jsonl", folder / "queries.jsonl", qrels_file]),
    )
    for where, row in _records(folder / "corpus.jsonl"):
        doc_id = _text(row, "_id", where)
        text = _text(row, "text", where)
        dataset.documents.append(text_document(doc_id, str(row.get("title") or doc_id), text))
    relevant = _qrels(qrels_file)
    for where, row in _records(folder / "queries.jsonl"):
        query_id = _text(row, "_id", where)
        if relevant.get(query_id):
            dataset.questions.append(Question(query_id, _text(row, "text", where), (), frozenset(relevant[query_id])))
    return dataset


def _qrels_file(folder: Path) -> Path:
    files = sorted((folder / "qrels").glob("*.tsv"))
    chosen = next((f for f in files if f.stem == "test"), files[0] if len(files) == 1 else None)
    if chosen is None:
        raise InputError(
            f"{folder}/qrels holds {len(files)} .tsv files and none is test.tsv; keep the split to "
            "evaluate on as qrels/test.tsv"
        )
    return chosen


def _qrels(path: Path) -> dict[str, set[str]]:
    relevant: dict[str, set[str]] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            cells = line.rstrip("\n").split("\t")
            if not line.strip() or (number == 1 and cells[0] == "query-id"):
                continue
            if len(cells) != 3 or not cells[2].lstrip("-").isdigit():
                raise InputError(f"{path}:{number}: expected `query-id<TAB>corpus-id<TAB>score`, got {line.strip()!r}")
            if int(cells[2]) > 0:
                relevant.setdefault(cells[0], set()).add(cells[1])
    return relevant


# ---------------------------------------------------------------------------------------------- ClapNQ
def read_clapnq(path: Path, name: str | None = None) -> Dataset:
    """ClapNQ annotated JSONL (one file, or a folder of them such as annotated_data/dev): `input` is the question,
    `passages` its passages (the gold documents of an answerable item), `output[].answer` the long answers. An item
    with no non-empty answer is unanswerable: its passage does not answer it, so it has no gold document."""
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    name = name or (path.stem if "clapnq" in path.stem else f"clapnq-{path.stem}")  # the dev folder is "dev"
    dataset = Dataset(name=name, sha256=files_sha256(files), format="clapnq")
    passages: dict[str, Document] = {}
    for file in files:
        for where, row in _records(file):
            keys = {_clapnq_passage(passage, where, passages, name) for passage in _list(row, "passages", where)}
            answers = tuple(dict.fromkeys(a for o in _list(row, "output", where) if (a := o.get("answer"))))
            dataset.questions.append(
                Question(
                    _text(row, "id", where),
                    _text(row, "input", where),
                    answers,
                    frozenset(keys) if answers else frozenset(),
                    bool(answers),
                )
            )
    dataset.documents = list(passages.values())
    return dataset


def _clapnq_passage(passage: object, where: str, passages: dict[str, Document], name: str) -> str:
    """The passage's key (a hash of title and text: ClapNQ items carry no passage id), indexing it once."""
    if not isinstance(passage, dict):
        raise InputError(f"{where}: every entry of 'passages' must be an object with 'title' and 'text'")
    title, text = str(passage.get("title", "")), _text(passage, "text", where)
    digest = hashlib.sha256("\n".join((title, text)).encode()).hexdigest()
    key = f"{name}/{digest[:16]}"
    passages.setdefault(key, text_document(key, title or key, text, "en"))
    return key


def file_keys(folder: Path, files: list[Path]) -> dict[str, str]:
    """{resolved path: path inside `folder`, as posix} of `files`, the document files under `folder` (`input_files`)."""
    root = Path(folder).absolute()
    return {str(f.resolve()): f.absolute().relative_to(root).as_posix() for f in files}


# ---------------------------------------------------------------------------------------------- generic JSONL
def read_jsonl(path: Path, documents: Path | None = None, name: str | None = None) -> Dataset:
    """Generic JSONL over a folder of real files (default: `documents/` beside the file). One question per line:
    `question` (required), `id`, `answers` (list), `gold_doc_ids` (paths relative to the folder), `answerable`
    (default: true). Every gold id must name a document file of the folder."""
    path = Path(path)
    folder = _folder(path, documents, "generic JSONL")
    files = input_files([folder]).files
    keys = file_keys(folder, files)
    present = set(keys.values())
    dataset = Dataset(
        name=name or path.stem,
        sha256=files_sha256([path, *files]),
        format="jsonl",
        documents_dir=folder,
        file_keys=keys,
    )
    for where, row in _records(path):
        gold = frozenset(_strings(row, "gold_doc_ids", where))
        if gold - present:
            raise InputError(f"{where}: gold_doc_ids {sorted(gold - present)} name no document file in {folder}")
        answerable = row.get("answerable", True)
        if not isinstance(answerable, bool):
            raise InputError(f"{where}: 'answerable' must be true or false, not {answerable!r}")
        dataset.questions.append(
            Question(
                _id(row, where), _text(row, "question", where), tuple(_strings(row, "answers", where)), gold, answerable
            )
        )
    return dataset


def _folder(path: Path, documents: Path | None, fmt: str) -> Path:
    """The documents folder of a JSONL set: `documents`, by default documents/ beside the file; it must exist."""
    folder = Path(documents) if documents else path.parent / "documents"
    if not folder.is_dir():
        raise InputError(
            f"{folder} is not a folder; the {fmt} format needs the documents to index: "
            "pass --documents DIR (default: documents/ beside the JSONL file)"
        )
    return folder


# ---------------------------------------------------------------------------------------------- articles
def read_articles(path: Path, documents: Path | None = None, name: str | None = None) -> Dataset:
    """Questions whose answer is an article of a legal text, one per line: `question` (required), `id`, and `gold`,
    a non-empty list of `<file under the folder>#<article number>` (other fields, such as `lang`, are ignored). The
    folder defaults to documents/ beside the file.

    The index holds the files the gold ids name, and only those: a folder of parallel language versions (the
    Constitution in FR/DE/LB, the GDPR in DE/FR/EN) then supplies a cross-lingual set's documents without the
    question's own language's version answering it. A chunk's key is its file and the article number of its
    heading path (`Dataset.chunk_key`); a gold article that no heading of its file names is an InputError."""
    path = Path(path)
    folder = _folder(path, documents, "articles")
    rows = list(_records(path))
    for where, row in rows:
        gold = _strings(row, "gold", where)
        if not gold or not all(g.partition("#")[2].isdigit() for g in gold):
            raise InputError(f"{where}: 'gold' must list articles as '<file>#<article number>', got {gold!r}")
    files = sorted({g.partition("#")[0] for _, row in rows for g in row["gold"]})
    missing = [f for f in files if not (folder / f).is_file()]
    if missing:
        raise InputError(f"{path}: gold names {missing} that are no files of {folder}")
    loaded = [replace(load_document(folder / f), source=f) for f in files]
    articles = {
        f"{doc.source}#{number}"
        for doc in loaded
        for block in doc.blocks
        if (number := article_number(block.heading_path))
    }
    dataset = Dataset(
        name=name or path.stem,
        documents=loaded,
        sha256=files_sha256([path, *(folder / f for f in files)]),
        format="articles",
        articles=True,
    )
    for where, row in rows:
        if unknown := sorted(set(row["gold"]) - articles):
            raise InputError(f"{where}: gold {unknown} names an article no heading of its file holds")
        dataset.questions.append(Question(_id(row, where), _text(row, "question", where), (), frozenset(row["gold"])))
    return dataset


# ---------------------------------------------------------------------------------------------- helpers
def files_sha256(paths: list[Path]) -> str:
    """One hash over the files' names and bytes, so renaming or editing any input changes the dataset's identity."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).name.encode())
        digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


def _records(path: Path) -> Iterator[tuple[str, dict]]:
    """("file:line", object) per non-empty line; a line that is not a JSON object is an InputError naming it."""
    for number, row in _jsonl(path):
        if not isinstance(row, dict):
            raise InputError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}:{number}", row


def _jsonl(path: Path) -> Iterator[tuple[int, object]]:
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except ValueError as exc:
                raise InputError(f"{path}:{number}: not valid JSON ({exc})") from None


def _id(row: dict, where: str) -> str:
    """A question's `id`, by default `line-N`."""
    return str(row.get("id", f"line-{where.rsplit(':', 1)[1]}"))


def _text(row: dict, key: str, where: str) -> str:
    value = row.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}: field {key!r} must be a non-empty string, got {value!r}")
    return value


def _list(row: dict, key: str, where: str) -> list:
    value = row.get(key)
    if not isinstance(value, list):
        raise InputError(f"{where}: field {key!r} must be a list, got {value!r}")
    return value


def _strings(row: dict, key: str, where: str) -> list[str]:
    """An optional list of strings (missing means empty)."""
    value = row.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{where}: field {key!r} must be a list of strings, got {value!r}")
    return value
