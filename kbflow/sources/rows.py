"""What the kinds whose documents are rows share (records files, sql tables): the field keys,
their checks, the row hash, and a row as a `Record` (kbflow.sources.records, kbflow.sources.sql)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import Field, model_validator

from kbflow.sources.acl import FieldAcl
from kbflow.sources.base import Record, SourceBase

# What json.dumps(row, sort_keys=True, default=str) builds on every call: built once (same text).
_RECORD_JSON = json.JSONEncoder(sort_keys=True, default=str)


def record_hash(row: dict) -> str:
    """sha256 of the row as JSON with sorted keys (values JSON cannot hold as their str())."""
    return hashlib.sha256(_RECORD_JSON.encode(row).encode()).hexdigest()


class RowSource(FieldAcl, SourceBase):
    """A source whose documents are rows: an id, a text, a title and metadata fields, and the
    labels of fine-tuning datasets and evaluation (sft, raft) where it has them."""

    id_field: str | None = Field(None, description="the column that identifies a row (its document id)")
    text_field: str | None = Field(None, description="the column holding the text to index")
    title_field: str | None = Field(None, description="the column holding the row's title (its chunks' heading)")
    metadata: list[str] = Field(default_factory=list, description="columns copied onto every chunk of the row")
    question_field: str | None = Field(None, description="labeled source: the column holding a question")
    answer_field: str | None = Field(None, description="labeled source: the column holding its answer")
    relevant_field: str | None = Field(None, description="list of uris / file names / ids that answer the question")

    @model_validator(mode="after")
    def _row_fields(self) -> RowSource:
        if not (self.id_field and (self.text_field or not self.index)):
            raise ValueError(f"a {self.kind} source needs id_field and text_field (no text_field when index = false)")
        if not self.index and not self.is_labeled:
            raise ValueError("a labeled-only source (index = false) needs question_field and answer_field")
        return self

    @property
    def is_labeled(self) -> bool:
        return bool(self.question_field and self.answer_field)

    def record_fields(self) -> list[str]:
        """The fields read from each row, each once."""
        fields = [self.id_field, self.text_field, self.title_field, *self.metadata,
                  self.question_field, self.answer_field, self.relevant_field]
        return [name for name in dict.fromkeys(fields) if name]

    def record(self, row: dict[str, Any], text: str | None = None) -> Record:
        """A row as a document: its text field (or `text`, already checked), title and metadata fields."""
        return Record(
            text=str(row.get(self.text_field) or "") if text is None else text,
            title=str(row.get(self.title_field) or "") if self.title_field else "",
            metadata={name: row.get(name) for name in self.metadata},
        )
