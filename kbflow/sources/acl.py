"""Where a document's ACL comes from (kbflow.access): a source's rules, or a field of each row.

- files and object storage: `acl` (every document's principals, the default) and ordered
  `[[sources.acl_rules]]` (`include` glob on the path relative to the root, `principals`; the
  first matching rule wins);
- records and sql: `acl_field`, a list of strings, a JSON list in a string, or a string split on
  `acl_separator`. It is not part of a row's content hash: an ACL change is metadata.

A value that is not an ACL raises `BadAcl` (`missing_acl`, `malformed_acl`): the kind quarantines
the document with that reason.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from kbflow.globs import matches


class AclRule(BaseModel):
    """`[[sources.acl_rules]]`: documents whose path matches `include` get `principals` (first match wins)."""

    model_config = ConfigDict(extra="forbid")
    include: str = Field(min_length=1, description="a glob on the path relative to the source root")
    principals: list[str] = Field(min_length=1, description="who may see the matching documents")


class RuleAcl(BaseModel):
    """The ACL keys of files and object storage, and each document's ACL from them."""

    acl: list[str] | None = Field(None, description="every document's principals, unless a rule matches")
    acl_rules: list[AclRule] = Field(default_factory=list, description="first matching include glob wins")

    def item_acl(self, uri: str) -> list[str] | None:
        return acl_from_rules(uri, self.acl, self.acl_rules)


class FieldAcl(BaseModel):
    """The ACL keys of records and sql: a column per row."""

    acl_field: str | None = Field(None, description="the column holding each row's principals")
    acl_separator: str = Field(",", min_length=1, description="splits a string acl_field value")

    def row_acl(self, row: dict[str, Any]) -> list[str] | None:
        """The row's ACL (None without `acl_field`); BadAcl for a value that is not one."""
        return acl_from_value(row.get(self.acl_field), self.acl_field, self.acl_separator) if self.acl_field else None


class BadAcl(ValueError):
    """An ACL value that cannot be read; `reason` is the document's quarantine reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


def acl_from_rules(uri: str, default: list[str] | None, rules: Sequence[Any]) -> list[str] | None:
    """A file's or object's ACL: the principals of the first rule whose `include` glob matches its
    path (relative to the source root), else the source's `acl` (None: no ACL)."""
    for rule in rules:
        if matches(uri, [rule.include], []):
            return normalized(rule.principals)
    return None if default is None else normalized(default)


def acl_from_value(value: Any, field: str, separator: str = ",") -> list[str]:
    """A row's ACL from its `acl_field`: a list of strings, a JSON list in a string, or a string split
    on `separator`. Raises BadAcl (`missing_acl`, `malformed_acl`) for what is not one."""
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise BadAcl("malformed_acl", f"{field} is not a JSON list: {error}") from None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise BadAcl("missing_acl", f"{field} is empty: the document would be visible to nobody")
    if isinstance(value, str):
        parts = [part.strip() for part in value.split(separator)]
    elif isinstance(value, (list, tuple)) or (hasattr(value, "tolist") and not isinstance(value, (bytes, dict))):
        parts = list(value.tolist() if hasattr(value, "tolist") else value)
        bad = next((part for part in parts if not isinstance(part, str) or not part.strip()), None)
        if bad is not None or None in parts:
            raise BadAcl("malformed_acl", f"{field} holds {bad!r}: principals are non-empty strings")
        parts = [part.strip() for part in parts]
    else:
        raise BadAcl("malformed_acl", f"{field} is a {type(value).__name__}: give a list of strings or a string")
    principals = normalized([part for part in parts if part])
    if not principals:
        raise BadAcl("missing_acl", f"{field} names no principal: the document would be visible to nobody")
    return principals


def normalized(principals: Sequence[str]) -> list[str]:
    """Principals sorted and without repeats: two equal ACLs compare equal."""
    return sorted(set(principals))



