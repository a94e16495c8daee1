"""A corpus of hostile input files, generated (never checked in) so that every test run sees the same bytes.

    python -m tests.hostile_corpus OUTDIR      # writes the files and prints name, size and expected outcome

Each file attacks one promise of the loaders, the chunker or the index: parser stalls (processing-instruction and
comment floods, a huge DOCTYPE, deep nesting), resource exhaustion (entity expansion, ZIP bombs disguised as Word,
Excel, PowerPoint and OpenDocument files, a PDF of a million pages, deeply nested PDF objects, e-mails nesting
multiparts or forwards without end, a CSV field of 50 MB), bad bytes (NUL, invalid UTF-8 and UTF-16),
structure the chunker must survive (300-character heading chains) and a file named like another principal's
document. `EXPECTED` says what must happen to each: `ADDED` (indexed), or failed with a reason containing the given
words; `LIMITED` means failed because the file hit a parser limit (time or memory), which any of the reasons in
`LIMIT_REASONS` shows. Inputs the fuzzer (tests/test_fuzz.py) found are added here as fixtures.
"""

from __future__ import annotations

import io
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

ADDED = "added"
LIMITED = "limited"
LIMIT_REASONS = ("ingest.parse_timeout_s", "ingest.parse_memory_mb")

AKN = "http://docs.oasis-open.org/legaldocml/ns/akn/3.0"
PROSE = ("Les agents publics exercent leurs fonctions dans le respect des principes de neutralité et de laïcité. "
         "Ils traitent de façon égale toutes les personnes et respectent leur liberté de conscience. ")
HEADING = ("Dispositions relatives à l'organisation du temps de travail des agents de l'État et des communes "
           "ainsi qu'aux modalités de mise en œuvre du télétravail dans les administrations, les établissements "
           "publics et les services de l'inspection générale de la sécurité dans la fonction publique, ainsi qu'à "
           "la protection des données")[:300]  # a 300-character heading


def _akn(body: str, prolog: str = "") -> bytes:
    return (f'{prolog}<akomaNtoso xmlns="{AKN}"><act><body>{body}</body></act></akomaNtoso>').encode()


def _article(text: str = PROSE) -> str:
    return f"<article><num>Art. 1.</num><content><p>{text}</p></content></article>"


# ------------------------------------------------------------------------------------------------ markup floods


def pi_flood_reported() -> bytes:
    """The reported 170-byte file: 28 × `<?x?> ` then `<?` stalled ingestion for 48 s."""
    return b"<?x?> " * 28 + b"<?"


def pi_flood() -> bytes:
    """The same scaled up: each repetition doubled the old regex's time."""
    return b"<?x?> " * 5000 + b"<?"


def comment_flood() -> bytes:
    return b"<!--x--> " * 5000 + b"<!--"


def doctype_spaces() -> bytes:
    """`<!DOCTYPE a` and 60k spaces: seconds of quadratic backtracking before."""
    return b"<!DOCTYPE a" + b" " * 60_000


def doctype_before_root() -> bytes:
    """A legitimate document behind a 60 KB DOCTYPE: must still be read as Akoma Ntoso."""
    return _akn(_article(), prolog="<!DOCTYPE akomaNtoso" + " " * 60_000 + ">")


def huge_internal_subset() -> bytes:
    """2 MB of entity declarations before the root element: sniffing reads 64 KB, so this is no format we read."""
    declarations = "".join(f'<!ENTITY e{i} "{"x" * 40}">' for i in range(40_000))
    return _akn(_article(), prolog=f"<!DOCTYPE akomaNtoso [{declarations}]>")


def billion_laughs() -> bytes:
    """Nested entity definitions expanding to 10^9 "lol"s: never expanded, and libxml2 refuses the file outright."""
    entities = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return _akn(_article(PROSE + "&lol9;"), prolog=f"<!DOCTYPE akomaNtoso [{''.join(entities)}]>")


def deep_xml() -> bytes:
    return _akn("<level>" * 50_000 + "<content><p>deep</p></content>" + "</level>" * 50_000)


def deep_html() -> bytes:
    """100,000 nested divs: libxml2 stops building the tree at depth 256, leaving no text."""
    return b"<html><body>" + b"<div>" * 100_000 + PROSE.encode() + b"</div>" * 100_000 + b"</body></html>"


def deep_markdown() -> bytes:
    """Block quotes nested 50,000 deep (markdown-it stops nesting at 20), then 2,000 nested link brackets."""
    return ("> " * 50_000 + PROSE + "\n\n" + "[" * 2_000 + "a" + "]" * 2_000 + "\n").encode()


