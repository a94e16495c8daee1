"""The evaluation harness: dataset readers, aggregation, bootstrap, gates and resume on hand-written data (fast), then
`rag eval run` / `rag eval compare` end to end on real XQuAD questions through the real CLI (integration)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rag.eval.datasets import (
    article_number,
    read_articles,
    read_beir,
    read_clapnq,
    read_dataset,
    read_jsonl,
    read_squad,
)
from rag.eval.index import cache_key
from rag.errors import InputError
from rag.settings import Settings
from rag.eval.run import gate_failures, parse_gate, resume, subset
from rag.eval.summary import Table, compare_runs, summarise

from .conftest import EXAMPLES, ROOT, shared


def _record(qid: str, answerable: bool, abstained: bool, f1: float | None, total_ms: float) -> dict:
    scores = {"retrieval.hybrid.hit@1": 1.0} if answerable else {}
    if f1 is not None:
        scores["answer.f1"] = f1
    return {"id": qid, "answerable": answerable, "abstained": abstained, "scores": scores,
            "timings": {"total_ms": total_ms, "generated_tokens": 10 if not abstained else 0, "ttft_ms": None}}


RECORDS = [_record("1", True, False, 1.0, 100.0), _record("2", False, True, None, 300.0),
           _record("3", True, True, 0.0, 200.0)]


# ---------------------------------------------------------------------------------------------- aggregation
def test_summarise_by_hand():
    agg = summarise(Table(RECORDS))
    assert agg["answer.f1"] == 0.5  # over the two answerable questions only
    assert agg["retrieval.hybrid.hit@1"] == 1.0  # the unanswerable one has no gold: not scored
    # two abstentions, one of them on the single unanswerable question
    assert agg["abstention.rate"] == pytest.approx(2 / 3)
    assert (agg["abstention.precision"], agg["abstention.recall"]) == (0.5, 1.0)
    assert agg["cost.total_ms.p50"] == 200.0 and agg["cost.total_ms.p95"] == pytest.approx(290.0)
    assert agg["cost.generated_tokens.mean"] == pytest.approx(10 / 3)
    assert agg["cost.ttft_ms.p50"] is None


def test_all_abstained_on_answerable_questions():
    agg = summarise(Table([_record("1", True, True, 0.0, 1.0), _record("2", True, True, 0.0, 1.0)]))
    assert agg["abstention.rate"] == 1.0 and agg["answer.f1"] == 0.0
    assert "abstention.precision" not in agg, "nothing to get right without unanswerable questions"


def test_compare_identical_runs_gives_zero_deltas():
    comparison = compare_runs(RECORDS, RECORDS, resamples=200)
    assert comparison["questions"] == 3
    assert all(r["delta"] == 0 and r["low"] == 0 and r["high"] == 0 for r in comparison["rows"])


def test_compare_is_paired_and_deterministic():
    a = [_record(str(i), True, False, 0.2 + 0.01 * i, 100.0) for i in range(30)]
    b = [_record(str(i), True, False, 0.3 + 0.01 * i, 100.0) for i in range(30)]
    first = compare_runs(a, b + [_record("extra", True, False, 1.0, 1.0)], resamples=300)
    row = next(r for r in first["rows"] if r["metric"] == "answer.f1")
    # every question is exactly 0.1 better, so every resample is too: a paired bootstrap has no spread here
    assert first["questions"] == 30 and row["delta"] == pytest.approx(0.1)
    assert row["low"] == pytest.approx(0.1) and row["high"] == pytest.approx(0.1)
    assert compare_runs(a, b, resamples=300) == compare_runs(a, b, resamples=300)


def test_gates():
    agg = summarise(Table(RECORDS))
    assert parse_gate("answer.f1=0.6") == ("answer.f1", 0.6)
    assert gate_failures(agg, [("answer.f1", 0.4)]) == []
    assert gate_failures(agg, [("answer.f1", 0.6)]) == ["answer.f1 = 0.5000, below the threshold 0.6"]
    with pytest.raises(InputError, match="did you mean answer.f1"):
        gate_failures(agg, [("answer.f2", 0.1)])
    with pytest.raises(InputError, match="METRIC=VALUE"):
        parse_gate("answer.f1")


def test_scratch_index_key_follows_the_embedder_graph():
    """A re-quantised ONNX graph (same model files, same backend name) must not reopen the index its old graph built."""
    from rag.eval.datasets import Dataset
    from rag.eval.index import cache_key
    from rag.settings import Settings

    dataset, settings = Dataset("d", sha256="abc"), Settings()
    embedder = {"name": "m", "fingerprint": "f", "dim": 384, "max_tokens": 254, "backend": "onnx-int8"}
    keys = {cache_key(embedder | {"backend_sha256": sha}, settings, dataset) for sha in ("old", "new")}
    keys.add(cache_key(embedder | {"backend": "torch"}, settings, dataset))
    assert len(keys) == 3


def test_scratch_index_key_follows_the_indexing_code(monkeypatch):
    """A change to the chunker (or the loaders, or BM25's tokens) must not reuse an index the old code built."""
    from rag.eval import index
    from rag.eval.datasets import Dataset
    from rag.settings import Settings

    dataset, settings = Dataset("d", sha256="abc"), Settings()
    embedder = {"name": "m", "fingerprint": "f", "dim": 512, "max_tokens": 512, "backend": "numpy"}
    code = index.indexing_code_sha256()
    assert len(code) == 64 and index.indexing_code_sha256() == code  # stable while nothing changes
    before = index.cache_key(embedder, settings, dataset)
    monkeypatch.setattr(index, "indexing_code_sha256", lambda: "another chunker")
    assert index.cache_key(embedder, settings, dataset) != before


def test_limit_takes_evenly_spaced_questions():
    assert subset(list(range(10)), 3) == [0, 3, 6]
    assert subset(list(range(3)), 5) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------- resume
def test_resume_keeps_finished_records_and_drops_a_half_written_line(tmp_path):
    identity = {"mode": "quote", "dataset_sha256": "x"}
    resume(tmp_path, identity)
    (tmp_path / "records.jsonl").write_text(json.dumps(RECORDS[0]) + "\n" + '{"id": "2", "ans')
    done = resume(tmp_path, identity)
    assert list(done) == ["1"]
    assert (tmp_path / "records.jsonl").read_text() == json.dumps(RECORDS[0]) + "\n"
    with pytest.raises(InputError, match="another mode"):
        resume(tmp_path, identity | {"mode": "generate"})
    # a setting the earlier run did not know (a newer version of the settings) does not block the resume
    assert list(resume(tmp_path, identity | {"config.llm.new_field": 1})) == ["1"]


# ---------------------------------------------------------------------------------------------- formats
def test_malformed_jsonl_names_file_and_line(tmp_path):
    (tmp_path / "documents").mkdir()
    (tmp_path / "documents" / "a.txt").write_text("Telework is allowed three days a week.")
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"question": "How many days?", "gold_doc_ids": ["a.txt"]}\n{"question": \n')
    with pytest.raises(InputError, match=rf"{gold}:2: not valid JSON"):
        read_jsonl(gold)
    gold.write_text('{"question": "How many days?", "gold_doc_ids": ["a.txt"]}\n\n{"answers": ["three"]}\n')
    with pytest.raises(InputError, match=rf"{gold}:3: field 'question' must be a non-empty string"):
        read_jsonl(gold)
    gold.write_text('{"question": "How many days?", "gold_doc_ids": ["b.txt"]}\n')
    with pytest.raises(InputError, match=r"gold.jsonl:1: gold_doc_ids \['b.txt'\] name no document file"):
        read_jsonl(gold)


def test_generic_jsonl_keys_documents_by_relative_path(tmp_path):
    (tmp_path / "documents" / "hr").mkdir(parents=True)
    (tmp_path / "documents" / "hr" / "a.txt").write_text("Telework is allowed three days a week.")
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"id": "q1", "question": "How many days?", "answers": ["three"], "gold_doc_ids": ["hr/a.txt"]}\n'
                    '{"question": "Who is the CEO?", "answerable": false}\n')
    dataset = read_dataset(gold)
    assert dataset.format == "jsonl" and [q.id for q in dataset.questions] == ["q1", "line-2"]
    assert not dataset.questions[1].answerable and not dataset.questions[1].gold_doc_ids
    assert dataset.doc_key(str(tmp_path / "documents" / "hr" / "a.txt")) == "hr/a.txt"
    with pytest.raises(InputError, match="needs the documents to index"):
        read_jsonl(gold, tmp_path / "missing")
    gold.write_text('{"id": "q1", "question": "How many days?"}\n{"id": "q1", "question": "Who?"}\n')
    with pytest.raises(InputError, match="question id 'q1' appears more than once"):
        read_dataset(gold)


