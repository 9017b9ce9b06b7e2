"""DOCX (python-docx): sections by Heading N styles, the Title style as title, tables as rows of cells."""

from __future__ import annotations

import io

from kbflow.tasks.formats.base import HeadingStack, ParsedText


def parse_docx(data: bytes) -> ParsedText:
    import docx

    document = docx.Document(io.BytesIO(data))
    parsed, stack = ParsedText(), HeadingStack()
    heading, body = "", []
    for paragraph in document.paragraphs:
        style = paragraph.style.name if paragraph.style is not None else ""
        level = int(style.split()[-1]) if style.startswith("Heading") and style.split()[-1].isdigit() else None
        if style == "Title":
            parsed.title = paragraph.text.strip()
        elif level is not None:
            parsed.add(heading, "\n".join(body))
            heading, body = stack.push(level, paragraph.text), []
        else:
            body.append(paragraph.text)
    for table in document.tables:
        body.extend(" | ".join(cell.text for cell in row.cells) for row in table.rows)
    parsed.add(heading, "\n".join(body))
    return parsed
