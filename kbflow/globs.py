"""Include/exclude globs of a `files` source, matched on posix paths relative to its root.

Glob semantics (wcmatch): `**/` is any number of folders (none included), `*` stays within
one name and matches dotfiles too; case-insensitive, so `*.MD` files are not silently skipped.
"""

from __future__ import annotations

from wcmatch import glob

_FLAGS = glob.GLOBSTAR | glob.IGNORECASE | glob.DOTGLOB


def matches(relative_path: str, include: list[str], exclude: list[str]) -> bool:
    """True if the path matches an include glob and no exclude glob.

    >>> matches("guide/intro.md", ["**/*.md"], [])
    True
    >>> matches("drafts/intro.md", ["**/*.md"], ["drafts/**"])
    False
    """
    return glob.globmatch(relative_path, include, flags=_FLAGS, exclude=exclude or None)