def test_beir_folder(tmp_path):
    (tmp_path / "qrels").mkdir()
    (tmp_path / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "Cats purr."}\n'
                                           '{"_id": "d2", "text": "Dogs bark."}\n')
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "Which animal purrs?"}\n'
                                            '{"_id": "q2", "text": "Unjudged query"}\n')
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\n")
    dataset = read_dataset(tmp_path)
    assert dataset.format == "beir" and [d.source for d in dataset.documents] == ["d1", "d2"]
    assert [(q.id, q.gold_doc_ids) for q in dataset.questions] == [("q1", frozenset({"d1"}))]
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1 d1 1\n")
    with pytest.raises(InputError, match=r"test.tsv:2: expected `query-id<TAB>corpus-id<TAB>score`"):
        read_beir(tmp_path)


def test_clapnq_dev_answerable_and_unanswerable():
    dataset = read_dataset(shared("qa/clapnq/annotated_data/dev"))
    assert dataset.format == "clapnq" and len(dataset.questions) == 600
    answerable = [q for q in dataset.questions if q.answerable]
    assert len(answerable) == 300 and all(q.answers and q.gold_doc_ids for q in answerable)
    assert all(not q.gold_doc_ids for q in dataset.questions if not q.answerable)
    keys = {d.source for d in dataset.documents}
    assert all(q.gold_doc_ids <= keys for q in answerable)


