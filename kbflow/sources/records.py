"""`records` sources: .jsonl / .csv / .parquet files whose rows are documents (or labeled questions).

What is loaded: the configured fields (`id_field`, `text_field`, `title_field`, `metadata`, and the
label fields `question_field`, `answer_field`, `relevant_field`) of every row of every included file.
A row's uri is `<file uri>#<id>`. How incrementally: each row is hashed (sha256 of its fields as
JSON) at discovery; a batch's rows are read again from their file (once per file) where it is
parsed. A malformed line, a row without an id or a repeated id is quarantined; a file that cannot be
read keeps its documents. `kbflow watch` polls the files' names, sizes and mtimes.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from kbflow.errors import InvalidInput
from kbflow.quarantine import Quarantined
from kbflow.sources.acl import BadAcl
from kbflow.sources.base import Content, Discovery, LabeledRows, ReadFailed, make_doc_id
from kbflow.sources.paths import LocalPathSource
from kbflow.sources.rows import RowSource, record_hash

RECORD_FORMATS = (".jsonl", ".csv", ".parquet")


class RecordsSource(LocalPathSource, RowSource):
    """Rows of local .jsonl / .csv / .parquet files, one document a row."""

    kind: Literal["records"] = Field(description="records: rows of .jsonl / .csv / .parquet files, one document a row")
    default_formats: ClassVar[tuple[str, ...]] = RECORD_FORMATS

    def read_file(self, path: Path) -> tuple[list[dict], list[tuple[int, str]]]:
        """The rows of one records file (only the configured fields) and its bad lines.

        JSON Lines are read line by line so one malformed line is reported, not fatal.
        Raises OSError / pyarrow.ArrowInvalid for a file that cannot be read at all.
        """
        wanted = [*self.record_fields(), *filter(None, [self.acl_field])]
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            rows, bad = [], []
            with path.open("r", encoding="utf-8", errors="replace") as handle:
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        bad.append((number, f"invalid JSON: {error}"))
                        continue
                    if not isinstance(row, dict):
                        bad.append((number, "not a JSON object"))
                        continue
                    rows.append({name: row.get(name) for name in wanted})
            return rows, bad
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        else:
            raise InvalidInput(f"unsupported records format {suffix!r}")
        missing = [name for name in wanted if name not in table.column_names]
        if missing:
            raise InvalidInput(f"missing column(s) {missing}; configured fields: {wanted}")
        return table.select(wanted).to_pylist(), []

    def discover(self, max_file_bytes: int, known_documents: pa.Table | None = None,
                 cursor: str | None = None) -> Discovery:
        """Every row of every included records file, hashed per row (a records file may be large:
        max_file_bytes is per document)."""
        self.require_path()
        rows, quarantined, unreadable = [], [], set()
        for full, file_uri in self.files(quarantined):
            try:
                records, bad_lines = self.read_file(full)
                mtime = full.stat().st_mtime
            except (OSError, ValueError, pa.ArrowException) as error:
                quarantined.append(Quarantined(self.name, file_uri, "discover", "unreadable_records_file", str(error)))
                unreadable.add((self.name, file_uri))
                continue
            for number, problem in bad_lines:
                quarantined.append(Quarantined(self.name, f"{file_uri}:{number}", "discover", "bad_record", problem))
            seen: set[str] = set()
            for record in records:
                record_id = record.get(self.id_field)
                if record_id is None or str(record_id) == "":
                    quarantined.append(Quarantined(self.name, file_uri, "discover", "missing_id",
                                                   f"row without {self.id_field!r}: {str(record)[:200]}"))
                    continue
                uri = f"{file_uri}#{record_id}"
                if uri in seen:
                    quarantined.append(Quarantined(self.name, uri, "discover", "duplicate_id",
                                                   f"{self.id_field} {record_id!r} repeats in {file_uri}"))
                    continue
                seen.add(uri)
                try:
                    acl = self.row_acl(record)
                except BadAcl as bad:
                    quarantined.append(Quarantined(self.name, uri, "discover", bad.reason, bad.detail,
                                                   doc_id=make_doc_id(self.name, uri)))
                    unreadable.add((self.name, uri))  # a published row keeps its last good chunks
                    continue
                record.pop(self.acl_field, None)  # not part of the hash: an ACL change is metadata
                size = len(str(record.get(self.text_field) or "").encode())
                item = self.item(uri, full, full.suffix.lower().lstrip("."), record_hash(record), size, mtime)
                rows.append({**item, "acl": acl})
        return self.discovered(rows, quarantined, unreadable)

    def read(self, items: list[dict]) -> Iterator[tuple[dict, Content]]:
        """Records of changed rows, each file read once."""
        by_path: dict[str, list[dict]] = defaultdict(list)
        for item in items:
            by_path[item["path"]].append(item)
        for path, path_items in by_path.items():
            try:
                records, _ = self.read_file(Path(path))
            except (OSError, ValueError, pa.ArrowException) as error:
                yield from ((item, ReadFailed("unreadable_records_file", str(error))) for item in path_items)
                continue
            by_id = {str(record.get(self.id_field)): record for record in records}
            for item in path_items:
                record = by_id.get(item["uri"].split("#", 1)[1])
                yield item, ReadFailed("record_vanished", "changed while reading") if record is None else self.record(record)

    def fingerprint(self) -> tuple:
        return self.local_fingerprint()

    def labeled_rows(self) -> LabeledRows:
        """Items from discovery; an item's row from its records file (each file read once)."""
        by_path: dict[str, dict[str, dict]] = {}

        def row_of(item: dict) -> dict:
            if item["path"] not in by_path:
                rows, _ = self.read_file(Path(item["path"]))
                by_path[item["path"]] = {str(row.get(self.id_field)): row for row in rows}
            return by_path[item["path"]][item["uri"].split("#", 1)[1]]

        return self.discover(max_file_bytes=1 << 62), row_of
