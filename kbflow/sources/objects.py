"""Object storage sources: documents that are objects under a URL, read through fsspec.

Configured as `kind = "objects"`, or as before as `kind = "files"` with a URL `path` (kbflow.sources
reads such a source as this kind).

`s3://bucket/prefix` (s3fs), `gs://` (gcsfs), `az://` / `abfs://` (adlfs) and `file://`, with the
source's `[sources.storage_options]` and credentials from the environment (AWS_ACCESS_KEY_ID ...).
A URL names a prefix (every object under it that include/exclude select) or ends in a glob
(`s3://bucket/docs/**/*.md`); a document's uri is its key relative to the prefix.

How incrementally: the listing (paginated by the backend) gives each object's size and a change
token (version id, else ETag, else size+mtime). An object whose token equals the one stored with
its document is unchanged and its body is never read. Any other object is read (streamed) and
hashed; if the hash equals the stored content hash, only the token moves. A read that fails is
retried with back-off (tenacity), then the object is quarantined with its reason. A listing that fails
(unreachable endpoint, wrong credentials, no such bucket) fails the run before anything is written.
Credentials never reach a message: every error text goes through `scrub`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Literal, TypeVar

import pyarrow as pa
from pydantic import Field, field_validator, model_validator
from tenacity import Retrying, retry_if_not_exception_type, stop_after_attempt

from kbflow.errors import KbflowError, SourceUnreachable
from kbflow.formats import FILE_FORMATS, file_format
from kbflow.globs import matches
from kbflow.quarantine import Quarantined
from kbflow.sources.acl import RuleAcl
from kbflow.sources.base import HASH_BLOCK, Content, Discovery, ReadFailed, SourceBase, make_doc_id
from kbflow.sources.paths import glob_tail

READ_TRIES = 3
READ_BACKOFF_S = (0.5, 2.0)  # waits before the 2nd and 3rd try
HASH_THREADS = 8  # new or changed objects read and hashed at once in discovery

# The extra that installs each protocol's fsspec backend.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}
# `[store] storage_options` speaks object_store's names (LanceDB); fsspec backends have their own.
# A source accepts both, so one set of options can serve the store and the sources.
RENAMED = {
    "s3": {"aws_access_key_id": "key", "access_key_id": "key", "aws_secret_access_key": "secret",
           "secret_access_key": "secret", "aws_session_token": "token", "session_token": "token",
           "aws_endpoint": "endpoint_url", "aws_endpoint_url": "endpoint_url", "endpoint": "endpoint_url"},
    "gcs": {"google_service_account": "token", "google_service_account_path": "token", "service_account": "token"},
    "azure": {"azure_storage_account_name": "account_name", "azure_storage_account_key": "account_key",
              "azure_storage_sas_token": "sas_token", "azure_storage_connection_string": "connection_string"},
}
S3_REGION = {"aws_region", "region", "region_name", "aws_default_region"}  # s3fs: client_kwargs.region_name
DROPPED = {"allow_http"}  # object_store's switch; fsspec takes http/https from the endpoint URL
# Option names whose values are safe to show (an endpoint is named in errors; its password is not).
NOT_SECRET = {"endpoint_url", "aws_endpoint", "aws_endpoint_url", "endpoint", "anon", "use_ssl", "allow_http",
              "account_name", "azure_storage_account_name", "project", "version_aware", "requester_pays",
              "default_block_size", *S3_REGION}
SECRET_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY",
              "AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_CONNECTION_STRING",
              "AZURE_CLIENT_SECRET", "GOOGLE_OAUTH_ACCESS_TOKEN")
URL_PASSWORD = re.compile(r"(\w+://[^/\s:@]+:)[^@\s/]+@")
# A missing object or a denied read does not heal by itself: not retried.
PERMANENT = (FileNotFoundError, PermissionError, IsADirectoryError, NotImplementedError)

T = TypeVar("T")


class ObjectReadFailed(KbflowError, OSError):
    """An object whose body could not be read after retries; the message is scrubbed."""


@dataclass(frozen=True)
class ListedObject:
    url: str  # full URL, what a worker opens
    uri: str  # key relative to the source's prefix
    size: int
    mtime: float
    token: str


def protocol_of(source: ObjectsSource) -> str:
    return str(source.path).partition("://")[0].lower()


def _backend(protocol: str) -> str:
    return EXTRAS.get(protocol, protocol)


def fsspec_options(protocol: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The source's storage options as the fsspec backend of `protocol` takes them.

    >>> fsspec_options("s3", {"aws_endpoint": "http://127.0.0.1:9000", "aws_region": "eu-west-1", "anon": "true"})
    {'endpoint_url': 'http://127.0.0.1:9000', 'anon': True, 'client_kwargs': {'region_name': 'eu-west-1'}}
    """
    backend = _backend(protocol)
    renamed, taken, region = RENAMED.get(backend, {}), {}, {}
    for key, value in options.items():
        key = key.lower()
        if key in DROPPED:
            continue
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"  # TOML and KBFLOW_* overrides may give booleans as text
        if backend == "s3" and key in S3_REGION:
            region["region_name"] = value
            continue
        taken[renamed.get(key, key)] = value
    if region:
        taken["client_kwargs"] = {**taken.get("client_kwargs", {}), **region}
    return taken


