"""PDF (pypdf): the text of every page without its running headers, footers and page numbers
(kbflow.tasks.formats.page_furniture); the title from the metadata, else the running header."""

from __future__ import annotations

import io
import logging

from kbflow.tasks.formats.base import ParsedText, ParseError
from kbflow.tasks.formats.page_furniture import strip_page_furniture


def parse_pdf(data: bytes) -> ParsedText:
    from pypdf import PdfReader

    # pypdf logs repairs of damaged files as warnings; a failure becomes a quarantine record.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    reader = PdfReader(io.BytesIO(data), strict=False)
    if reader.is_encrypted:
        raise ParseError("encrypted_pdf", "the PDF is encrypted")
    pages, running_title = strip_page_furniture([page.extract_text() or "" for page in reader.pages])
    if not any(page.strip() for page in pages):
        raise ParseError("no_text", "the PDF has no extractable text (a scan?)")
    parsed = ParsedText()
    parsed.add("", "\n\n".join(pages))
    metadata_title = (reader.metadata.title if reader.metadata else None) or ""
    parsed.title = metadata_title.strip() or running_title  # a running header is most often the title
    return parsed
