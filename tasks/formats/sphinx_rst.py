"""Sphinx reStructuredText for plain docutils: its directives and roles keep their text.

Sphinx sources (a `.rst` tree, or the `_sources/*.rst.txt` a built site ships) use
directives and roles that docutils does not know (`.. function::`, `.. versionadded::`,
:class:`Foo`). Unknown to docutils, a directive becomes an error node and its whole
body is lost, and a role stays as raw markup. Here each name the text uses that
docutils lacks is registered with a generic handler: signature directives keep their
signature line and body, version and see-also directives become a labelled paragraph
("Changed in version 3.2: …"), navigation-only ones (toctree, index) yield nothing,
and a role yields its title. Admonitions of either kind read "Note: …" in the text.
"""

from __future__ import annotations

import re

from docutils import nodes
from docutils.parsers.rst import Directive, directives, roles
from docutils.parsers.rst.directives.misc import Class
from docutils.parsers.rst.languages import en

# Sphinx directives that carry no content of their own: tables of contents, index
# entries, rendering hints.
SILENT = {
    "toctree", "index", "highlight", "currentmodule", "sectionauthor", "moduleauthor", "codeauthor",
    "tabularcolumns", "only", "default-domain", "autosummary", "literalinclude",
    "audit-event",  # CPython's: a raw "name args anchor" triple, not prose
}
# Directives whose body is code or a grammar: kept verbatim.
VERBATIM = {"testcode", "testoutput", "doctest", "testsetup", "testcleanup", "productionlist", "code-block"}
# Labelled paragraphs: the label and the directive's arguments prefix the body.
LABELS = {
    "seealso": "See also",
    "versionadded": "New in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version",
    "deprecated-removed": "Deprecated since version",
    "impl-detail": "CPython implementation detail",
}

_DIRECTIVE = re.compile(r"^\s*\.\.\s+([\w:.+-]+)::", re.MULTILINE)
_ROLE = re.compile(r":([\w:.+-]+):`")
_TITLE_TARGET = re.compile(r"^(.*?)\s*<[^<>]*>$", re.DOTALL)


class _AnyOption(dict):
    """An option spec that accepts every option (Sphinx directives have many)."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str):
        return directives.unchanged


class SphinxDirective(Directive):
    """One handler for every Sphinx directive docutils lacks; see the module docstring."""

    has_content = True
    optional_arguments = 1
    final_argument_whitespace = True
    option_spec = _AnyOption(noindex=directives.unchanged)  # not empty: docutils skips a falsy spec

    def run(self) -> list[nodes.Node]:
        name = self.name.split(":")[-1]
        argument = " ".join(self.arguments).strip()
        if name in SILENT:
            return []
        if name in VERBATIM:
            return [nodes.literal_block(text="\n".join(self.content))]
        container = nodes.container()
        if name in LABELS:
            label = LABELS[name]
            if name != "seealso" and argument:  # "3.2 Why…": the version, then an optional text
                version, *rest = argument.split(None, 1)
                label, argument = f"{label} {version}", " ".join(rest)
                if name == "deprecated-removed" and argument:  # "3.11 3.13": then the removal
                    removed, *rest = argument.split(None, 1)
                    label, argument = f"{label}, will be removed in version {removed}", " ".join(rest)
            if argument:
                inline, messages = self.state.inline_text(argument, self.lineno)
                container += nodes.paragraph("", "", *inline)
            self.state.nested_parse(self.content, self.content_offset, container)
            _prefix_label(container, label)
            return [container]
        if argument:  # a signature: "spam(a, b)", "class Foo", "-v, --verbose"
            container += nodes.paragraph(text=argument)
        self.state.nested_parse(self.content, self.content_offset, container)
        return [container]


def role_text(text: str) -> str:
    """What a Sphinx role shows: `title <target>` → title, `~a.b.c` → c, `!x` and `.x` → x."""
    match = _TITLE_TARGET.match(text)
    if match and match.group(1):
        return match.group(1)
    if text.startswith("~"):
        return text[1:].rsplit(".", 1)[-1]
    return text.lstrip("!.")


def sphinx_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    return [nodes.literal(rawtext, role_text(text))], []


def _numbered_role(label: str):
    """Sphinx's :pep: and :rfc: roles: `8` → "PEP 8", `PEP 8 <8#id>` → its title.

    docutils has these roles too, but refuses the titled form (an error node and a
    leaked system message instead of the text).
    """

    def role(name, rawtext, text, lineno, inliner, options=None, content=None):
        match = _TITLE_TARGET.match(text)
        shown = match.group(1) if match and match.group(1) else f"{label} {text.split('#', 1)[0]}"
        return [nodes.literal(rawtext, shown)], []

    return role


# Roles docutils knows under the same name but parses differently from Sphinx.
SPHINX_OVERRIDES = {"pep": _numbered_role("PEP"), "rfc": _numbered_role("RFC")}


def register_sphinx_names(text: str) -> None:
    """Register a generic handler for each directive and role in `text` that docutils lacks.

    `.. class::` is docutils' too (it sets an HTML class on what follows), but in a Sphinx
    source it documents a class: docutils' handler dropped every signature and some whole
    descriptions (library/email.mime.rst.txt kept 1,292 of its 11,758 bytes; the Python docs
    have 917 `.. class::` in 165 files). Sphinx's reading wins when the text uses any Sphinx
    name; in plain reStructuredText docutils' own `class` stays.
    """
    directive_names, role_names = set(_DIRECTIVE.findall(text)), set(_ROLE.findall(text))
    sphinx = False
    for name in directive_names:
        if name.lower() not in en.directives:
            directives.register_directive(name, SphinxDirective)
            sphinx = True
    for name in role_names:
        if name.lower() in SPHINX_OVERRIDES:
            roles.register_local_role(name, SPHINX_OVERRIDES[name.lower()])
        elif name.lower() not in en.roles:
            roles.register_local_role(name, sphinx_role)
            sphinx = True
    # The registry is the process's: set `class` for this text either way.
    directives.register_directive("class", SphinxDirective if sphinx else Class)


def _prefix_label(node: nodes.Element, label: str) -> None:
    """Put "Label: " before the first paragraph of `node` (or make one: "New in version 3.3.")."""
    first = node.next_node(nodes.paragraph)
    if first is None:
        node.insert(0, nodes.paragraph(text=f"{label}."))
    else:
        first.insert(0, nodes.Text(f"{label}: "))


def clean_doctree(document: nodes.document) -> None:
    """Comments, docutils' own messages and `.. contents::` tables go; admonitions read "Note: …"
    (a label, never a heading)."""
    # A system message ("<string>:12: (ERROR/3) …") is docutils talking about the markup,
    # not the document's text, wherever the parser nested it.
    for node in list(document.findall(lambda n: isinstance(n, (nodes.comment, nodes.system_message)))):
        node.parent.remove(node)
    for topic in list(document.findall(nodes.topic)):
        if "contents" in topic["classes"]:
            topic.parent.remove(topic)
    for admonition in list(document.findall(nodes.Admonition)):
        title = admonition.next_node(nodes.title) if isinstance(admonition, nodes.admonition) else None
        if title is not None and title.parent is admonition:
            label = title.astext().strip()
            admonition.remove(title)
        else:
            label = admonition.tagname.capitalize()
        _prefix_label(admonition, label)
