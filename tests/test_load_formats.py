"""The formats of a shared drive (PPTX, XLSX, CSV, ODT, ODS, ODP, EML): real files made by the libraries that write
them (tests/office_samples.py), read back word for word with their structure; corrupt ones fail with one clear line."""

from __future__ import annotations

import io
import os
import re
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from rag.errors import LoadError
from rag.load import detect_format, input_files, load_bytes, load_document

from .hostile_corpus import forward_chain_eml, zip_bomb_odt, zip_bomb_pptx, zip_bomb_xlsx
from .office_samples import HOMEOFFICE, SAMPLES, TELEWORK, csv_sample, odt_sample
from .test_load import assert_consistent, block_with, texts

FORMATS = {"telework.pptx": "pptx", "conges.xlsx": "xlsx", "conges.csv": "csv", "homeoffice.odt": "odt",
           "conges.ods": "ods", "securite.odp": "odp", "teletravail.eml": "eml"}  # fmt: skip


@pytest.fixture(scope="module")
def loaded():
    """name -> (Document, expected text) for every sample."""
    result = {}
    for name, make in SAMPLES.items():
        data, expected = make()
        result[name] = (load_bytes(data, name), expected)
    return result


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_reads_back_word_for_word_in_order(loaded, name):
    doc, expected = loaded[name]
    assert_consistent(doc)
    assert doc.format == FORMATS[name]
    assert "\n".join(texts(doc)) == expected


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_format_is_detected_from_the_content_whatever_the_name(name):
    data, _ = SAMPLES[name]()
    expected = FORMATS[name]
    assert detect_format(data, "upload.bin") == ("text" if expected == "csv" else expected)  # CSV only by suffix
    assert detect_format(data, name) == expected


def test_pptx_slides_are_pages_titles_headings_notes_their_own_path(loaded):
    doc, _ = loaded["telework.pptx"]
    assert doc.title == "Télétravail : les nouvelles règles" and doc.pages == 2 and doc.lang == "fr"
    assert block_with(doc, "trois jours").page == 1 and block_with(doc, "trois jours").heading_path == ("Télétravail",)
    notes = block_with(doc, "date limite")
    assert notes.page == 1 and notes.heading_path == ("Télétravail", "Notes")
    row = block_with(doc, "Weber | Finances")
    assert row.page == 2 and row.heading_path == ("Jours de congé",)


def test_odp_slides_like_pptx(loaded):
    doc, _ = loaded["securite.odp"]
    assert doc.pages == 2 and doc.title == "Sécurité informatique"
    assert block_with(doc, "CERT").page == 2 and block_with(doc, "CERT").heading_path == ("Incidents",)
    assert block_with(doc, "MFA").heading_path == ("Sécurité informatique", "Notes")


@pytest.mark.parametrize("name", ["conges.xlsx", "conges.ods"])
def test_sheet_names_are_headings_of_their_rows(loaded, name):
    doc, _ = loaded[name]
    assert block_with(doc, "Weber").heading_path == ("Congés",)
    assert texts(doc)[0] == "Congés" and doc.pages is None
    assert "Vide" not in doc.text  # an empty sheet adds nothing


def test_xlsx_values_dates_and_title(loaded):
    doc, _ = loaded["conges.xlsx"]
    assert doc.title == "Congés 2025"
    assert "Weber | Finances | 26 | 2024-03-01" in texts(doc) and "Muller | Archives | 27.5" in texts(doc)
    assert block_with(doc, "luxembourgeois").heading_path == ("Budget Formation",)


def test_ods_repeats_are_expanded_and_the_million_empty_rows_skipped(loaded):
    doc, _ = loaded["conges.ods"]
    assert texts(doc).count("S1 | Réseau | Réseau") == 2 and len(doc.blocks) == 8


def test_odt_headings_lists_tables_without_deletions_or_comments(loaded):
    doc, _ = loaded["homeoffice.odt"]
    assert doc.title == "Dienstanweisung Homeoffice" and doc.lang == "de"
    assert block_with(doc, "Teilzeit").heading_path == ("1. Geltungsbereich", "1.1 Ausnahmen")
    assert block_with(doc, "ergonomisch").heading_path == ("1. Geltungsbereich",)
    assert "Drei Tage" not in doc.text and "Kommentar" not in doc.text


def test_csv_semicolons_quotes_and_legacy_encoding(loaded):
    doc, _ = loaded["conges.csv"]
    assert "Weber | 12, rue de l'Église; Esch | 26" in texts(doc)  # the delimiter inside quotes stays text
    assert doc.title == "conges"
    comma = load_bytes(b"name,days\nWeber,26\n", "a.csv")
    assert texts(comma) == ["name | days", "Weber | 26"]