def test_clapnq_malformed_item(tmp_path):
    path = tmp_path / "clapnq_dev.jsonl"
    path.write_text('{"id": "1", "input": "q?", "passages": "not a list", "output": []}\n')
    with pytest.raises(InputError, match=r"clapnq_dev.jsonl:1: field 'passages' must be a list"):
        read_clapnq(path)


def _squad(path, paragraphs: list[list[str]]) -> None:
    """A SQuAD file with one article per list, one paragraph per string and one question per paragraph."""
    data = [{"title": f"t{a}", "paragraphs": [{"context": text, "qas": [{"id": f"q{a}-{p}", "question": f"{text}?",
                                                                          "answers": [{"text": text}]}]}
                                              for p, text in enumerate(article)]}
            for a, article in enumerate(paragraphs)]
    path.write_text(json.dumps({"data": data}))


def test_squad_questions_over_the_parallel_paragraphs_of_another_language():
    de, en = shared("qa/xquad/xquad.de.json"), shared("qa/xquad/xquad.en.json")
    cross = read_dataset(de, documents_of=en)
    asked, read = read_squad(de), read_squad(en)
    assert cross.name == "xquad.de>xquad.en" and cross.format == "squad"
    assert [q.text for q in cross.questions] == [q.text for q in asked.questions]  # German questions
    assert cross.documents == read.documents  # English paragraphs
    # each German question's gold is the English paragraph at its own paragraph's place
    assert [q.gold_doc_ids for q in cross.questions] == [
        frozenset(g.replace("xquad.de/", "xquad.en/", 1) for g in q.gold_doc_ids) for q in asked.questions]
    assert all(q.gold_doc_ids <= {d.source for d in read.documents} for q in cross.questions)
    # its identity covers both files; its scratch index is the English set's own
    assert cross.sha256 not in (asked.sha256, read.sha256)
    embedder = {"model": "m", "fingerprint": "f"}
    assert cache_key(embedder, Settings(), cross) == cache_key(embedder, Settings(), read)
    assert cache_key(embedder, Settings(), cross) != cache_key(embedder, Settings(), asked)


def test_documents_of_must_be_a_parallel_squad_file(tmp_path):
    a, b, gold = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "gold.jsonl"
    _squad(a, [["Cats purr.", "Dogs bark."]])
    _squad(b, [["Le chat ronronne."], ["Le chien aboie."]])  # two articles of one paragraph: another layout
    with pytest.raises(InputError, match=r"--documents-of .*b.json is not parallel to .*a.json"):
        read_dataset(a, documents_of=b)
    gold.write_text('{"question": "q"}\n')
    with pytest.raises(InputError, match="--documents-of pairs two parallel SQuAD-format files"):
        read_dataset(gold, documents_of=b)
    with pytest.raises(InputError, match="missing.json does not exist"):
        read_dataset(a, documents_of=tmp_path / "missing.json")


