"""File formats by name: which extensions kbflow parses, and a file's format from its name.

Core, so that sources (kbflow.sources) name an item's format at discovery and the parsers'
registry (kbflow.tasks.formats.parse) keys on the same names; a test keeps the two in step.
"""

from __future__ import annotations

from pathlib import PurePath, PurePosixPath

# The default include of a `files` source: every extension kbflow.tasks.formats has a parser for.
FILE_FORMATS = (".md", ".markdown", ".txt", ".rst", ".html", ".htm", ".pdf", ".docx")


def file_format(path: PurePath | str) -> str:
    """The parser a file needs, by its name: `guide.md` → md. Sphinx publishes its sources as
    `page.rst.txt` (and `page.md.txt`): those are reStructuredText (markdown), not plain text.

    >>> file_format("library/json.rst.txt"), file_format("notes.TXT"), file_format("s3://b/kb/a.md")
    ('rst', 'txt', 'md')
    """
    path = PurePosixPath(path) if isinstance(path, str) else path
    suffixes = [s.lower() for s in path.suffixes[-2:]]
    if len(suffixes) == 2 and suffixes[1] == ".txt" and suffixes[0] in (".rst", ".md", ".markdown"):
        return suffixes[0].lstrip(".")
    return path.suffix.lower().lstrip(".")