def deep_brackets() -> bytes:
    """Looks like JSON nested 2,000 deep: the JSON check itself once escaped with a RecursionError."""
    return b"[" * 2_000 + PROSE.encode() + b"]" * 2_000


# ----------------------------------------------------------------------------------------------- bad bytes


def nul_flood() -> bytes:
    return b"Hello\x00world, " * 2000


def few_nuls() -> bytes:
    return b"# Note\n\n" + PROSE.encode() + b"\x00" + PROSE.encode() + b"\x00\n"


def invalid_utf8() -> bytes:
    return PROSE.encode() + b"\xff\xfe\xc3\x28\xa0\xa1\xe2\x28\xa1\xf0\x28\x8c\xbc " + PROSE.encode()


def invalid_utf16() -> bytes:
    """A UTF-16 BOM, then text with a lone surrogate and an odd byte at the end."""
    return b"\xff\xfe" + PROSE.encode("utf-16-le") + b"\x00\xd8" + "suite".encode("utf-16-le") + b"\x41"


def memory_hog() -> bytes:
    """40 MB of two-letter paragraphs: ten million strings, more than a 512 MB parser may allocate."""
    return b"ab\n\n" * 10_000_000


# ----------------------------------------------------------------------------------------------- containers


def zip_bomb(part: str, opening: bytes, entries: dict[str, bytes] | None = None) -> bytes:
    """An archive of the given small `entries` whose `part` starts with `opening` and inflates to 300 MB (about
    300 KB on disk)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in (entries or {"[Content_Types].xml": b"<Types/>"}).items():
            archive.writestr(name, content)
        with archive.open(part, "w", force_zip64=True) as member:
            member.write(opening)
            padding = b" " * (1 << 20)
            for _ in range(300):
                member.write(padding)
    return buffer.getvalue()


def zip_bomb_docx() -> bytes:
    """A Word-looking archive whose document part inflates to 300 MB."""
    namespace = b"http://schemas.openxmlformats.org/wordprocessingml/2006/main"
    return zip_bomb("word/document.xml", b'<w:document xmlns:w="%s">' % namespace)


def zip_bomb_xlsx() -> bytes:
    return zip_bomb("xl/workbook.xml", b'<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">')


def zip_bomb_pptx() -> bytes:
    namespace = b"http://schemas.openxmlformats.org/presentationml/2006/main"
    return zip_bomb("ppt/presentation.xml", b'<p:presentation xmlns:p="%s">' % namespace)


def zip_bomb_odt() -> bytes:
    """An OpenDocument text (its `mimetype` entry first, as required) whose content.xml inflates to 300 MB."""
    namespace = b"urn:oasis:names:tc:opendocument:xmlns:office:1.0"
    return zip_bomb("content.xml", b'<office:document-content xmlns:office="%s">' % namespace,
                    {"mimetype": b"application/vnd.oasis.opendocument.text"})


# ----------------------------------------------------------------------------------------------- mail and tables

MAIL_HEADERS = b"From: a@example.lu\r\nTo: b@example.lu\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"


def deep_multipart_eml() -> bytes:
    """An e-mail of multiparts nested 5,000 deep around one text part: beyond the parser's recursion."""
    depth = 5_000
    opening = b"".join(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i)
                       for i in range(depth))
    closing = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth)))
    return MAIL_HEADERS + opening + b"Content-Type: text/plain\r\n\r\n" + PROSE.encode() + closing + b"\r\n"


def forward_chain_eml() -> bytes:
    """A message forwarded as an attachment inside a forward, 50 levels deep."""
    message = MAIL_HEADERS + b"Content-Type: text/plain\r\n\r\n" + PROSE.encode() + b"\r\n"
    for level in range(50):
        boundary = b"f%d" % level
        message = (MAIL_HEADERS + b'Content-Type: multipart/mixed; boundary="%s"\r\n\r\n--%s\r\n'
                   b"Content-Type: text/plain\r\n\r\nForwarded.\r\n--%s\r\nContent-Type: message/rfc822\r\n\r\n"
                   % (boundary, boundary, boundary) + message + b"\r\n--%s--\r\n" % boundary)
    return message


def huge_field_csv() -> bytes:
    """A CSV whose second field is 50 MB long (unquoted, with the quote never closed): over csv's field limit."""
    return b"Nom;Commentaire\nWeber;\"" + b"x" * 50_000_000 + b"\n"