def test_articles_set_indexes_the_versions_its_gold_names(tmp_path):
    (tmp_path / "law").mkdir()
    (tmp_path / "law" / "fr.txt").write_text("Art. 1er. Le chat ronronne.\n\nArt. 2. Le chien aboie.\n")
    (tmp_path / "law" / "de.txt").write_text("Art. 1. Die Katze schnurrt.\n\nArt. 2. Der Hund bellt.\n")
    gold = tmp_path / "legal.jsonl"
    gold.write_text('{"id": "q1", "lang": "de", "question": "Wer bellt?", "gold": ["law/fr.txt#2"]}\n'
                    '{"question": "Wer schnurrt?", "gold": ["law/fr.txt#1"]}\n')
    dataset = read_dataset(gold, documents=tmp_path)
    assert dataset.format == "articles" and dataset.articles
    assert [d.source for d in dataset.documents] == ["law/fr.txt"]  # not the German version: it would answer
    assert [(q.id, q.gold_doc_ids) for q in dataset.questions] == [("q1", frozenset({"law/fr.txt#2"})),
                                                                  ("line-2", frozenset({"law/fr.txt#1"}))]
    assert article_number(("Chapitre II", "Art. 1er.")) == "1" and article_number(("Artikel 12 - Zweck",)) == "12"
    assert article_number(("Considérant 3",)) == ""
    for line, message in (('{"question": "q", "gold": ["law/fr.txt"]}', r"legal.jsonl:1: 'gold' must list articles"),
                          ('{"question": "q", "gold": ["law/en.txt#1"]}', r"gold names \['law/en.txt'\] that are no"),
                          ('{"question": "q", "gold": ["law/fr.txt#7"]}', r"legal.jsonl:1: gold \['law/fr.txt#7'\]")):
        gold.write_text(line + "\n")
        with pytest.raises(InputError, match=message):
            read_articles(gold, tmp_path)


def test_the_legal_set_names_articles_of_the_shared_corpus():
    """bench/data/crosslingual_legal.jsonl over ../shared/data/corpus: every gold article exists in its version."""
    dataset = read_dataset(ROOT / "bench" / "data" / "crosslingual_legal.jsonl", documents=shared("corpus"))
    assert len(dataset.questions) == 48 and sorted(d.source for d in dataset.documents) == [
        "gdpr/gdpr-consolidated-with-corrected-preamble-en.xml",
        "legilux/works/constitution-1868-10-17-n1/versions/2023-07-01/fr.xml"]


# ---------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def rag_eval(tmp_path_factory):
    data = tmp_path_factory.getbasetemp() / "data"  # shared with the other CLI tests: the GGUF is assembled once
    env = {**os.environ, "RAG_DATA_DIR": str(data), "HF_HUB_OFFLINE": "1"}

    def run(*args: str, **extra_env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rag", "eval", *args], capture_output=True, text=True,
                              env=env | extra_env, cwd=ROOT, timeout=900, stdin=subprocess.DEVNULL)

    return run


@pytest.mark.integration
def test_eval_run_gate_and_compare(rag_eval, tmp_path):
    xquad = str(shared("qa/xquad/xquad.en.json"))
    quote, generate = tmp_path / "quote", tmp_path / "generate"
    result = rag_eval("run", xquad, "--limit", "5", "--mode", "quote", "--out", str(quote), "-q")
    assert result.returncode == 0, result.stderr
    results = json.loads((quote / "results.json").read_text())
    assert len(results["records"]) == 5 and results["run"]["dataset"]["evaluated"] == 5
    agg = results["aggregates"]
    for metric in ("retrieval.hybrid.hit@5", "retrieval.dense.ndcg@10", "answer.token_recall", "citation.strict.recall"):
        assert 0.0 <= agg[metric] <= 1.0, metric
    assert agg["retrieval.hybrid.hit@10"] >= 0.6  # XQuAD-en retrieval is easy: ~0.99 over all questions
    assert results["run"]["models"]["embedder"]["fingerprint"] and results["run"]["dataset"]["sha256"]
    report = (quote / "report.md").read_text()
    assert "## Retrieval" in report and "## Citations" in report
    assert all((quote / png).stat().st_size > 1000 for png in ("recall_at_k.png", "latency.png", "support.png"))

    # the same command again resumes: nothing is recomputed, and the gate fails on an unreachable threshold
    gated = rag_eval("run", xquad, "--limit", "5", "--mode", "quote", "--out", str(quote), "-q",
                     "--fail-under", "retrieval.hybrid.hit@10=1.01")
    assert gated.returncode == 1
    assert "fail-under: retrieval.hybrid.hit@10 = " in gated.stderr and "below the threshold 1.01" in gated.stderr
    assert json.loads((quote / "results.json").read_text())["aggregates"] == agg

    # deterministic: a fresh run (reusing the cached index) scores every question the same
    again = rag_eval("run", xquad, "--limit", "5", "--mode", "quote", "--out", str(tmp_path / "again"), "-q")
    assert again.returncode == 0, again.stderr
    rerun = json.loads((tmp_path / "again" / "results.json").read_text())
    assert rerun["run"]["index"]["reused"] and [r["scores"] for r in rerun["records"]] == [
        r["scores"] for r in results["records"]]

    # short answers keep this affordable on a shared CPU; the numbers are not checked, only that they are produced
    result = rag_eval("run", xquad, "--limit", "5", "--mode", "generate", "--out", str(generate), "-q",
                      RAG_LLM__MAX_TOKENS="32")
    assert result.returncode == 0, result.stderr
    generated = json.loads((generate / "results.json").read_text())
    assert generated["run"]["models"]["llm"]["sha256"]
    assert all(r["timings"]["total_ms"] > 0 for r in generated["records"])

    comparison = rag_eval("compare", str(quote), str(generate))
    assert comparison.returncode == 0, comparison.stderr
    assert "5 paired questions" in comparison.stdout and "| retrieval.hybrid.hit@1 |" in comparison.stdout


