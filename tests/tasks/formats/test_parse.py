from __future__ import annotations

import time

import pyarrow as pa
import pytest

from kbflow.config import source_config
from kbflow.tasks.formats.parse import ParseError, decode_text, parse_bytes
from kbflow.tasks.sources.read import parse_items


from fakes import minimal_docx, minimal_pdf


def headings(parsed) -> list[str]:
    return [heading for heading, _ in parsed.sections]


def test_markdown_sections_follow_heading_levels():
    text = "Intro line.\n\n# Guide\n\nStart.\n\n## Install\n\nRun it.\n\n```\n# not a heading\n```\n\n# Other\n\nEnd.\n"
    parsed = parse_bytes(text.encode(), "md")
    assert headings(parsed) == ["", "Guide", "Guide > Install", "Other"]
    assert parsed.title == "Guide"
    assert "# not a heading" in parsed.text  # a comment inside a code fence is body text


def test_rst_sections_and_title():
    text = "Manual\n======\n\nFirst words.\n\nSetup\n-----\n\nInstall the package.\n"
    parsed = parse_bytes(text.encode(), "rst")
    assert headings(parsed) == ["Manual", "Manual > Setup"]
    assert parsed.title == "Manual"
    assert "Install the package." in parsed.text


def test_html_text_skips_scripts_and_keeps_heading_path():
    html = (
        "<html><head><title>FAQ page</title><style>p {color: red}</style></head><body>"
        "<h1>FAQ</h1><p>General &amp; more.</p><script>var secret = 1;</script>"
        "<h2>Billing</h2><p>Invoices monthly.</p></body></html>"
    )
    parsed = parse_bytes(html.encode(), "html")
    assert parsed.title == "FAQ page"
    assert "FAQ > Billing" in headings(parsed)
    assert "General & more." in parsed.text and "Invoices monthly." in parsed.text
    assert "secret" not in parsed.text and "color" not in parsed.text


def test_deeply_nested_html_is_parsed_fast_and_keeps_all_text():
    depth = 100_000
    html = "<h1>Top</h1>" + "<div>" * depth + "deep text" + "</div>" * depth + "<h2>After</h2><p>tail</p>"
    started = time.perf_counter()
    parsed = parse_bytes(html.encode(), "html")
    elapsed = time.perf_counter() - started
    assert "deep text" in parsed.text and "tail" in parsed.text
    assert "Top > After" in headings(parsed)
    assert elapsed < 30, "pathological nesting must not make parsing quadratic"


def test_non_utf8_text_is_decoded():
    data = "Le café est prêt. Naïve résumé, déjà vu, garçon.".encode("cp1252")
    assert decode_text(data) == "Le café est prêt. Naïve résumé, déjà vu, garçon."


