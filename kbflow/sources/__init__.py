"""Source kinds: one module each, registered by `kind` in SOURCE_KINDS below.

Each kind is a pydantic model of its `[[sources]]` keys that is also its reader (the `Source`
protocol of kbflow.sources.base): `files` (local files), `records` (rows of .jsonl/.csv/.parquet
files), `sql` (rows of a table or query), `objects` (objects under an s3://, gs://, az:// or
file:// URL). kbflow.config validates `[[sources]]` as a union discriminated by `kind` over these
models, so a key that a kind does not have is pydantic's own error naming the key.

Why here, in the core, and not in kbflow.tasks.sources: the config model (core) must know every
kind's keys, and core cannot import tasks/. So a kind's keys and its reading live together in this
package; kbflow.tasks.sources keeps the Prefect tasks (discover, the diff against `documents`, the
read-and-parse stage), which call the protocol only and never ask which kind a source is; formats
(kbflow.tasks.formats) turn what a kind reads into text and know nothing about sources.

A new kind is one module here (its model, with `kind: Literal["name"]` and the protocol's methods)
and one line in SOURCE_KINDS; a kind defined elsewhere (a plug-in, a test) is added at run time with
kbflow.config.register_source_kind. Heavy libraries (SQLAlchemy, fsspec backends) are imported
inside the methods that use them, so that loading a config stays cheap.
"""

from __future__ import annotations

from typing import Any

from kbflow.sources.base import Source, SourceBase
from kbflow.sources.files import FilesSource
from kbflow.sources.objects import ObjectsSource
from kbflow.sources.records import RecordsSource
from kbflow.sources.sql import SqlSource

SOURCE_KINDS: dict[str, type[SourceBase]] = {
    "files": FilesSource,
    "records": RecordsSource,
    "sql": SqlSource,
    "objects": ObjectsSource,
}

__all__ = ["SOURCE_KINDS", "Source", "SourceBase", "kind_of"]


def kind_of(raw: Any) -> Any:
    """A raw `[[sources]]` table as its kind's model reads it: a `files` source whose path is a URL is
    an `objects` source (configs written before that kind existed say `files`). Misplaced keys that
    mean a different kind are explained here, before the kind's model sees them."""
    if not isinstance(raw, dict):
        return raw
    path = raw.get("path")
    is_url = isinstance(path, str) and "://" in path
    if raw.get("kind") == "files" and is_url:
        return {**raw, "kind": "objects"}
    if raw.get("kind") == "files" and raw.get("storage_options"):
        raise ValueError("storage_options are for an object-storage path (s3://, gs://, az://, file://)")
    if raw.get("kind") == "records" and is_url:
        raise ValueError('records sources read local files; an object-storage path is for kind = "files"')
    return raw


def keys_of_other_kinds(kind: str, key: str) -> str:
    """Why `key` is not a key of `kind` sources: the kinds that have it (for a config error's fix)."""
    owners = [name for name, model in SOURCE_KINDS.items() if key in model.model_fields and name != kind]
    hint = SOURCE_KINDS[kind].misplaced_keys_hint if kind in SOURCE_KINDS else ""
    if not owners:
        return hint or "remove it or check its spelling"
    kinds = " or ".join(f'"{name}"' for name in owners)
    return f"{key}: for {', '.join(owners)} sources (kind = {kinds}) only" + (f"; {hint}" if hint else "")