def test_eml_headers_body_and_attachments_under_their_own_heading(loaded):
    doc, _ = loaded["teletravail.eml"]
    subject = "Télétravail : nouvelles règles"
    assert doc.title == subject  # the language is the majority's: here the forwarded German text and its ODT
    header = block_with(doc, "From: Jean Weber")
    assert header.heading_path == (subject,) and "Attachments: conges.csv, logo.png, message-3.eml" in doc.text
    assert block_with(doc, TELEWORK).heading_path == (subject,)
    assert doc.text.count(TELEWORK) == 1  # the HTML alternative of the same body is not read twice
    assert block_with(doc, "Schmit | 3, place").heading_path == (subject, "Attachment: conges.csv")
    forwarded = (subject, "Attachment: message-3.eml", "Homeoffice-Regelung")
    assert block_with(doc, "From: Petra Klein").heading_path == forwarded
    assert block_with(doc, "Teilzeit | 1").heading_path == (*forwarded, "Attachment: anweisung.odt",
                                                            "1. Geltungsbereich", "1.1 Ausnahmen")
    assert all(block.page is None for block in doc.blocks)


def test_eml_html_only_body_and_a_text_that_merely_quotes_headers():
    message = EmailMessage()
    message["From"], message["Subject"] = "a@example.lu", "Sitzung"
    message.set_content("<html><body><h1>Tagesordnung</h1><p>Haushalt 2026</p><script>x()</script></body></html>",
                        subtype="html")
    doc = load_bytes(bytes(message), "sitzung.eml")
    assert texts(doc)[1:] == ["Tagesordnung", "Haushalt 2026"]
    assert block_with(doc, "Haushalt").heading_path == ("Sitzung", "Tagesordnung")
    assert detect_format(b"From: the minister\n\nThe note says: Subject: budget.\n", "note.txt") == "text"
    assert detect_format(b"Date: 3 March\nFrom: the minister\nwho wrote the note\n\n", "a") == "text"


def test_shared_drive_folders_pick_up_the_new_suffixes(tmp_path):
    for name in ["a.pptx", "b.xlsx", "c.csv", "d.odt", "e.ods", "f.odp", "g.eml", "h.png"]:
        (tmp_path / name).write_bytes(b"x")
    assert [path.name for path in input_files([tmp_path]).files] == ["a.pptx", "b.xlsx", "c.csv", "d.odt", "e.ods",
                                                                    "f.odp", "g.eml"]


# ------------------------------------------------------------------------------------------- bad files


def _truncated(name: str) -> bytes:
    data, _ = SAMPLES[name]()
    return data[: len(data) // 2]


def _zip_without(name: str, part: str) -> bytes:
    """The sample re-packed without one of its parts: a valid ZIP, an invalid package."""
    data, _ = SAMPLES[name]()
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for info in source.infolist():
            if info.filename != part:
                target.writestr(info, source.read(info))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make", "reason"),
    [
        ("cut.pptx", lambda: _truncated("telework.pptx"), "corrupt PowerPoint presentation (broken ZIP container"),
        ("cut.xlsx", lambda: _truncated("conges.xlsx"), "corrupt Excel workbook (broken ZIP container"),
        ("cut.odt", lambda: _truncated("homeoffice.odt"), "corrupt OpenDocument text (broken ZIP container"),
        ("cut.ods", lambda: _truncated("conges.ods"), "corrupt OpenDocument spreadsheet (broken ZIP container"),
        ("cut.odp", lambda: _truncated("securite.odp"), "corrupt OpenDocument presentation (broken ZIP container"),
        ("parts.pptx", lambda: _zip_without("telework.pptx", "[Content_Types].xml"),
         "corrupt or invalid PowerPoint presentation"),
        ("parts.xlsx", lambda: _zip_without("conges.xlsx", "xl/_rels/workbook.xml.rels"),
         "corrupt or invalid Excel workbook"),
        ("parts.odt", lambda: _zip_without("homeoffice.odt", "content.xml"), "corrupt or invalid OpenDocument text"),
        ("bomb.xlsx", zip_bomb_xlsx, "zip bomb"),
        ("bomb.pptx", zip_bomb_pptx, "zip bomb"),
        ("bomb.odt", zip_bomb_odt, "zip bomb"),
        ("field.csv", lambda: b"a;b\n1;" + b"y" * 200_000 + b"\n", "malformed CSV (field larger than field limit"),
        ("binary.csv", lambda: bytes(range(256)) * 8, "unsupported file type (binary content)"),
        ("forwards.eml", forward_chain_eml, "nested more than 5 levels deep"),
    ],
)
def test_corrupt_file_is_one_clear_load_error(name, make, reason):
    with pytest.raises(LoadError) as caught:
        load_bytes(make(), name)
    message = str(caught.value)
    assert message.startswith(f"{name}: ") and reason in message and "\n" not in message, message


