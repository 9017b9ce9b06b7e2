"""The `Source` protocol every source kind implements, and what its methods hand back.

A source kind is one pydantic model (its `[[sources]]` keys, validated) that is also its reader, as a
Dagster `ConfigurableResource` is: list the items with their content hash and change token
(`discover`), hand over an item's content (`read`: bytes of a file, or a `Record` of a row),
say cheaply whether anything changed (`fingerprint`, for `kbflow watch`), and give labeled rows
where the kind has them (`labeled_rows`). The Prefect tasks of kbflow.tasks.sources go through
these methods only; they never ask which kind a source is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from kbflow.errors import ConfigError
from kbflow.quarantine import Quarantined
from kbflow.schemas import DISCOVERED

HASH_BLOCK = 1 << 20


def make_doc_id(source: str, uri: str) -> str:
    """A stable id from where a document lives: same source and uri, same id."""
    return hashlib.sha256(f"{source}\0{uri}".encode()).hexdigest()[:32]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def escaped_name(name: str) -> str:
    """A file name as text that can be stored and shown: bytes that are not UTF-8 (which Python
    keeps as surrogates) written as `\\xNN`.

    >>> escaped_name("caf\\udce9.md")
    'caf\\\\xe9.md'
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8_name(name: str) -> bool:
    """Whether a file name (as the OS gave it to Python) is valid UTF-8 text."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass
class Discovery:
    """What discovery found in one or more sources."""

    items: pa.Table  # DISCOVERED
    quarantined: list[Quarantined] = field(default_factory=list)
    # (source, file uri) that exist but could not be read this time: their documents are
    # kept as they are, not deleted
    unreadable: set[tuple[str, str]] = field(default_factory=set)
    # sql sources with a cursor_field: the cursor each read up to, when it moved (saved after the publish)
    cursors: dict[str, str] = field(default_factory=dict)
    # exact duplicates set aside (same content hash as an earlier item of the same source):
    # (source, uri, uri of the copy that is indexed)
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class Record:
    """A row that is a document: its text field, title field and metadata fields."""

    text: str
    title: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


class ReadFailed(Exception):
    """An item whose content could not be read; `reason` is its quarantine reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


# What `read` yields for an item: a file's bytes (parsed by its format), a row's Record, or why not.
Content = bytes | Record | ReadFailed
# labeled_rows: discovery's items (ids, hashes) and how to get an item's row
LabeledRows = tuple[Discovery, Callable[[dict], dict]]


@runtime_checkable
class Source(Protocol):
    """A configured source of one kind (see the module docstring)."""

    name: str
    kind: str
    tenant: str
    index: bool

    def discover(self, max_file_bytes: int, known_documents: pa.Table | None, cursor: str | None) -> Discovery:
        """Every item the source holds now, hashed. `known_documents` (the source's `documents`
        rows) lets a kind skip reading what its change token says is unchanged; `cursor` is the
        incremental state the last successful run stored for the source (None: read everything),
        and a kind that keeps one returns its new value in `Discovery.cursors`."""

    def read(self, items: list[dict]) -> Iterator[tuple[dict, Content]]:
        """Each of these discovered items (one batch) with its content."""

    def fingerprint(self) -> Hashable:
        """A cheap value that changes when the source's content changes (kbflow watch polls it)."""

    def labeled_rows(self) -> LabeledRows:
        """Question/answer rows of a labeled source (ConfigError for a kind that has none)."""


class SourceBase(BaseModel):
    """The keys every kind has, and the defaults of the `Source` methods a kind may not need.

    A kind subclasses this with `kind: Literal["its-name"]`, its own keys and its reader methods.
    """

    model_config = ConfigDict(extra="forbid")
    # said with a config error for a key this kind does not have
    misplaced_keys_hint: ClassVar[str] = ""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$",
                      description="the source's name: in chunks, runs and `--source`; letters, digits, _ . -")
    kind: str = Field(description="files | records | sql | objects: which reader, and which other keys apply")
    tenant: str = Field("default", description="every chunk of this source belongs to this tenant (search --tenant)")
    ingest_cron: str | None = Field(None, description="kbflow serve: also ingest this source alone on this cron")
    index: bool = Field(True, description="false: a labeled-only source (datasets, eval), never ingested")

    @property
    def is_labeled(self) -> bool:
        return False

    @property
    def is_object_storage(self) -> bool:
        return False

    def discover(self, max_file_bytes: int, known_documents: pa.Table | None, cursor: str | None) -> Discovery:
        raise NotImplementedError(f"source kind {self.kind!r} does not implement discover (the Source protocol)")

    def read(self, items: list[dict]) -> Iterator[tuple[dict, Content]]:
        raise NotImplementedError(f"source kind {self.kind!r} does not implement read (the Source protocol)")

    def fingerprint(self) -> Hashable:
        raise NotImplementedError(f"source kind {self.kind!r} does not implement fingerprint (the Source protocol)")

    def resolve_paths(self, root: Path) -> None:
        """Make the source's relative paths absolute from `root`, the config file's folder."""

    def watched_folder(self) -> Path | None:
        """A local folder that `kbflow watch` follows by file-system events (None: poll `fingerprint`);
        a kind that has one also says which files under it are its own: `selects(relative posix path)`."""
        return None

    def labeled_rows(self) -> LabeledRows:
        raise ConfigError(f"sources: {self.name!r} is a {self.kind} source: it has no question/answer rows")

    def empty_warning(self) -> str:
        """The warning for a run in which the source yielded nothing at all."""
        return f"source {self.name!r} yields no documents"

    def document_path(self, uri: str) -> str | None:
        """Where the document at `uri` lives, for `kbflow trace` (None: nowhere a path names)."""
        return None

    def described(self) -> dict[str, Any]:
        """The source as `kbflow trace` shows it."""
        path = getattr(self, "path", None)
        return {"name": self.name, "kind": self.kind, "path": path and str(path), "tenant": self.tenant}

    def item(self, uri: str, path: Path | str, format: str, content_hash: str | None, size: int, mtime: float,
             change_token: str | None = None) -> dict:
        """One DISCOVERED row of this source."""
        return {
            "doc_id": make_doc_id(self.name, uri), "source": self.name, "tenant": self.tenant, "uri": uri,
            "path": str(path), "format": format, "content_hash": content_hash, "size": size, "mtime": mtime,
            "change_token": change_token, "acl": self.item_acl(uri),
        }

    def item_acl(self, uri: str) -> list[str] | None:
        """Who may see the document at `uri` (kbflow.access); a kind with per-row ACLs sets them itself."""
        return None

    def discovered(self, rows: list[dict], quarantined: list[Quarantined], unreadable: set[tuple[str, str]]) -> Discovery:
        return Discovery(pa.Table.from_pylist(rows, schema=DISCOVERED), quarantined, unreadable)
