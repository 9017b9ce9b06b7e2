"""Main content of an HTML page: its text and headings, without site chrome.

Read with the standard library's streaming HTML tokenizer (linear in the input, so
pathological nesting costs nothing: tree builders here were quadratic or silently
dropped text past a depth limit). Structure rules, not scoring, decide what is chrome:
`nav`/`aside`, page-level `header`/`footer`, ARIA navigation roles and the class names
documentation generators give their navigation (DocBook's navheader/navfooter/toc,
Sphinx's related/sphinxsidebar/headerlink, common theme names). When a page marks its
main region (`<main>`, role=main) only that region is read. Main-content scorers
(trafilatura) dropped code blocks and sections of the PostgreSQL manual; see
bench/README.md. An element is followed to its end tag by counting nesting of its tag
name, so an unclosed chrome element hides the rest of the page (well-formed generated
documentation is not affected). Admonitions (DocBook `div.note > h3`, Sphinx
`div.admonition > p.admonition-title`, or a heading that only says "Note") are text of
their section, prefixed with their label: "Note: …".
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from kbflow.tasks.formats.base import HeadingStack, ParsedText, preformatted

# Admonition labels: a heading or title with one of these texts is the label of the
# paragraph it opens ("Note: …"), never a section heading.
ADMONITION_LABELS = {"note", "tip", "warning", "caution", "important", "attention", "danger", "hint"}
ADMONITION_CLASSES = ADMONITION_LABELS | {"admonition", "seealso", "callout", "error"}
# Site chrome: elements, ARIA roles and class/id names of navigation, page headers and
# footers, breadcrumbs, sidebars and tables of contents (DocBook's navheader/navfooter/toc,
# Sphinx's related/sphinxsidebar/headerlink, common theme names).
CHROME_TAGS = {"nav", "aside"}
PAGE_CHROME_TAGS = {"header", "footer"}  # chrome at page level, content inside an article
CHROME_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "menu", "menubar", "toolbar"}
CHROME_NAMES = {
    "navheader", "navfooter", "navbar", "navigation", "nav", "breadcrumb", "breadcrumbs", "toc", "sidebar",
    "sphinxsidebar", "related", "footer", "header", "headerlink", "skip-link", "menu", "mobile-nav",
    "cookie-banner", "cookies", "edit-this-page", "pagination", "prev-next", "toc-wrapper",
}


def _names(attrs: dict[str, str | None]) -> set[str]:
    return set(f"{attrs.get('class') or ''} {attrs.get('id') or ''}".lower().split())


class _Region:
    """An element being tracked to its end tag by counting nesting of the same tag name."""

    def __init__(self, tag: str) -> None:
        self.tag, self.depth = tag, 1

    def start(self, tag: str) -> None:
        self.depth += tag == self.tag

    def end(self, tag: str) -> bool:
        """True when this end tag closes the region."""
        self.depth -= tag == self.tag
        return self.depth == 0


class _HtmlText(HTMLParser):
    """Collects the main content's text and headings from a stream of HTML tokens.

    Main content: inside `<main>`/role=main when the page has one; never site chrome
    (see CHROME_*). Admonitions keep their label as a prefix of their text.
    """

    SKIP = {"script", "style", "noscript", "template", "svg", "head", "button", "select"}
    BLOCK = {
        "p", "div", "br", "li", "tr", "td", "th", "pre", "blockquote", "section", "article",
        "table", "ul", "ol", "dl", "dd", "dt", "header", "footer", "nav", "main", "aside",
        "figure", "figcaption", "hr", "form",
    }
    HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}

    def __init__(self, has_main: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.parsed, self.stack = ParsedText(), HeadingStack()
        self.skip_depth, self.in_title = 0, False
        self.heading: str = ""
        self.heading_level: int | None = None
        self.heading_parts: list[str] = []
        self.body_parts: list[str] = []
        self.title_parts: list[str] = []
        self.outside_main = has_main  # until <main> or role=main opens
        self.main: _Region | None = None
        self.chrome: _Region | None = None
        self.admonition: _Region | None = None
        self.label: _Region | None = None  # an admonition's title element
        self.label_parts: list[str] = []
        self.pending_label = ""
        self.articles = 0
        self.pre_depth = 0  # inside <pre>: text kept as written

    def handle_starttag(self, tag: str, attrs) -> None:
        for region in (self.main, self.chrome, self.admonition, self.label):
            if region is not None:
                region.start(tag)
        if tag == "title":
            self.in_title = True
            return
        if tag in self.SKIP:
            self.skip_depth += 1
            return
        attributes = dict(attrs)
        names, role = _names(attributes), (attributes.get("role") or "").lower()
        if self.outside_main and self.main is None and (tag == "main" or role == "main"):
            self.main = _Region(tag)
        if self.chrome is None and self._is_chrome(tag, names, role):
            self.chrome = _Region(tag)
        if tag in {"article", "main", "section"}:
            self.articles += 1
        if tag == "pre":
            self.pre_depth += 1
        if self._hidden:
            return
        if self.admonition is None and names & ADMONITION_CLASSES and tag not in self.HEADINGS:
            self.admonition = _Region(tag)
        if self.label is None and (
            "admonition-title" in names or (tag in self.HEADINGS and self.admonition is not None)
        ):
            self.label, self.label_parts = _Region(tag), []
            self.body_parts.append("\n")
        elif tag in self.HEADINGS and self.label is None:
            self._flush()
            self.heading_level, self.heading_parts = self.HEADINGS[tag], []
        elif tag in self.BLOCK:
            self.body_parts.append("\n")

    def _is_chrome(self, tag: str, names: set[str], role: str) -> bool:
        return (
            tag in CHROME_TAGS
            or (tag in PAGE_CHROME_TAGS and not self.articles)
            or role in CHROME_ROLES
            or bool(names & CHROME_NAMES)
        )

    @property
    def _hidden(self) -> bool:
        return self.chrome is not None or (self.outside_main and self.main is None)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in self.SKIP:
            self.skip_depth = max(0, self.skip_depth - 1)
            return
        if tag in {"article", "main", "section"}:
            self.articles = max(0, self.articles - 1)
        if tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)
        hidden = self._hidden
        if self.label is not None and self.label.end(tag):
            self.label = None
            label = " ".join("".join(self.label_parts).split()).rstrip(":")
            self.pending_label = f"{label}: " if label else ""
        elif not hidden and tag in self.HEADINGS and self.heading_level is not None:
            self._end_heading()
        elif not hidden and tag in self.BLOCK:
            self.body_parts.append("\n")
        if self.admonition is not None and self.admonition.end(tag):
            self.admonition, self.pending_label = None, ""
        if self.chrome is not None and self.chrome.end(tag):
            self.chrome = None
        if self.main is not None and self.main.end(tag):
            self.main, self.outside_main = None, True

    def _end_heading(self) -> None:
        title = " ".join("".join(self.heading_parts).split())
        self.heading_level, level = None, self.heading_level
        if title.lower().rstrip(":") in ADMONITION_LABELS:  # a bare "Note" heading labels what follows
            self.pending_label = f"{title.rstrip(':')}: "
            return
        self.heading = self.stack.push(level, title)
        if level == 1 and not self.parsed.title:
            self.parsed.title = title

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title_parts.append(data)
        elif self.skip_depth or self._hidden:
            return
        elif self.label is not None:
            self.label_parts.append(data)
        elif self.heading_level is not None:
            self.heading_parts.append(data)
        else:
            if self.pending_label and data.strip():
                self.body_parts.append(self.pending_label)
                self.pending_label = ""
                data = data.lstrip()
            self.body_parts.append(preformatted(data) if self.pre_depth else data)

    def _flush(self) -> None:
        self.parsed.add(self.heading, "".join(self.body_parts))
        self.body_parts = []

    def result(self) -> ParsedText:
        self.close()
        if self.heading_level is not None:
            self._end_heading()
        self._flush()
        page_title = " ".join("".join(self.title_parts).split())
        self.parsed.title = page_title or self.parsed.title
        return self.parsed


_MAIN = re.compile(r"""<main[\s>]|\srole\s*=\s*["']?main\b""", re.IGNORECASE)


def main_content(text: str) -> ParsedText:
    """The page's main content: chrome dropped, admonitions labelled (see _HtmlText)."""
    collector = _HtmlText(has_main=bool(_MAIN.search(text)))
    collector.feed(text)
    parsed = collector.result()
    if not parsed.text and collector.outside_main:  # a <main> that held nothing: read the whole page
        collector = _HtmlText(has_main=False)
        collector.feed(text)
        parsed = collector.result()
    return parsed


def parse_html(text: str) -> ParsedText:
    """An HTML page as text: its main content (the format registry's name for main_content)."""
    return main_content(text)