def test_unreadable_attachment_keeps_its_name_and_fails_no_mail():
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.lu", "b@example.lu", "Scan"
    message.set_content(HOMEOFFICE)
    odt, _ = odt_sample()
    message.add_attachment(odt[: len(odt) // 2], maintype="application", subtype="vnd.oasis.opendocument.text",
                           filename="kaputt.odt")
    table, table_text = csv_sample()
    message.add_attachment(table, maintype="text", subtype="csv", filename="liste.csv")
    doc = load_bytes(bytes(message), "scan.eml")
    assert "Attachments: kaputt.odt, liste.csv" in doc.text and table_text.split("\n")[-1] in doc.text
    assert not any("kaputt.odt" in part for block in doc.blocks for part in block.heading_path)
    assert re.search(r"Attachment: liste\.csv", " ".join(p for b in doc.blocks for p in b.heading_path))


def test_every_sample_and_a_bomb_through_the_parser_workers():
    """Registered in load.py, the new loaders run in the isolated workers like the others (spawned interpreters that
    import rag.load first, then the new modules on first use)."""
    from rag.parse_pool import ParsePool
    from rag.settings import IngestSettings

    files = [(name, make()[0]) for name, make in SAMPLES.items()] + [("bomb.pptx", zip_bomb_pptx())]
    with ParsePool(IngestSettings(parse_workers=1, parse_timeout_s=60, parse_memory_mb=512)) as pool:
        outcomes = pool.parse_uploads(files)
    for (name, _), outcome in zip(files[:-1], outcomes, strict=False):
        assert not isinstance(outcome, LoadError), outcome
        assert outcome.format == FORMATS[name] and "\n".join(texts(outcome)) == SAMPLES[name]()[1]
    assert isinstance(outcomes[-1], LoadError) and "zip bomb" in str(outcomes[-1])


def test_the_fidelity_measure_counts_words_in_order_only():
    from tests.fidelity_measure import fidelity

    assert fidelity("Die Frist beträgt drei Monate", "die frist, BETRÄGT drei Monate.")["recall"] == 1.0
    shuffled = fidelity("one two three four", "four three two one extra")
    assert shuffled["recall"] == 0.25 and shuffled["precision"] == 0.2
    assert fidelity("a b", "")["recall"] == 0.0


def test_input_files_sorts_out_what_is_not_a_regular_file(tmp_path):
    """Special files are classified without being opened, by their own path, each once; the exit code policy is
    the CLI's (tests/test_hostile.py)."""
    (tmp_path / "a.md").write_text("# A\n\nText.\n")
    (tmp_path / "b.md").symlink_to(tmp_path / "a.md")  # the same file: once, under its first name
    os.mkfifo(tmp_path / "pipe.txt")
    (tmp_path / "dangling.md").symlink_to("/nonexistent")
    (tmp_path / "loop.md").symlink_to(tmp_path / "loop.md")
    found = input_files([tmp_path, tmp_path / "pipe.txt", tmp_path / "dangling.md", Path("/dev/null")])
    assert found.files == [tmp_path / "a.md"]
    assert found.skipped == [(f"{tmp_path}/pipe.txt", f"{tmp_path}/pipe.txt: not a regular file (a FIFO), not read"),
                             ("/dev/null", "/dev/null: not a regular file (a character device), not read")]
    assert found.broken == [
        (f"{tmp_path}/dangling.md", f"{tmp_path}/dangling.md: dangling symbolic link (to /nonexistent), not read"),
        (f"{tmp_path}/loop.md", f"{tmp_path}/loop.md: symbolic link loop, not read")]
    with pytest.raises(LoadError, match="no such file or directory"):
        input_files([tmp_path / "missing.md"])


def test_load_document_refuses_a_fifo_without_waiting_for_a_writer(tmp_path):
    """A FIFO put where a file was after the folder was listed: refused at once (opened without blocking, checked
    with fstat); a blocking open would wait here for ever, with no writer."""
    os.mkfifo(tmp_path / "late.txt")
    with pytest.raises(LoadError, match=r"late\.txt: not a regular file \(a FIFO\), not read"):
        load_document(tmp_path / "late.txt")
    with pytest.raises(LoadError, match=r": not a regular file \(a folder\), not read"):
        load_document(tmp_path)
