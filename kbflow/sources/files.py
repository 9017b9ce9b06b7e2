"""`files` sources: documents that are local files (.md .txt .rst .html .pdf .docx), one document a file.

What is loaded: every file under `path` (a folder, one file or a glob) that include/exclude select.
How incrementally: each file is hashed (sha256) at discovery; the diff against `documents` skips
the unchanged ones. A file over `quality.max_file_bytes`, or one that cannot be read, is quarantined
and its last good document kept. `kbflow watch` follows the folder by file-system events.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Literal

import pyarrow as pa
from pydantic import Field

from kbflow.formats import FILE_FORMATS, file_format
from kbflow.quarantine import Quarantined
from kbflow.sources.base import Content, Discovery, ReadFailed, sha256_file
from kbflow.sources.acl import RuleAcl
from kbflow.sources.paths import LocalPathSource

class FilesSource(RuleAcl, LocalPathSource):
    """Local files, one document each."""

    kind: Literal["files"] = Field(description="files: local files (.md .txt .rst .html .pdf .docx), one document each")
    default_formats: ClassVar[tuple[str, ...]] = FILE_FORMATS

    def discover(self, max_file_bytes: int, known_documents: pa.Table | None = None,
                 cursor: str | None = None) -> Discovery:
        """Every included file, hashed."""
        self.require_path()
        rows, quarantined, unreadable = [], [], set()
        for full, uri in self.files(quarantined):
            try:
                stat = full.stat()
                if stat.st_size > max_file_bytes:
                    quarantined.append(
                        Quarantined(self.name, uri, "discover", "file_too_large",
                                    f"{stat.st_size} bytes > quality.max_file_bytes = {max_file_bytes}")
                    )
                    unreadable.add((self.name, uri))
                    continue
                content_hash = sha256_file(full)
            except OSError as error:
                quarantined.append(Quarantined(self.name, uri, "discover", "unreadable", str(error)))
                unreadable.add((self.name, uri))
                continue
            rows.append(self.item(uri, full, file_format(full), content_hash, stat.st_size, stat.st_mtime))
        return self.discovered(rows, quarantined, unreadable)

    def read(self, items: list[dict]) -> Iterator[tuple[dict, Content]]:
        for item in items:
            try:
                yield item, Path(item["path"]).read_bytes()
            except OSError as error:
                yield item, ReadFailed("unreadable", str(error))

    def fingerprint(self) -> tuple:
        return self.local_fingerprint()

    def watched_folder(self) -> Path | None:
        return self.root