def secrets_of(options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """Values that must never be shown: secret storage options and credential variables."""
    environ = os.environ if environ is None else environ
    values = [str(v) for k, v in options.items() if k.lower() not in NOT_SECRET and not isinstance(v, bool)]
    values += [environ[name] for name in SECRET_ENV if environ.get(name)]
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)  # longest first: no partial leftovers


def scrub(text: str, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> str:
    """`text` without credentials: secret option values and credential variables become `***`, and
    so does the password of any `scheme://user:password@host` URL.

    >>> scrub("denied for key AKIA1234 at http://me:pw@minio:9000", {"key": "AKIA1234"}, environ={})
    'denied for key *** at http://me:***@minio:9000'
    """
    for secret in secrets_of(options, environ):
        text = text.replace(secret, "***")
    return URL_PASSWORD.sub(r"\1***@", text)


def endpoint_of(source: ObjectsSource) -> str:
    """Where a source's objects are served from, for messages (never with a password)."""
    options = fsspec_options(protocol_of(source), source.storage_options)
    endpoint = options.get("endpoint_url") or options.get("account_name")
    if endpoint is None and _backend(protocol_of(source)) == "s3":
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return scrub(str(endpoint or f"the default {protocol_of(source)} endpoint"), source.storage_options)


def open_filesystem(source: ObjectsSource):
    """The fsspec filesystem of a source (fsspec caches one instance per set of options)."""
    import fsspec

    protocol = protocol_of(source)
    options = fsspec_options(protocol, source.storage_options)
    try:
        if _backend(protocol) == "gcs" and options.get("endpoint_url"):
            # gcsfs >= 2026.10's default class first asks Google's gRPC storage-control API about each
            # bucket; an emulator or other non-Google endpoint never answers, and each ask waits 60 s.
            # The plain class speaks only the JSON API, which is all such an endpoint serves.
            from gcsfs.core import GCSFileSystem

            return GCSFileSystem(**options)
        return fsspec.filesystem(protocol, **options)
    except ImportError as error:
        extra = EXTRAS.get(protocol)
        hint = f"pip install 'kbflow[{extra}]'" if extra else "install the fsspec backend for it"
        raise SourceUnreachable(f"source {source.name!r}: {protocol}:// needs a package that is missing "
                                f"({error}); {hint}") from None


def change_token(info: Mapping[str, Any]) -> str:
    """What changes when an object changes, from its listing: version id, else ETag, else size+mtime."""
    for key in ("VersionId", "version_id", "generation"):  # s3 (version_aware), azure, gcs
        if info.get(key):
            return f"version:{info[key]}"
    for key in ("ETag", "etag", "md5Hash"):
        if info.get(key):
            return f"etag:{str(info[key]).strip(chr(34))}"
    return f"size:{info.get('size')}:mtime:{modified_at(info)}"


def modified_at(info: Mapping[str, Any]) -> float:
    """The listing's modification time as a POSIX timestamp (0.0 when the backend gives none)."""
    for key in ("LastModified", "last_modified", "updated", "mtime"):
        value = info.get(key)
        if isinstance(value, datetime):
            return value.timestamp()
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str) and value:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    return 0.0


