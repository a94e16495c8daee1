"""Byte-identical files (case 12 of ../shared/cases): recognised at ingest, and one passage never fills two places."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rag.records import SearchFilter

pytestmark = pytest.mark.integration  # the real embedder

CASE = Path(__file__).resolve().parents[1].parent / "shared" / "cases" / "12-duplicate-files"


def test_case_12_copies_are_reported_and_searched_once(fresh_pipeline):
    if not CASE.exists():
        pytest.skip(f"case not available: {CASE}")
    report = fresh_pipeline.ingest([CASE], progress=False)
    assert len(report.added) == 2 and not report.failed
    assert len(report.duplicates) == 2
    first = {original for _, original in report.duplicates}
    assert len(first) == 1 and first <= set(report.added)
    hits = fresh_pipeline.search("how many days of leave", k=4)
    hashes = [hit.chunk.content_hash for hit in hits]
    assert len(hashes) == len(set(hashes)) and len({hit.chunk.doc_id for hit in hits}) <= 2


def test_later_copy_and_other_labels(fresh_pipeline, tmp_path):
    text = "# Canteen\n\nThe canteen serves lunch from 11:30 to 14:00 on working days.\n"
    (tmp_path / "canteen.md").write_text(text)
    first = fresh_pipeline.ingest([tmp_path / "canteen.md"], labels=["public"], progress=False)
    shutil.copy(tmp_path / "canteen.md", tmp_path / "canteen-copy.md")
    again = fresh_pipeline.ingest([tmp_path / "canteen-copy.md"], labels=["public"], progress=False)
    assert again.duplicates == [(str((tmp_path / "canteen-copy.md").resolve()), first.added[0])] and not again.added
    other = fresh_pipeline.ingest([tmp_path / "canteen-copy.md"], labels=["hr"], progress=False)  # another audience: its own document
    assert len(other.added) == 1 and not other.duplicates
    assert fresh_pipeline.ingest([tmp_path / "canteen.md"], labels=["public"], progress=False).unchanged == first.added  # not a copy


def test_identical_passages_of_different_files_appear_once(fresh_pipeline, tmp_path):
    clause = "## Confidentiality\n\nStaff keep all client information confidential, also after leaving.\n"
    (tmp_path / "a.md").write_text("# Handbook\n\n## Leave\n\nLeave is 28 days.\n\n" + clause)
    (tmp_path / "b.md").write_text("# Handbook\n\n## Remote work\n\nRemote work is two days per week.\n\n" + clause)
    fresh_pipeline.ingest([tmp_path], progress=False)
    hits = fresh_pipeline.search("client information confidential", k=5, mode="bm25")
    texts = [hit.chunk.text for hit in hits]
    assert sum("client information confidential" in text for text in texts) == 1


LEAVE = "Full-time employees receive 28 days of annual leave per calendar year.\nLeave is requested two weeks ahead.\n"
OTHER_SECTIONS = (
    "## Remote work\n\nEmployees may work remotely two days per week.\n\n"
    "## Expenses\n\nTravel expenses are reimbursed within 30 days.\n\n"
    "## Parking\n\nThe car park is free for staff after six in the evening.\n"
)


def _same_section_in_two_titles(folder: Path) -> tuple[Path, Path]:
    """`a.md` and `b.md`: different titles and other sections, one "Annual leave" section whose text differs only in
    line breaks, spacing and case (the heading path of each copy names its own title)."""
    a, b = folder / "a.md", folder / "b.md"
    a.write_text("# Annual leave handbook of Acme\n\n## Annual leave\n\n" + LEAVE + "\n" + OTHER_SECTIONS)
    b.write_text("# Employee guide for Beta Ltd\n\n## Annual Leave\n\n" + "  ".join(LEAVE.upper().split()) + "\n\n"
                 "## Canteen\n\nThe canteen serves lunch from 11:30 to 14:00.\n")
    return a, b


def _leave_hits(hits) -> list:
    return [hit for hit in hits if "28 days of annual leave" in hit.chunk.text.lower()]


@pytest.mark.parametrize("mode", ["hybrid", "bm25", "dense"])
def test_a_section_shared_by_documents_of_different_titles_appears_once(fresh_pipeline, tmp_path, mode):
    a, b = _same_section_in_two_titles(tmp_path)
    report = fresh_pipeline.ingest([a, b], progress=False)
    assert len(report.added) == 2 and not report.duplicates  # different files: both stored
    hits = fresh_pipeline.search("how many days of annual leave", k=4, mode=mode)
    assert len(hits) == 4  # the dropped copy's place is filled from further candidates
    assert len(_leave_hits(hits)) == 1 and _leave_hits(hits)[0] is hits[0]
    by_doc = {doc_id: fresh_pipeline.search("how many days of annual leave", k=1, mode=mode,
                                            search_filter=SearchFilter(doc_ids=frozenset({doc_id})))[0]
              for doc_id in report.added}
    assert all(len(_leave_hits([hit])) == 1 for hit in by_doc.values())  # each document has its copy
    if mode == "bm25":  # scores that do not depend on the other candidates: the better-ranked copy is kept
        assert hits[0].score == max(hit.score for hit in by_doc.values())


def test_identical_passages_are_compared_among_what_the_caller_may_see(fresh_pipeline, tmp_path):
    a, b = _same_section_in_two_titles(tmp_path)
    hidden = fresh_pipeline.ingest([a], labels=["hr"], progress=False).added[0]  # its title matches the question
    shown = fresh_pipeline.ingest([b], labels=["public"], progress=False).added[0]
    question = "annual leave handbook: how many days of annual leave"
    both = fresh_pipeline.search(question, k=3, mode="bm25")
    assert [hit.chunk.doc_id for hit in _leave_hits(both)] == [hidden]  # the hidden copy ranks first for everyone
    public = fresh_pipeline.search(question, k=3, mode="bm25", search_filter=SearchFilter(labels=frozenset({"public"})))
    assert [hit.chunk.doc_id for hit in _leave_hits(public)] == [shown]
    assert {hit.chunk.doc_id for hit in public} == {shown}  # nothing of the hidden document
    answer = fresh_pipeline.ask(question, mode="quote", search_filter=SearchFilter(labels=frozenset({"public"})))
    assert {source.chunk.doc_id for source in answer.sources} == {shown}


def test_the_answerer_is_given_a_shared_section_once(fresh_pipeline, tmp_path):
    fresh_pipeline.ingest(list(_same_section_in_two_titles(tmp_path)), progress=False)
    answer = fresh_pipeline.ask("How many days of annual leave do full-time employees get?", mode="quote")
    assert len(_leave_hits([source.hit for source in answer.sources])) == 1
    assert not answer.abstained and "28 days" in answer.text.lower()