@pytest.mark.integration
def test_documents_linked_from_elsewhere_keep_the_names_of_the_folder(tmp_path):
    """Ingestion records a linked file by its target; the gold ids and the keys use its name in the folder."""
    elsewhere = tmp_path / "elsewhere" / "gdpr-en.xml"
    elsewhere.parent.mkdir()
    elsewhere.write_text("<p>Personal data shall be processed lawfully.</p>")
    folder = tmp_path / "documents"
    (folder / "eu").mkdir(parents=True)
    (folder / "eu" / "regulation.xml").symlink_to(elsewhere)
    gold = tmp_path / "gold.jsonl"
    gold.write_text('{"question": "How is data processed?", "gold_doc_ids": ["eu/regulation.xml"]}\n')
    dataset = read_jsonl(gold, folder)
    assert dataset.doc_key(str(elsewhere.resolve())) == "eu/regulation.xml"


def test_generic_jsonl_over_real_files(rag_eval, tmp_path):
    gold = tmp_path / "gold.jsonl"
    gold.write_text(
        '{"id": "km", "question": "How much is reimbursed per kilometre for a private car?", '
        '"answers": ["0.30 euro per kilometre"], "gold_doc_ids": ["travel-expenses-policy.docx"]}\n'
        '{"id": "video", "question": "Wie lange werden Videoaufzeichnungen am Eingang gespeichert?", '
        '"answers": ["72 Stunden"], "gold_doc_ids": ["datenaufbewahrung.html"]}\n'
        '{"id": "canteen", "question": "When does the staff canteen open?", "answerable": false}\n')
    result = rag_eval("run", str(gold), "--documents", str(EXAMPLES), "--mode", "retrieval", "--out",
                      str(tmp_path / "out"), "-q", "--fail-under", "retrieval.hybrid.hit@5=1")
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["run"]["dataset"]["documents"] == 5
    assert [r["retrieved"]["hybrid"][0] for r in results["records"][:2]] == [
        "travel-expenses-policy.docx", "datenaufbewahrung.html"]
    assert "answer.f1" not in results["aggregates"], "retrieval mode answers nothing"


@pytest.mark.integration
def test_cross_lingual_sets_end_to_end(rag_eval, tmp_path):
    de, en = str(shared("qa/xquad/xquad.de.json")), str(shared("qa/xquad/xquad.en.json"))
    out = tmp_path / "de-en"
    result = rag_eval("run", de, "--documents-of", en, "--limit", "4", "--mode", "retrieval", "--out", str(out), "-q")
    assert result.returncode == 0, result.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["run"]["dataset"]["name"] == "xquad.de>xquad.en"
    assert results["run"]["dataset"]["documents_of"] == en and results["run"]["dataset"]["documents"] == 240
    assert all(r["retrieved"]["hybrid"][0].startswith("xquad.en/") for r in results["records"])
    assert all(r["gold_doc_ids"][0].startswith("xquad.en/") for r in results["records"])

    (tmp_path / "law").mkdir()
    (tmp_path / "law" / "fr.txt").write_text(
        "Art. 1er. Les chats ronronnent quand ils sont contents.\n\n"
        "Art. 2. Le chien aboie devant la maison la nuit.\n\nArt. 3. Les oiseaux chantent le matin.\n")
    gold = tmp_path / "legal.jsonl"
    gold.write_text('{"id": "dog", "question": "Le chien aboie-t-il la nuit?", "gold": ["law/fr.txt#2"]}\n')
    result = rag_eval("run", str(gold), "--documents", str(tmp_path), "--mode", "retrieval", "--out",
                      str(tmp_path / "legal"), "-q", "--fail-under", "retrieval.hybrid.hit@1=1")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "legal" / "results.json").read_text())["records"][0]
    assert record["retrieved"]["hybrid"][0] == "law/fr.txt#2" and record["retrieved"]["bm25"][0] == "law/fr.txt#2"
    assert "gold document; article level" in (tmp_path / "legal" / "report.md").read_text()
