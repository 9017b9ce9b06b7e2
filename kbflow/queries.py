"""Query files: one JSON object a line, `{"query" (or "question"): ..., "relevant": [ids]}`.

One reader for every command that takes them: `kbflow search --queries`, `kbflow evaluate`
and the evaluation of a fine-tuned model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from kbflow.errors import InvalidInput, MissingFile

QUERY_KEYS = ("query", "question")


@dataclass
class LabeledQuery:
    """A query and the ids of what answers it; `source` when the labels say it (a dataset)."""

    query: str
    relevant: list[str]
    source: str | None = None


def read_queries(path: Path, require_relevant: bool = True) -> list[LabeledQuery]:
    """Lines `{"query" (or "question"): ..., "relevant": [ids]}`; a clear error names a bad line.

    `kbflow search --queries` reads the same files without needing the relevant ids.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"queries file {path} not found")
    labeled = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{path}:{number}: not a JSON object ({error})") from None
        text = next((row[key] for key in QUERY_KEYS if isinstance(row, dict) and row.get(key)), None)
        if not isinstance(text, str) or not text.strip():
            raise InvalidInput(f"{path}:{number}: expected a non-empty \"query\" (or \"question\") string")
        relevant = row.get("relevant")
        relevant = [relevant] if isinstance(relevant, str) else relevant
        if relevant is None and not require_relevant:
            relevant = []
        elif not isinstance(relevant, list) or not [r for r in relevant if str(r).strip()]:
            raise InvalidInput(
                f"{path}:{number}: no \"relevant\" ids; give the uris, file names or ids that answer the query"
            )
        labeled.append(LabeledQuery(text, unique(str(r).strip() for r in relevant if str(r).strip())))
    if not labeled:
        raise InvalidInput(f"{path}: no queries")
    return labeled


def unique(values: Iterable[str]) -> list[str]:
    """The values in first-seen order, each once."""
    return list(dict.fromkeys(values))
