from __future__ import annotations

import time

import pytest

from kbflow.tasks.parse import ParseError, decode_text, parse_bytes, parse_file_items

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
                      "format": name.rsplit(".", 1)[1], "content_hash": "h", "size": len(data)})
    documents, quarantined = parse_file_items(items)
    assert [d["uri"] for d in documents] == ["good.md"]
    reasons = {q.uri: q.reason for q in quarantined}
    assert set(reasons) == {"truncated.pdf", "binary.txt", "random.docx"}
    assert reasons["binary.txt"] == "binary_content"
    assert all(q.stage == "parse" and q.detail for q in quarantined)