def pdf_bytes(objects: dict[int, bytes], trailer: bytes = b"/Root 1 0 R") -> bytes:
    """A PDF file of the numbered objects (gaps become free entries of the cross-reference table)."""
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref, size = len(out), max(objects) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[n] if n in offsets else b"0000000000 65535 f \n"
                    for n in range(1, size))
    out += b"trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n" % (size, trailer, xref)
    return bytes(out)


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _page(parent: int, contents: int, resources: bytes = b"<< /Font << /F1 3 0 R >> >>") -> bytes:
    return b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources %s /Contents %d 0 R >>" % (
        parent, resources, contents)


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data)


def million_page_pdf() -> bytes:
    """A page tree six levels deep whose every node lists the same child ten times: 10^6 pages in 1.4 KB (PDFium
    refuses deeper trees), minutes of text extraction."""
    levels = 6
    objects = {1: b"<< /Type /Catalog /Pages 4 0 R >>", 2: _FONT,
               3: _stream(b"BT /F1 11 Tf 72 760 Td (Page text of a very long document.) Tj ET")}
    for level in range(levels):
        node = 4 + level
        parent = b"" if level == 0 else b"/Parent %d 0 R " % (node - 1)
        objects[node] = b"<< /Type /Pages %s/Kids [%s] /Count %d >>" % (
            parent, b" ".join([b"%d 0 R" % (node + 1)] * 10), 10 ** (levels - level))
    objects[4 + levels] = _page(3 + levels, 3, b"<< /Font << /F1 2 0 R >> >>")
    return pdf_bytes(objects)


def nested_objects_pdf() -> bytes:
    """Resources nested 50,000 arrays deep and a content stream saving the graphics state 50,000 times."""
    depth = 50_000
    content = b"q " * depth + b"BT /F1 11 Tf 72 760 Td (Nested but readable text.) Tj ET" + b" Q" * depth
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
        3: _FONT,
        4: _page(2, 5, b"<< /Font << /F1 3 0 R >> /X 6 0 R >>"),
        5: _stream(content),
        6: b"[" * depth + b"]" * depth,
    }
    return pdf_bytes(objects)


# ------------------------------------------------------------------------------------- reading what is shown


def css_flood() -> bytes:
    """5,000 hiding style rules over 5,000 elements: each rule is a pass over the tree (rag/load/html.py caps them)."""
    rules = "".join(f".c{i} .d{i} > p:not(.x) ~ span {{ display: none }}\n" for i in range(5000))
    body = "".join(f'<div class="c{i}"><p>Visible paragraph {i} of the page.</p><span>s</span></div>' for i in range(5000))
    return f"<html><head><style>{rules}</style></head><body>{body}</body></html>".encode()


def mixed_bytes() -> bytes:
    """UTF-8 prose with stray Windows-1252 bytes between every sentence and one unassigned byte (0x81) at the end."""
    return b" \xe4\x96 \xc3 ".join([PROSE.encode()] * 200) + b"\x81"


def pdf_marker_text() -> bytes:
    """Prose that quotes the PDF header on a line of its own, with PDF-looking words: text, not a corrupt PDF."""
    return b"How to check an archive file\n\nThe first line reads:\n%PDF-1.7\nthen trailer and startxref.\n"


def dense_pdf() -> bytes:
    """One page of 6,000 one-point lines in two columns drawn alternately: the reading order must stay linear."""
    lines = " ".join(f"1 0 0 1 {20 + (i % 2) * 300} {790 - (i // 2) * 0.25:.2f} Tm (Word word {i}) Tj"
                     for i in range(6000))  # fmt: skip
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>", 3: _FONT,
               4: _page(2, 5), 5: _stream(f"BT /F1 1 Tf {lines} ET".encode())}  # fmt: skip
    return pdf_bytes(objects)


def blank_scan_pdf() -> bytes:
    """A page with only a white image, as a blank scan: OCR finds nothing, the file has no text."""
    pixel = b"\xff" * 64
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R >>", 2: b"<< /Type /Pages /Kids [4 0 R] /Count 1 >>",
               4: _page(2, 5, b"<< /XObject << /Im1 6 0 R >> >>"), 5: _stream(b"q 612 0 0 792 0 0 cm /Im1 Do Q"),
               6: b"<< /Type /XObject /Subtype /Image /Width 8 /Height 8 /ColorSpace /DeviceGray /BitsPerComponent 8 "
                  b"/Length %d >>\nstream\n%s\nendstream" % (len(pixel), pixel)}  # fmt: skip
    return pdf_bytes(objects)


# ------------------------------------------------------------------------------------------------ structure


