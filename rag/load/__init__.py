"""Turn files into `Document`s: extracted text plus the structure the chunker follows.

Every loader returns one flat `text` and `blocks` that point into it by character offsets, so that any chunk can be
traced back to the exact span of the extracted text (and, for PDFs, to its page). One module per format family:

    loader.py      load_document / load_bytes / input_files: the entry points and the parser of each format
    detect.py      format detection from the content
    document.py    Document, Block and the text assembly every parser shares
    text.py        plain text and its decoding        markdown.py   Markdown
    pdf.py         PDF paragraphs and articles        pdf_layout.py  PDF reading order (PDFium)
    ocr.py         Tesseract for pages without text   articles.py    legal articles in prose
    docx.py        Word                               office.py      PPTX, XLSX, CSV, ODT, ODS, ODP
    html.py        HTML as a browser shows it         legal.py       Akoma Ntoso and Formex XML
    mail.py        EML with its attachments
"""

from .detect import detect_format
from .document import Block, Document, document_id
from .loader import DOCUMENT_SUFFIXES, InputFiles, input_files, load_bytes, load_document
from .ocr import OcrOptions

__all__ = [
    "DOCUMENT_SUFFIXES",
    "Block",
    "Document",
    "InputFiles",
    "OcrOptions",
    "detect_format",
    "document_id",
    "input_files",
    "load_bytes",
    "load_document",
]
