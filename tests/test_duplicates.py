"""Byte-identical files (case 12 of ../shared/cases): recognised at ingest, and one passage never fills two places."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
