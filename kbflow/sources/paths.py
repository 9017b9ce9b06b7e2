"""What the kinds that read local files share: a `path` that is a folder, one file or a glob, its
include/exclude globs, and the walk that lists the files (kbflow.sources.files, kbflow.sources.records).

A document's uri is its file's path relative to `root` (plus `#id` for a record), so a file keeps
its uri, its doc_id and its incremental state whichever way it is named. A folder (or a glob's
fixed leading folder) is walked without following symlinks; a file that is a symlink to somewhere
outside that root is quarantined, never read, and so is a file whose name is not valid UTF-8.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

from pydantic import Field, field_validator, model_validator

from kbflow.errors import MissingFile
from kbflow.globs import matches
from kbflow.quarantine import Quarantined
from kbflow.sources.base import SourceBase, escaped_name, is_utf8_name

GLOB_CHARACTERS = frozenset("*?[")  # in a source's path: a glob, not a file name


def glob_tail(parts: list[str] | tuple[str, ...]) -> str | None:
    """The path parts from the first one with a glob character on, joined (posix); None: no glob."""
    first = next((i for i, part in enumerate(parts) if GLOB_CHARACTERS & set(part)), None)
    return None if first is None else "/".join(parts[first:])


class LocalPathSource(SourceBase):
    """A source whose `path` names local files: a folder, one file, or a glob (`docs/**/*.md`)."""

    path: Path = Field(description="a folder, one file, or a glob such as docs/**/*.md")
    include: list[str] = Field(default_factory=list, description="globs of paths to read (default: every "
                               "file of a format the kind reads); `**` spans folders")
    exclude: list[str] = Field(default_factory=list, description="globs of paths to skip, applied after include")
    default_formats: ClassVar[tuple[str, ...]] = ()  # what an empty include means: every file of these

    @model_validator(mode="after")
    def _default_include(self) -> LocalPathSource:
        if not self.include:
            self.include = [f"**/*{ext}" for ext in self.default_formats]
        return self

    @field_validator("path", mode="before")
    @classmethod
    def _not_a_url(cls, path: object) -> object:
        if isinstance(path, str) and "://" in path:
            raise ValueError('a local folder, file or glob; an object-storage URL is for kind = "files"')
        return path

    def resolve_paths(self, root: Path) -> None:
        self.path = (root / self.path.expanduser()).resolve()

    @property
    def path_glob(self) -> str | None:
        """The part of `path` from its first glob character on (posix), or None for a plain path."""
        return glob_tail(self.path.parts)

    @property
    def root(self) -> Path:
        """The folder uris are relative to: `path` itself if it is a folder, else its folder
        (a file's, or a glob's fixed leading part)."""
        if self.path_glob is not None:
            return Path(*self.path.parts[: len(self.path.parts) - len(self.path_glob.split("/"))])
        return self.path if self.path.is_dir() else self.path.parent

    def selects(self, uri: str) -> bool:
        """Whether the file at `uri` (posix, relative to `root`) is one of the source's files.

        A folder: the files that match include and not exclude. A glob: the files it matches
        that also pass include/exclude. One file: that file (include/exclude do not apply).
        """
        if self.path_glob is not None:
            return matches(uri, [self.path_glob], []) and matches(uri, self.include, self.exclude)
        if self.path.is_dir():
            return matches(uri, self.include, self.exclude)
        return uri == self.path.name

    def require_path(self) -> None:
        """FileNotFoundError naming the source when its path (or a glob's folder) is not there."""
        if not (self.root.is_dir() if self.path_glob else self.path.exists()):
            raise MissingFile(
                f"source {self.name!r}: path {self.path} does not exist; "
                "sources.path is a folder, one file, or a glob such as records/*.jsonl"
            )

    def files(self, quarantined: list[Quarantined] | None = None) -> Iterator[tuple[Path, str]]:
        """(path, posix uri relative to the source's root) of the source's files, in name order.

        `path` names one file: that file. A folder or a glob: the files under its root that
        `selects`; symlinked directories are not entered; a symlinked file that points outside the
        root, or a file whose name is not UTF-8 (a uri must be text), is quarantined (appended to
        `quarantined`) instead of read.
        """
        root = self.root.resolve()
        if self.path_glob is None and not self.path.is_dir():
            if self.path.is_file():
                yield self.path, self.path.name
            return
        for directory, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                full = Path(directory, name)
                uri = full.relative_to(root).as_posix()
                if not self.selects(uri):
                    continue
                if not is_utf8_name(uri):
                    if quarantined is not None:
                        quarantined.append(Quarantined(
                            self.name, escaped_name(uri), "discover", "bad_file_name",
                            f"the file name {escaped_name(uri)} is not valid UTF-8; rename the file to index it"))
                    continue
                if full.is_symlink() and not full.resolve().is_relative_to(root):
                    if quarantined is not None:
                        quarantined.append(
                            Quarantined(self.name, uri, "discover", "symlink_outside_root", f"points to {full.resolve()}")
                        )
                    continue
                yield full, uri

    def empty_warning(self) -> str:
        return (f"source {self.name!r} yields no documents: nothing under {self.path} matches include "
                f"{self.include} (exclude {self.exclude}); check its path and globs")

    def document_path(self, uri: str) -> str | None:
        return str(self.root / uri.split("#", 1)[0])

    def local_fingerprint(self) -> tuple:
        """Names, sizes and mtimes of the source's files: what changes when one of them changes."""
        fingerprint = []
        for path, _ in self.files():
            try:
                stat = path.stat()
            except OSError:  # removed between the listing and the stat: the next poll sees it gone
                continue
            fingerprint.append((str(path), stat.st_size, stat.st_mtime_ns))
        return tuple(sorted(fingerprint))