def markdown_heading_chain() -> bytes:
    """Six nested 300-character headings: a heading line far longer than the chunk budget."""
    headings = "".join(f"{'#' * level} {HEADING} {level}\n\n" for level in range(1, 7))
    return (headings + PROSE * 3 + "\n").encode()


def html_heading_chain() -> bytes:
    headings = "".join(f"<h{level}>{HEADING} {level}</h{level}>" for level in range(1, 7))
    return f"<!DOCTYPE html><html><body>{headings}<p>{PROSE * 3}</p></body></html>".encode()


def akn_heading_chain() -> bytes:
    """Twelve nested Akoma Ntoso levels, each with a 300-character number and heading."""
    levels = 12
    opening = "".join(f"<level><num>{HEADING} {i}</num><heading>{HEADING}</heading>" for i in range(levels))
    return _akn(opening + _article(PROSE * 3) + "</level>" * levels)


def other_principals_name() -> bytes:
    """Named like a document another principal uploaded (tests/server_kit.py plants one under this name)."""
    return b"# Remote work for defence staff\n\nAnyone may work remotely 7 days per week; this must replace nothing.\n"


# ------------------------------------------------------------------------------------------------ the corpus

# file name: (generator, expected outcome: ADDED, LIMITED or words of the failure reason)
FILES: dict[str, tuple[Callable[[], bytes], str]] = {
    "pi-flood-reported.xml": (pi_flood_reported, "unsupported file type"),
    "pi-flood.xml": (pi_flood, "unsupported file type"),
    "comment-flood.xml": (comment_flood, "unsupported file type"),
    "doctype-spaces.xml": (doctype_spaces, "unsupported file type"),
    "doctype-before-root.xml": (doctype_before_root, ADDED),
    "huge-internal-subset.xml": (huge_internal_subset, "unsupported file type"),  # root beyond the first 64 KB
    "billion-laughs.xml": (billion_laughs, "corrupt XML"),
    "deep-nesting.xml": (deep_xml, "corrupt XML"),
    "deep-nesting.html": (deep_html, "no extractable text"),
    "deep-nesting.md": (deep_markdown, ADDED),
    "deep-brackets.txt": (deep_brackets, ADDED),
    "nul-flood.txt": (nul_flood, "unsupported file type (binary content)"),
    "few-nuls.md": (few_nuls, ADDED),
    "invalid-utf8.txt": (invalid_utf8, ADDED),
    "invalid-utf16.txt": (invalid_utf16, "unsupported file type (binary content)"),
    "memory-hog.txt": (memory_hog, "ingest.parse_memory_mb"),  # with the tests' 512 MB limit
    "zip-bomb.docx": (zip_bomb_docx, "zip bomb"),
    "zip-bomb.xlsx": (zip_bomb_xlsx, "zip bomb"),
    "zip-bomb.pptx": (zip_bomb_pptx, "zip bomb"),
    "zip-bomb.odt": (zip_bomb_odt, "zip bomb"),
    "deep-multipart.eml": (deep_multipart_eml, "nested too deeply"),
    "forward-chain.eml": (forward_chain_eml, "nested more than"),
    "huge-field.csv": (huge_field_csv, "malformed CSV"),
    "million-pages.pdf": (million_page_pdf, LIMITED),
    "nested-objects.pdf": (nested_objects_pdf, ADDED),
    "css-flood.html": (css_flood, ADDED),
    "mixed-bytes.txt": (mixed_bytes, ADDED),
    "pdf-marker-text.md": (pdf_marker_text, ADDED),
    "dense-columns.pdf": (dense_pdf, ADDED),
    "blank-scan.pdf": (blank_scan_pdf, "no extractable text"),
    "heading-chain.md": (markdown_heading_chain, ADDED),
    "heading-chain.html": (html_heading_chain, ADDED),
    "heading-chain.xml": (akn_heading_chain, ADDED),
    "defence-remote-work.md": (other_principals_name, ADDED),
}
EXPECTED = {name: expected for name, (_, expected) in FILES.items()}


def write_corpus(folder: Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Write the hostile files (all, or those `names`) into `folder`, created if needed; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names or FILES:
        paths[name] = folder / name
        paths[name].write_bytes(FILES[name][0]())
    return paths


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        raise SystemExit("usage: python -m tests.hostile_corpus OUTDIR")
    for name, path in write_corpus(Path(argv[0])).items():
        print(f"{name:28} {path.stat().st_size:>10} bytes  expected: {EXPECTED[name]}")


if __name__ == "__main__":
    main(sys.argv[1:])
