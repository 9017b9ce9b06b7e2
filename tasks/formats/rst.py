"""reStructuredText, Sphinx sources included (docutils, with Sphinx's directives and roles kept as
text by kbflow.tasks.formats.sphinx_rst): sections by nesting; literal and doctest blocks keep their
indentation."""

from __future__ import annotations

from kbflow.tasks.formats.base import HEADING_SEPARATOR, ParsedText, preformatted
from kbflow.tasks.formats.sphinx_rst import clean_doctree, register_sphinx_names


def parse_rst(text: str) -> ParsedText:
    from docutils import nodes
    from docutils.core import publish_doctree

    settings = {
        "report_level": 5,  # never print docutils warnings on our users' terminals
        "halt_level": 5,
        "file_insertion_enabled": False,  # no `.. include::` of files outside the source
        "raw_enabled": False,
        "doctitle_xform": False,  # keep the top section a section, like the others
    }
    register_sphinx_names(text)
    document = publish_doctree(text, settings_overrides=settings)
    clean_doctree(document)
    for block in list(document.findall(lambda n: isinstance(n, (nodes.literal_block, nodes.doctest_block)))):
        block.children = [nodes.Text(preformatted(block.astext()))]
    parsed = ParsedText()

    def body_of(node) -> str:
        return "\n\n".join(
            child.astext()
            for child in node.children
            if not isinstance(child, (nodes.section, nodes.title, nodes.system_message))
        )

    def walk(node, path: list[str]) -> None:
        for child in node.children:
            if isinstance(child, nodes.section):
                title = child.next_node(nodes.title)
                heading_path = [*path, title.astext() if title else ""]
                parsed.title = parsed.title or heading_path[0]
                parsed.add(HEADING_SEPARATOR.join(p for p in heading_path if p), body_of(child))
                walk(child, heading_path)

    parsed.add("", body_of(document))
    walk(document, [])
    return parsed
