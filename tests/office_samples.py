"""Sample files of a shared drive's formats, made with the libraries that write them (python-pptx, openpyxl, odfpy,
the standard library's csv and email), each with the text a reader sees in it, in reading order.

Used by tests/test_load_formats.py and bench/fidelity.py. `SAMPLES` maps a file name to a function returning
(file bytes, expected text); the expected text is what the loader must return, word for word and in order.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Callable
from email.message import EmailMessage

TELEWORK = ("Le télétravail est autorisé trois jours par semaine au maximum. La demande est introduite au moyen du "
            "formulaire T-12 auprès du chef de service.")
HOMEOFFICE = ("Beschäftigte dürfen höchstens zwei Tage pro Woche im Homeoffice arbeiten. Der Antrag wird beim "
              "Vorgesetzten gestellt.")
LEAVE_ROWS = [("Nom", "Service", "Jours de congé", "Depuis"), ("Weber", "Finances", 26, dt.date(2024, 3, 1)),
              ("Schmit", "Informatique", 28, dt.date(2019, 9, 16)), ("Muller", "Archives", 27.5, None)]


def _leave_row_texts() -> list[str]:
    return ["Nom | Service | Jours de congé | Depuis", "Weber | Finances | 26 | 2024-03-01",
            "Schmit | Informatique | 28 | 2019-09-16", "Muller | Archives | 27.5"]


# ------------------------------------------------------------------------------------------------------ PPTX


def pptx_sample() -> tuple[bytes, str]:
    """Two slides: a title and body with speaker notes; a table inside a group beside a text box."""
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    deck.core_properties.title = "Télétravail : les nouvelles règles"
    first = deck.slides.add_slide(deck.slide_layouts[1])
    first.shapes.title.text = "Télétravail"
    first.placeholders[1].text = TELEWORK + "\nLe formulaire est disponible sur l'intranet."
    first.notes_slide.notes_text_frame.text = "Rappeler la date limite du 1er mars aux chefs de service."
    second = deck.slides.add_slide(deck.slide_layouts[5])
    second.shapes.title.text = "Jours de congé"
    group = second.shapes.add_group_shape()
    box = group.shapes.add_textbox(Inches(1), Inches(1.5), Inches(6), Inches(1))
    box.text_frame.text = "Situation au 1er janvier, par agent."
    table = second.shapes.add_table(len(LEAVE_ROWS), 3, Inches(1), Inches(3), Inches(6), Inches(2)).table
    for r, row in enumerate(LEAVE_ROWS):
        for c in range(3):
            table.cell(r, c).text = str(row[c])
    buffer = io.BytesIO()
    deck.save(buffer)
    expected = ["Télétravail", TELEWORK, "Le formulaire est disponible sur l'intranet.",
                "Rappeler la date limite du 1er mars aux chefs de service.", "Jours de congé",
                "Situation au 1er janvier, par agent.", "Nom | Service | Jours de congé", "Weber | Finances | 26",
                "Schmit | Informatique | 28", "Muller | Archives | 27.5"]  # fmt: skip
    return buffer.getvalue(), "\n".join(expected)


# ------------------------------------------------------------------------------------------------ XLSX and CSV


def xlsx_sample() -> tuple[bytes, str]:
    """Two sheets (one with a gap row and a date), and an empty third sheet."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.properties.title = "Congés 2025"
    sheet = workbook.active
    sheet.title = "Congés"
    for index, row in enumerate(LEAVE_ROWS):
        sheet.append(list(row))
        if index == 1:
            sheet.append([None, None, None, None])
    budget = workbook.create_sheet("Budget Formation")
    budget.append(["Poste", "Montant (EUR)"])
    budget.append(["Cours de luxembourgeois", 12000])
    workbook.create_sheet("Vide")
    buffer = io.BytesIO()
    workbook.save(buffer)
    expected = ["Congés", *_leave_row_texts(), "Budget Formation", "Poste | Montant (EUR)",
                "Cours de luxembourgeois | 12000"]
    return buffer.getvalue(), "\n".join(expected)