def list_objects(source: ObjectsSource) -> list[ListedObject]:
    """Every object under the source's prefix that it selects, in key order.

    Raises SourceUnreachable, naming the source and the endpoint (never a secret), when the
    listing fails: unreachable endpoint, wrong credentials, missing bucket.
    """
    fs = open_filesystem(source)
    root = fs._strip_protocol(source.root).rstrip("/")
    try:
        fs.invalidate_cache(root)  # fsspec keeps listings per process: a poll or a new run must list afresh
        found = fs.find(root, detail=True)
    except Exception as error:  # noqa: BLE001 - each backend raises its client library's own errors
        raise SourceUnreachable(
            f"source {source.name!r}: cannot list {source.root} at {endpoint_of(source)}: "
            f"{scrub(f'{type(error).__name__}: {error}', source.storage_options)}; check the endpoint, "
            "the bucket and the credentials (storage_options or the environment)"
        ) from None
    listed = []
    for key in sorted(found):
        info = found[key]
        uri = key[len(root) + 1:] if key.startswith(root + "/") else key.rsplit("/", 1)[-1]
        if uri and source.selects(uri):
            listed.append(ListedObject(fs.unstrip_protocol(key), uri, int(info.get("size") or 0),
                                       modified_at(info), change_token(info)))
    return listed


def with_retries(read: Callable[[], T], source: ObjectsSource, url: str,
                 tries: int = READ_TRIES, backoff_s: tuple[float, ...] = READ_BACKOFF_S) -> T:
    """`read()`, tried again after each wait in `backoff_s` while it fails transiently (tenacity).

    Raises ObjectReadFailed (scrubbed message) after the last try, or at once for a
    permanent failure (missing object, access denied).
    """
    retrying = Retrying(
        stop=stop_after_attempt(tries),
        wait=lambda state: backoff_s[min(state.attempt_number - 1, len(backoff_s) - 1)],
        retry=retry_if_not_exception_type(PERMANENT),
        reraise=True,
    )
    try:
        return retrying(read)
    except Exception as error:  # noqa: BLE001 - backends raise botocore / aiohttp / azure errors
        detail = scrub(f"{type(error).__name__}: {error}", source.storage_options)
        attempts = retrying.statistics.get("attempt_number", tries)
        raise ObjectReadFailed(f"{url}: {detail} (after {attempts} tries)") from None


def read_object(source: ObjectsSource, url: str) -> bytes:
    """The whole body of one object (what parse reads, on whichever worker runs it)."""
    fs = open_filesystem(source)
    return with_retries(lambda: fs.cat_file(url), source, url)


def hash_object(source: ObjectsSource, url: str) -> str:
    """sha256 of an object's body, streamed block by block."""
    fs = open_filesystem(source)

    def digest() -> str:
        sha = hashlib.sha256()
        with fs.open(url, "rb", block_size=HASH_BLOCK * 8) as handle:
            while block := handle.read(HASH_BLOCK):
                sha.update(block)
        return sha.hexdigest()

    return with_retries(digest, source, url)


def discover_objects(source: ObjectsSource, max_file_bytes: int, known: Mapping[str, tuple[str | None, str]]) -> Discovery:
    """Every selected object of an object-storage source, with its content hash.

    `known` maps doc_id to the (change token, content hash) the `documents` table holds: an
    object whose token is unchanged keeps its stored hash and its body is not read. The others
    are hashed `HASH_THREADS` at a time (a read waits on the network, not on the CPU).
    """
    rows, quarantined, unreadable = [], [], set()
    listing = list_objects(source)
    stored = {o.url: known.get(make_doc_id(source.name, o.uri), (None, None)) for o in listing}
    to_hash = [o.url for o in listing if o.size <= max_file_bytes and stored[o.url][0] != o.token]
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        hashed = dict(zip(to_hash, pool.map(partial(_hash_or_failure, source), to_hash)))
    for listed in listing:
        content_hash = hashed.get(listed.url, stored[listed.url][1])
        if listed.size > max_file_bytes:
            quarantined.append(Quarantined(source.name, listed.uri, "discover", "file_too_large",
                                           f"{listed.size} bytes > quality.max_file_bytes = {max_file_bytes}"))
        elif isinstance(content_hash, ObjectReadFailed):
            quarantined.append(Quarantined(source.name, listed.uri, "discover", "unreadable", str(content_hash)))
        else:
            rows.append(source.item(listed.uri, listed.url, file_format(listed.url), content_hash, listed.size,
                                    listed.mtime, listed.token))
            continue
        unreadable.add((source.name, listed.uri))
    return source.discovered(rows, quarantined, unreadable)


