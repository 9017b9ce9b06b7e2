"""A small deterministic embedder for fast tests: lexical, normalised, no model files.

Each word maps to a fixed pseudo-random vector; a text is the normalised sum of
its words' vectors, so texts sharing words are close. Never the only test of a
path: the real packaged model is used in the tests that claim to test embedding.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np

WORD = re.compile(r"\S+")


class WhitespaceTokenizer:
    """One token per whitespace-separated word, plus two special tokens."""

    def offsets(self, text: str) -> list[tuple[int, int]]:
        return [match.span() for match in WORD.finditer(text)]

    def count(self, texts: Sequence[str]) -> list[int]:
        return [len(WORD.findall(text)) + 2 for text in texts]

    def unknown(self, texts: Sequence[str]) -> list[int]:
        return [0] * len(texts)  # every word is in this vocabulary


class HashEmbedder:
    def __init__(self, name: str = "test-hash", dim: int = 32, max_tokens: int = 64) -> None:
        self.name, self.dim, self.max_tokens = name, dim, max_tokens
        self.tokenizer = WhitespaceTokenizer()
        self.batch_size = 16
        self.encoded: list[str] = []  # every text this embedder was asked to encode

    def _word_vector(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.lower().strip(".,:;!?()`'\"").encode()).digest()[:8], "little")
        return np.random.default_rng(seed).standard_normal(self.dim)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.encoded.extend(texts)
        rows = []
        for text in texts:
            vector = sum((self._word_vector(w) for w in WORD.findall(text)), np.zeros(self.dim))
            norm = np.linalg.norm(vector)
            rows.append(vector / norm if norm else np.eye(self.dim)[0])
        return np.asarray(rows, dtype=np.float32)


def minimal_pdf(lines: list[str], title: str = "", pages: list[list[str]] | None = None) -> bytes:
    """A small valid PDF showing `lines` in Helvetica (ASCII text only) on one page, or each of `pages`."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    pages = pages or [lines]
    first_page = 4  # objects: catalog, pages, font, then a page and its content per page, then the info
    kids = " ".join(f"{first_page + 2 * n} 0 R" for n in range(len(pages)))
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for n, page_lines in enumerate(pages):
        content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({escape(line)}) '" for line in page_lines) + " ET"
        objects += [
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {first_page + 2 * n + 1} 0 R "
            "/Resources << /Font << /F1 3 0 R >> >> >>",
            f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        ]
    objects.append(f"<< /Title ({escape(title)}) >>")
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{offset:010d} 00000 n \n" for offset in offsets).encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode()
    return bytes(out)


def minimal_docx(title: str, sections: dict[str, str]) -> bytes:
    """A .docx with a Title, Heading 1 sections and body paragraphs (python-docx)."""
    import io

    import docx

    document = docx.Document()
    document.add_paragraph(title, style="Title")
    for heading, body in sections.items():
        document.add_heading(heading, level=1)
        document.add_paragraph(body)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()
