"""Markdown (CommonMark, markdown-it-py): sections by heading level; GitHub alerts and MkDocs
admonitions become labelled paragraphs ("Note: …"); code blocks keep their indentation."""

from __future__ import annotations

import re

from kbflow.tasks.formats.base import PRE_END, PRE_START, HeadingStack, ParsedText


# GitHub alerts ("> [!NOTE]") and MkDocs admonitions ("!!! note "Title"", "??? tip").
_GITHUB_ALERT = re.compile(r"^(\s*>\s*)\[!(NOTE|TIP|IMPORTANT|WARNING|CAUTION)\]\s*$", re.IGNORECASE)
_MKDOCS_ADMONITION = re.compile(r"""^(\s*)(?:!!!|\?\?\?\+?)\s*([\w-]+)(?:\s+"([^"]*)")?\s*$""")
_FENCE = re.compile(r"^\s*(```|~~~)")


def label_markdown_admonitions(text: str) -> str:
    """Admonitions become labelled paragraphs ("Note: …"), outside code fences.

    A GitHub alert's marker line joins the quote's first line; a MkDocs admonition's
    marker line becomes its label (its title, else its type) and its body is dedented.
    """
    lines, out, in_fence, body_indent, label = text.splitlines(), [], False, None, ""

    def emit(line: str) -> None:
        nonlocal label
        if label and line.strip():
            marker = re.match(r"^[\s>]*", line).group(0)
            line, label = f"{marker}{label}: {line[len(marker):]}", ""
        out.append(line)

    for index, line in enumerate(lines):
        if _FENCE.match(line):
            in_fence = not in_fence
        if body_indent is not None:
            if line.strip() and not line.startswith(body_indent):
                body_indent, label = None, ""
            else:
                emit(line[len(body_indent):])
                continue
        alert = None if in_fence else _GITHUB_ALERT.match(line)
        mkdocs = None if in_fence else _MKDOCS_ADMONITION.match(line)
        if alert and index + 1 < len(lines) and lines[index + 1].lstrip().startswith(">"):
            label = alert.group(2).capitalize()
            out.append("")
        elif mkdocs:
            title = mkdocs.group(3)
            label = title if title is not None else mkdocs.group(2).replace("-", " ").capitalize()
            out.append("")
            body_indent = mkdocs.group(1) + "    "
        else:
            emit(line)
    return "\n".join(out)


def parse_markdown(text: str) -> ParsedText:
    from markdown_it import MarkdownIt

    text = label_markdown_admonitions(text)
    lines = text.splitlines()
    tokens = MarkdownIt("commonmark").parse(text)
    headings = [
        (int(tokens[i].tag[1]), tokens[i + 1].content, tokens[i].map)
        for i, token in enumerate(tokens)
        if token.type == "heading_open" and token.map
    ]
    for token in tokens:  # code blocks keep their indentation
        if token.type in {"fence", "code_block"} and token.map:
            start, end = token.map
            lines[start] = PRE_START + lines[start]
            lines[end - 1] += PRE_END  # the same line for a one-line block
    parsed, stack = ParsedText(), HeadingStack()
    first_heading_line = headings[0][2][0] if headings else len(lines)
    parsed.add("", "\n".join(lines[:first_heading_line]))
    for index, (level, title, (_, end)) in enumerate(headings):
        body_end = headings[index + 1][2][0] if index + 1 < len(headings) else len(lines)
        parsed.add(stack.push(level, title), "\n".join(lines[end:body_end]))
        if level == 1 and not parsed.title:
            parsed.title = title.strip()
    return parsed