def test_binary_bytes_are_refused():
    with pytest.raises(ParseError) as raised:
        decode_text(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    assert raised.value.reason == "binary_content"


def test_pdf_text_and_title():
    parsed = parse_bytes(minimal_pdf(["Release 3.1 adds offline sync.", "Fixed: login loop."], title="Notes 3.1"), "pdf")
    assert "offline sync" in parsed.text and "login loop" in parsed.text
    assert parsed.title == "Notes 3.1"


def test_pdf_running_headers_footers_and_page_numbers_are_removed():
    body = [["Magic rules match the first bytes of a file.", "Each rule has a priority and a type."],
            ["Globs match the file name; the longest glob wins.", "Shared MIME-info Database keeps both."],
            ["Aliases map old type names to new ones."]]
    pages = [["Shared MIME-info Database", *lines, f"Page {n} of 3"] for n, lines in enumerate(body, start=1)]
    pages[1].insert(0, "2")  # a bare page number above the running header
    parsed = parse_bytes(minimal_pdf([], pages=pages), "pdf")
    assert all(line in parsed.text for lines in body for line in lines)  # the control: every body line is kept
    assert "Page " not in parsed.text and not any(line.strip() == "2" for line in parsed.text.splitlines())
    assert parsed.text.count("Shared MIME-info Database") == 1  # the running header went, the sentence stayed
    assert parsed.title == "Shared MIME-info Database"  # no metadata title: the running header names it


def test_pdf_chunks_sit_under_the_document_title():
    from kbflow.schemas import PARSED
    from kbflow.tasks.index.chunk import chunk_documents

    from fakes import WhitespaceTokenizer

    parsed = parse_bytes(minimal_pdf(["Release 3.1 adds offline sync."] * 3, title="Notes 3.1"), "pdf")
    row = {"doc_id": "d", "source": "s", "tenant": "t", "uri": "notes.pdf", "format": "pdf", "content_hash": "h",
           "size": 1, "title": parsed.title, "text": parsed.text, "metadata": "{}",
           "sections": [{"heading": h, "start": start} for h, start in parsed.sections]}
    chunks = chunk_documents(pa.Table.from_pylist([row], schema=PARSED), WhitespaceTokenizer(), 64, 4)
    assert chunks.num_rows >= 1 and set(chunks.column("heading").to_pylist()) == {"Notes 3.1"}


def test_docx_headings_and_title():
    data = minimal_docx("Privacy Policy", {"Data we keep": "We keep account emails.", "Deletion": "Ask and we delete."})
    parsed = parse_bytes(data, "docx")
    assert parsed.title == "Privacy Policy"
    assert headings(parsed)[-2:] == ["Data we keep", "Deletion"]
    assert "We keep account emails." in parsed.text


def test_bad_files_are_quarantined_with_a_reason_and_the_rest_parsed(tmp_path):
    files = {
        "good.md": b"# Fine\n\nAll good here.\n",
        "truncated.pdf": minimal_pdf(["some text"] * 20)[:200],
        "binary.txt": b"\x00\x01\x02\x03" * 100,
        "random.docx": b"PK\x03\x04 this is not really a zip",
    }
    items = []
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        items.append({"doc_id": name, "source": "s", "tenant": "t", "uri": name, "path": str(tmp_path / name),
                      "format": name.rsplit(".", 1)[1], "content_hash": None, "size": len(data)})
    documents, quarantined = parse_items(items, source_config(name="s", kind="files", path=tmp_path))
    assert [d["uri"] for d in documents] == ["good.md"]
    reasons = {q.uri: q.reason for q in quarantined}
    assert set(reasons) == {"truncated.pdf", "binary.txt", "random.docx"}
    assert reasons["binary.txt"] == "binary_content"
    assert all(q.stage == "parse" and q.detail for q in quarantined)


DOCBOOK_PAGE = (
    '<html><head><title>26.3. Continuous Archiving</title><link rel="prev" href="a.html"/></head><body>'
    '<div class="navheader"><table><tr><th colspan="5">26.3. Continuous Archiving</th></tr><tr>'
    '<td><a accesskey="p" href="a.html">Prev</a></td><td><a accesskey="u" href="b.html">Up</a></td>'
    '<th>Chapter 26. Backup and Restore</th><td><a accesskey="n" href="c.html">Next</a></td></tr></table><hr/></div>'
    '<div class="sect1"><h2 class="title">26.3. Continuous Archiving</h2>'
    '<div class="toc"><dl><dt><a href="x.html">26.3.1. Setting Up WAL Archiving</a></dt></dl></div>'
    '<p>The server writes a write ahead log.</p>'
    '<div class="sect2"><h3 class="title">26.3.1. Setting Up WAL Archiving</h3><p>Set archive_mode.</p>'
    '<div class="note"><h3 class="title">Note</h3><p>Archiving needs a restart.</p></div>'
    '<pre class="programlisting">archive_command = \'cp %p /mnt/%f\'</pre><p>More text after the note.</p></div></div>'
    '<div class="navfooter"><hr/><table><tr><td><a href="a.html">Prev</a></td><td><a href="b.html">Up</a></td>'
    '<td><a href="c.html">Next</a></td></tr><tr><td>26.2. File System Level Backup</td>'
    '<td><a href="index.html">Home</a></td><td>26.4. Log-Shipping</td></tr></table></div></body></html>'
)


def test_docbook_page_keeps_content_drops_navigation_and_toc():
    parsed = parse_bytes(DOCBOOK_PAGE.encode(), "html")
    for chrome in ("Prev", "Next", "Home", "Chapter 26", "26.2. File System", "26.4. Log-Shipping"):
        assert chrome not in parsed.text
    assert parsed.text.count("Setting Up WAL Archiving") == 0  # the toc entry; the heading is a section
    assert "The server writes a write ahead log." in parsed.text
    assert "archive_command = 'cp %p /mnt/%f'" in parsed.text  # code blocks are content
    assert headings(parsed) == ["26.3. Continuous Archiving", "26.3. Continuous Archiving > 26.3.1. Setting Up WAL Archiving"]


def test_admonition_in_html_is_labelled_content_of_its_section():
    parsed = parse_bytes(DOCBOOK_PAGE.encode(), "html")
    assert not any(heading.endswith("Note") for heading in headings(parsed))
    assert "Note: Archiving needs a restart." in parsed.text
    assert parsed.sections[-1][0].endswith("Setting Up WAL Archiving")
    assert "More text after the note." in parsed.text[parsed.sections[-1][1]:]


def test_sphinx_html_reads_only_the_main_role_and_labels_admonitions():
    html = (
        '<html><head><title>os.path — Python docs</title></head><body>'
        '<div class="related" role="navigation"><ul><li><a href="index.html">index</a></li>'
        '<li><a href="os.html">previous</a> |</li></ul></div>'
        '<div class="document"><div class="body" role="main">'
        '<section><h1>os.path<a class="headerlink" href="#os-path">¶</a></h1><p>Path functions.</p>'
        '<div class="admonition note"><p class="admonition-title">Note</p><p>All accept bytes.</p></div>'
        '<div class="admonition warning"><p class="admonition-title">Warning</p><p>Not on Windows.</p></div>'
        '<section><h2>Functions<a class="headerlink" href="#f">¶</a></h2><p>join() joins.</p></section></section>'
        '</div></div><div class="sphinxsidebar" role="navigation"><h3>Table of Contents</h3><ul><li>os.path</li></ul>'
        '<h3>Previous topic</h3><p>os</p></div><div class="footer">© Copyright 2001-2023.</div></body></html>'
    )
    parsed = parse_bytes(html.encode(), "html")
    assert headings(parsed) == ["os.path", "os.path > Functions"]
    assert "Note: All accept bytes." in parsed.text and "Warning: Not on Windows." in parsed.text
    for chrome in ("index", "previous", "Table of Contents", "Previous topic", "Copyright", "¶"):
        assert chrome not in parsed.text + " ".join(headings(parsed))


def test_generic_nav_header_footer_are_dropped_but_an_article_header_is_kept():
    html = (
        '<body><header><a href="/">Acme</a> <nav><a href="/docs">Docs</a> <a href="/blog">Blog</a></nav></header>'
        '<div class="breadcrumbs"><a href="/">Home</a> / <a href="/docs">Docs</a></div>'
        '<article><header><h1>Billing</h1><p>Updated in May.</p></header><p>Invoices are sent monthly.</p>'
        '<aside>Related: Pricing</aside><footer>Written by the billing team.</footer></article>'
        '<div role="contentinfo">Cookie settings</div><footer>© Acme Inc.</footer></body>'
    )
    parsed = parse_bytes(html.encode(), "html")
    assert "Invoices are sent monthly." in parsed.text and "Updated in May." in parsed.text
    assert "Written by the billing team." in parsed.text  # an article's own footer is content
    for chrome in ("Acme", "Docs", "Blog", "Home", "Related", "Cookie", "©"):
        assert chrome not in parsed.text
    assert headings(parsed)[-1] == "Billing"


def test_navigation_only_page_yields_no_text():
    page = DOCBOOK_PAGE.split('<div class="sect1">')[0] + DOCBOOK_PAGE[DOCBOOK_PAGE.index('<div class="navfooter">'):]
    assert parse_bytes(page.encode(), "html").text == ""


def test_unclosed_chrome_and_broken_markup_stay_bounded():
    html = "<p>Before.</p><div class='sidebar'><div>menu" + "<div><p>x" * 50_000 + "</div>" * 10 + "<p>after"
    started = time.perf_counter()
    parsed = parse_bytes(html.encode(), "html")
    assert time.perf_counter() - started < 30
    assert parsed.text.startswith("Before.")


def test_rst_admonitions_and_sphinx_directives_keep_their_text():
    text = (
        "Title\n=====\n\nSee :func:`~os.path.join` and :ref:`the guide <guide>`.\n\n"
        ".. note::\n\n   Notes are content.\n\n"
        ".. versionchanged:: 3.6\n   Accepts a path-like object.\n\n"
        ".. function:: spam(a, b)\n   :noindex:\n\n   Does spam.\n\n"
        ".. toctree::\n\n   intro\n\n.. XXX an editor's comment\n\n.. versionadded:: 3.3\n\n"
        ".. audit-event:: os.mkdir path,mode os.makedirs\n\n:class:`.Sub`\n-----------\n\nTail.\n"
    )
    parsed = parse_bytes(text.encode(), "rst")
    assert headings(parsed) == ["Title", "Title > Sub"]
    assert "See join and the guide." in parsed.text
    assert "Note: Notes are content." in parsed.text
    assert "Changed in version 3.6: Accepts a path-like object." in parsed.text
    assert "spam(a, b)" in parsed.text and "Does spam." in parsed.text
    assert "New in version 3.3." in parsed.text
    assert "intro" not in parsed.text and ":noindex:" not in parsed.text and "XXX" not in parsed.text
    assert "os.mkdir" not in parsed.text


def test_markdown_admonitions_mkdocs_and_github_are_labelled_text():
    text = (
        "# Guide\n\n> [!WARNING]\n> Back up first.\n\n"
        '!!! tip "Faster builds"\n    Use the cache.\n\n??? note\n    Collapsed.\n\nAfter.\n\n'
        "```\n!!! note\n```\n\n## Next\n\nEnd.\n"
    )
    parsed = parse_bytes(text.encode(), "md")
    assert headings(parsed) == ["Guide", "Guide > Next"]
    assert "Warning: Back up first." in parsed.text
    assert "Faster builds: Use the cache." in parsed.text and "Note: Collapsed." in parsed.text
    assert "[!WARNING]" not in parsed.text and "!!! note" in parsed.text  # code fences stay as written


CODE_IN_MARKUP = {
    "rst": (
        "T\n=\n\nSome   prose\n\n>>> for value in data:\n...     if value:\n...         print(value)\n\n"
        "Code::\n\n    def f():\n        return  1\n",
        ["Some prose", ">>> for value in data:\n...     if value:\n...         print(value)", "def f():\n    return  1"],
    ),
    "html": (
        "<html><body><h1>T</h1><p>Some\n      prose</p><pre class=\"synopsis\">CREATE ROLE <em>name</em>\n"
        "      SUPERUSER\n    | LOGIN</pre><p>After.</p></body></html>",
        ["Some\nprose", "CREATE ROLE name\n      SUPERUSER\n    | LOGIN\n"],
    ),
    "md": (
        "# T\n\nSome   prose\n\n```python\ndef f():\n\treturn  1\n```\n\n    indented:\n        deeper\n\n"
        "One line:\n\n    x  =  1\n",
        ["Some prose", "def f():\n    return  1\n```", "    indented:\n        deeper", "    x  =  1"],
    ),
}


@pytest.mark.parametrize("format", CODE_IN_MARKUP)
def test_code_keeps_its_indentation_in_every_markup(format):
    # Python without its indentation is another program (or none). Doctests, literal blocks,
    # <pre> (with inline markup inside) and fenced code used to lose every line's leading
    # spaces and have runs of spaces collapsed; prose around them is still normalized.
    source, expected = CODE_IN_MARKUP[format]
    text = parse_bytes(source.encode(), format).text
    for snippet in expected:
        assert snippet in text


def test_titles_and_headings_have_their_spaces_collapsed(tmp_path):
    # The Python tutorial's "Floating Point Arithmetic:  Issues and Limitations" kept both spaces.
    (tmp_path / "f.rst").write_text("Floating Point:  Issues\n=======================\n\nA  body.\n")
    items = [{"doc_id": "d", "source": "s", "tenant": "t", "uri": "f.rst", "format": "rst", "content_hash": None,
              "size": 1, "path": str(tmp_path / "f.rst")}]
    (document,), _ = parse_items(items, source_config(name="s", kind="files", path=tmp_path))
    assert document["title"] == "Floating Point: Issues"
    assert [s["heading"] for s in document["sections"]] == ["Floating Point: Issues"]


def test_our_preformatted_markers_in_the_input_are_not_trusted():
    text = parse_bytes("T\n=\n\na\ufdd0   b\ufdd1 \ufdd0c\n".encode(), "rst").text
    assert text == "a b c"


def test_the_registry_parses_every_extension_a_files_source_includes_by_default():
    from kbflow.formats import FILE_FORMATS
    from kbflow.tasks.formats.parse import FILE_EXTENSIONS, parse

    assert sorted(FILE_EXTENSIONS) == sorted(FILE_FORMATS)
    assert parse(b"# Title\n\nBody.", "guide.md").title == "Title"
    assert parse(b"Manual\n======\n\nBody.\n", "page.rst.txt").title == "Manual"