def csv_sample() -> tuple[bytes, str]:
    """Excel's French export: semicolons, a quoted field with the delimiter and a line break, cp1252 bytes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";")
    writer.writerow(["Nom", "Adresse", "Jours de congé"])
    writer.writerow(["Weber", "12, rue de l'Église; Esch", 26])
    writer.writerow(["Schmit", "3, place Guillaume\nLuxembourg", 28])
    writer.writerow([])
    expected = ["Nom | Adresse | Jours de congé", "Weber | 12, rue de l'Église; Esch | 26",
                "Schmit | 3, place Guillaume Luxembourg | 28"]
    return buffer.getvalue().encode("cp1252"), "\n".join(expected)


# ----------------------------------------------------------------------------------------------- OpenDocument


def _odf_bytes(document) -> bytes:
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _paragraph(text: str):
    from odf.text import P

    return P(text=text)


def odt_sample() -> tuple[bytes, str]:
    """Headings of two levels, a list, a table, a comment and a tracked deletion (neither of which is text)."""
    from odf import dc, office
    from odf.namespaces import XMLNS
    from odf.opendocument import OpenDocumentText
    from odf.table import Table, TableCell, TableColumn, TableRow
    from odf.text import ChangedRegion, Deletion, H, List, ListItem, P, TrackedChanges

    document = OpenDocumentText()
    document.meta.addElement(dc.Title(text="Dienstanweisung Homeoffice"))
    changes = TrackedChanges()
    region = ChangedRegion(check_grammar=False)
    region.setAttrNS(XMLNS, "id", "ct1")
    deletion = Deletion()
    deletion.addElement(P(text="Drei Tage pro Woche sind erlaubt."))
    region.addElement(deletion)
    changes.addElement(region)
    document.text.addElement(changes)
    document.text.addElement(H(outlinelevel=1, text="1. Geltungsbereich"))
    paragraph = P(text=HOMEOFFICE)
    comment = office.Annotation()
    comment.addElement(P(text="Kommentar: mit dem Personalrat abstimmen"))
    paragraph.addElement(comment)
    document.text.addElement(paragraph)
    items = List()
    for text in ("Der Arbeitsplatz muss ergonomisch sein.", "Die Datenschutzregeln gelten auch zu Hause."):
        item = ListItem()
        item.addElement(P(text=text))
        items.addElement(item)
    document.text.addElement(items)
    document.text.addElement(H(outlinelevel=2, text="1.1 Ausnahmen"))
    table = Table(name="Tage")
    table.addElement(TableColumn(numbercolumnsrepeated=2))
    for row in (("Gruppe", "Tage"), ("Teilzeit", "1")):
        table_row = TableRow()
        for value in row:
            cell = TableCell(valuetype="string")
            cell.addElement(P(text=value))
            table_row.addElement(cell)
        table.addElement(table_row)
    document.text.addElement(table)
    expected = ["1. Geltungsbereich", HOMEOFFICE, "Der Arbeitsplatz muss ergonomisch sein.",
                "Die Datenschutzregeln gelten auch zu Hause.", "1.1 Ausnahmen", "Gruppe | Tage", "Teilzeit | 1"]
    return _odf_bytes(document), "\n".join(expected)


def ods_sample() -> tuple[bytes, str]:
    """Two sheets; equal cells and rows stored as repeats (as LibreOffice writes them), trailing empty rows."""
    from odf.opendocument import OpenDocumentSpreadsheet
    from odf.table import Table, TableCell, TableRow

    document = OpenDocumentSpreadsheet()
    rows = {"Congés": [(("Nom", 1), ("Jours", 1)), (("Weber", 1), ("26", 1)), (("Schmit", 1), ("26", 1))],
            "Astreintes": [(("Semaine", 1), ("Équipe", 1)), (("S1", 1), ("Réseau", 2))]}
    for name, sheet_rows in rows.items():
        table = Table(name=name)
        for cells in sheet_rows:
            row = TableRow(numberrowsrepeated=2) if cells[0][0] == "S1" else TableRow()
            for value, repeat in cells:
                cell = TableCell(valuetype="string", numbercolumnsrepeated=repeat)
                cell.addElement(_paragraph(value))
                row.addElement(cell)
            table.addElement(row)
        empty = TableRow(numberrowsrepeated=1_048_000)
        empty.addElement(TableCell(numbercolumnsrepeated=1024))
        table.addElement(empty)
        document.spreadsheet.addElement(table)
    expected = ["Congés", "Nom | Jours", "Weber | 26", "Schmit | 26", "Astreintes", "Semaine | Équipe",
                "S1 | Réseau | Réseau", "S1 | Réseau | Réseau"]
    return _odf_bytes(document), "\n".join(expected)


def odp_sample() -> tuple[bytes, str]:
    """Two slides with title and body frames; the first has speaker notes."""
    from odf import draw, presentation, style
    from odf.namespaces import PRESENTATIONNS
    from odf.opendocument import OpenDocumentPresentation

    document = OpenDocumentPresentation()
    layout = style.PageLayout(name="PM1")
    document.automaticstyles.addElement(layout)
    master = style.MasterPage(name="Standard", pagelayoutname=layout)
    document.masterstyles.addElement(master)
    slides = [("Sécurité informatique", "Les mots de passe comptent 14 caractères au moins.", "Insister sur la MFA."),
              ("Incidents", "Tout incident est signalé au CERT dans l'heure.", None)]
    for number, (title, body, notes) in enumerate(slides, start=1):
        page = draw.Page(masterpagename=master, name=f"page{number}")
        for text, kind in ((title, "title"), (body, "outline")):
            page.addElement(_odp_frame(draw, text, kind, PRESENTATIONNS))
        if notes:
            notes_element = presentation.Notes()
            notes_element.addElement(_odp_frame(draw, notes, "notes", PRESENTATIONNS))
            page.addElement(notes_element)
        document.presentation.addElement(page)
    expected = [part for slide in slides for part in slide if part]
    return _odf_bytes(document), "\n".join(expected)


def _odp_frame(draw, text: str, kind: str, namespace: str):
    frame = draw.Frame(width="20cm", height="3cm", x="1cm", y="1cm")
    frame.setAttrNS(namespace, "class", kind)
    box = draw.TextBox()
    box.addElement(_paragraph(text))
    frame.addElement(box)
    return frame


# ------------------------------------------------------------------------------------------------------- EML


def eml_sample() -> tuple[bytes, str]:
    """A French message with a plain and an HTML body, a DOCX-free CSV attachment and a forwarded German message
    carrying an ODT; an image attachment that is no text."""
    forwarded = EmailMessage()
    forwarded["From"] = "Petra Klein <p.klein@example.lu>"
    forwarded["To"] = "Service du personnel <personnel@example.lu>"
    forwarded["Date"] = "Mon, 3 Mar 2025 09:15:00 +0100"
    forwarded["Subject"] = "Homeoffice-Regelung"
    forwarded.set_content(HOMEOFFICE + "\n")
    odt, odt_text = odt_sample()
    forwarded.add_attachment(odt, maintype="application", subtype="vnd.oasis.opendocument.text",
                             filename="anweisung.odt")
    message = EmailMessage()
    message["From"] = "Jean Weber <j.weber@example.lu>"
    message["To"] = "Direction <direction@example.lu>"
    message["Cc"] = "Archives <archives@example.lu>"
    message["Date"] = "Tue, 4 Mar 2025 14:02:00 +0100"
    message["Subject"] = "Télétravail : nouvelles règles"
    message.set_content(f"Bonjour,\n\n{TELEWORK}\n\nCordialement,\nJean Weber\n")
    message.add_alternative(f"<html><body><p>Bonjour,</p><p>{TELEWORK}</p></body></html>", subtype="html")
    table, table_text = csv_sample()
    message.add_attachment(table, maintype="text", subtype="csv", filename="conges.csv")
    message.add_attachment(b"\x89PNG\r\n\x1a\n" + bytes(64), maintype="image", subtype="png", filename="logo.png")
    message.add_attachment(forwarded)
    expected = [
        "From: Jean Weber <j.weber@example.lu>", "To: Direction <direction@example.lu>",
        "Cc: Archives <archives@example.lu>", "Date: Tue, 04 Mar 2025 14:02:00 +0100",
        "Subject: Télétravail : nouvelles règles", "Attachments: conges.csv, logo.png, message-3.eml",
        "Bonjour,", TELEWORK, "Cordialement,\nJean Weber", table_text,
        "From: Petra Klein <p.klein@example.lu>", "To: Service du personnel <personnel@example.lu>",
        "Date: Mon, 03 Mar 2025 09:15:00 +0100", "Subject: Homeoffice-Regelung", "Attachments: anweisung.odt",
        HOMEOFFICE, odt_text,
    ]  # fmt: skip
    return bytes(message), "\n".join(expected)


SAMPLES: dict[str, Callable[[], tuple[bytes, str]]] = {
    "telework.pptx": pptx_sample,
    "conges.xlsx": xlsx_sample,
    "conges.csv": csv_sample,
    "homeoffice.odt": odt_sample,
    "conges.ods": ods_sample,
    "securite.odp": odp_sample,
    "teletravail.eml": eml_sample,
}
