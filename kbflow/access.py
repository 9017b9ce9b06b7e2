"""Access control per document: which chunks a search, an evaluation or a dataset may see.

An ACL is a list of principal strings (`user:alice`, `group:support`, any string) stored on
every document and on each of its chunks (`acl`, a list column with a LABEL_LIST index). A
reader holds principals (the asking user and their groups). With `[access] mode = "enforce"`:

- a reader sees a chunk when its ACL shares a principal with the reader's, or holds
  `public_principal` (every reader holds it; a reader with no principal holds only it);
- a document without an ACL (null or empty) is visible to nobody: fail closed;
- the filter runs inside LanceDB before the top k are taken (a prefilter), in every search
  mode and before a rerank stage, and composes with the tenant filter (both must allow).

With `mode = "off"` (the default) ACLs are stored but never read, and asking for principals
is an error rather than a filter that silently does nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from kbflow.config import AccessConfig, ConfigError
from kbflow.errors import InvalidInput
from kbflow.store import ACL_COLUMN, RowFilter


def reader_principals(access: AccessConfig, principals: Sequence[str] | None) -> tuple[str, ...] | None:
    """The principals a reader holds as the store compares them; None when ACLs are not enforced."""
    asked = tuple(principals or ())
    if access.mode == "off":
        if asked:
            raise ConfigError(
                "--principal needs [access] mode = \"enforce\" in the config; with mode \"off\" ACLs are not read"
            )
        return None
    bad = [p for p in asked if not isinstance(p, str) or not p]
    if bad:
        raise InvalidInput(f"a principal must be a non-empty string, not {bad[0]!r}")
    return tuple(dict.fromkeys([*asked, access.public_principal]))


def visible_rows(access: AccessConfig, tenant: str | None = None,
                 principals: Sequence[str] | None = None) -> RowFilter | None:
    """What a reader with these principals (and tenant, if any) may see; None: every row."""
    held = reader_principals(access, principals)
    if tenant is None and held is None:
        return None
    return RowFilter(tenant=tenant, principals=held)


def acl_counts(documents: pa.Table, access: AccessConfig) -> dict[str, int]:
    """How many documents have an ACL holding the public principal, another ACL, or none (`status`)."""
    if ACL_COLUMN not in documents.column_names or documents.num_rows == 0:
        return {"public": 0, "restricted": 0, "missing": documents.num_rows}
    acl = documents.column(ACL_COLUMN)
    lengths = pc.fill_null(pc.list_value_length(acl), 0)
    missing = pc.equal(lengths, 0)
    flat_is_public = pc.equal(pc.list_flatten(acl), access.public_principal)
    parents = pc.list_parent_indices(acl)
    public_rows = set(pc.filter(parents, flat_is_public).to_pylist())
    n_missing = pc.sum(missing).as_py() or 0
    return {"public": len(public_rows), "restricted": documents.num_rows - n_missing - len(public_rows),
            "missing": n_missing}


def missing_acl_warning(documents: pa.Table, access: AccessConfig) -> str | None:
    """enforce: a run warning when more active documents than `max_missing_share` have no ACL (visible to nobody)."""
    if access.mode != "enforce" or documents.num_rows == 0:
        return None
    missing = acl_counts(documents, access)["missing"]
    if missing / documents.num_rows <= access.max_missing_share:
        return None
    return (f"{missing} of {documents.num_rows} documents have no ACL: with [access] mode = \"enforce\" nobody "
            "sees them; give their sources `acl` / `acl_rules` or `acl_field` (docs/guides/access-control.md)")