def _hash_or_failure(source: ObjectsSource, url: str) -> str | ObjectReadFailed:
    try:
        return hash_object(source, url)
    except ObjectReadFailed as error:
        return error


def known_tokens(documents: pa.Table) -> dict[str, tuple[str | None, str]]:
    """doc_id -> (change token, content hash) of `documents` rows."""
    columns = (documents.column(name).to_pylist() for name in ("doc_id", "change_token", "content_hash"))
    return {doc_id: (token, content_hash) for doc_id, token, content_hash in zip(*columns)}


def objects_fingerprint(source: ObjectsSource) -> tuple[tuple[str, str], ...]:
    """What changes when a source's objects change: (uri, change token) of each, from one listing."""
    return tuple((listed.uri, listed.token) for listed in list_objects(source))


# `s3://bucket/prefix` (any `scheme://`): a URL for fsspec, never a local Path.
def _object_url(path: str) -> str:
    if "://" not in path:
        raise ValueError("an object-storage URL (s3://, gs://, az://, file://); a local path is for kind = \"files\"")
    return path


class ObjectsSource(RuleAcl, SourceBase):
    """Objects under an object-storage URL, one document an object (`kind = "objects"`, or
    `kind = "files"` with a URL path, as configs written before this kind say)."""

    kind: Literal["objects"] = Field(description="objects: objects under an s3://, gs://, az:// or file:// URL")
    path: str = Field(description="s3://bucket/prefix, gs://, az://, file://; may end in a glob")
    storage_options: dict[str, str | bool | int | float] = Field(
        default_factory=dict, repr=False,  # may hold credentials: never in a repr, a log or an error
        description="fsspec options (endpoint_url, anon, region, ...); credentials from the environment",
    )
    include: list[str] = Field(default_factory=list, description="globs of paths to read (default: every "
                               "file of a format the kind reads); `**` spans folders")
    exclude: list[str] = Field(default_factory=list, description="globs of paths to skip, applied after include")

    _check_url = field_validator("path")(_object_url)

    @model_validator(mode="after")
    def _default_include(self) -> ObjectsSource:
        if not self.include:
            self.include = [f"**/*{ext}" for ext in FILE_FORMATS]
        return self

    @property
    def is_object_storage(self) -> bool:
        return True

    @property
    def path_glob(self) -> str | None:
        """The part of `path` after the scheme from its first glob character on, or None."""
        return glob_tail(self.path.partition("://")[2].split("/"))

    @property
    def root(self) -> str:
        """The prefix uris are relative to: the URL before any glob."""
        return self.path[: len(self.path) - len(self.path_glob or "")].rstrip("/")

    def selects(self, uri: str) -> bool:
        """Whether the object at `uri` (its key relative to `root`) is one of the source's documents."""
        if self.path_glob is not None:
            return matches(uri, [self.path_glob], []) and matches(uri, self.include, self.exclude)
        return matches(uri, self.include, self.exclude)

    def discover(self, max_file_bytes: int, known_documents: pa.Table | None = None,
                 cursor: str | None = None) -> Discovery:
        known = known_tokens(known_documents) if known_documents is not None else {}
        return discover_objects(self, max_file_bytes, known)

    def read(self, items: list[dict]) -> Iterator[tuple[dict, Content]]:
        """Each object's body, opened here, on whichever worker runs the read, with the source's options."""
        for item in items:
            try:
                yield item, read_object(self, item["path"])
            except ObjectReadFailed as error:
                yield item, ReadFailed("unreadable", str(error))

    def fingerprint(self) -> tuple[tuple[str, str], ...]:
        return objects_fingerprint(self)

    def empty_warning(self) -> str:
        return (f"source {self.name!r} yields no documents: nothing under {self.path} matches include "
                f"{self.include} (exclude {self.exclude}); check its path and globs")

    def document_path(self, uri: str) -> str | None:
        return f"{self.root}/{uri}"
