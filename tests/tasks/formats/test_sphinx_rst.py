from __future__ import annotations

from kbflow.tasks.formats.parse import parse_bytes


def test_pep_and_rfc_roles_read_as_sphinx_shows_them():
    # docutils knows :pep: and :rfc: but refuses Sphinx's titled form ("PEP 594 <594#aifc>"),
    # which then left the raw role and a "(ERROR/3) PEP number must be …" message in the text.
    text = "T\n=\n\nSee :pep:`8`, :pep:`PEP 594 <594#aifc>`, :rfc:`2822` and :rfc:`TLS 1.2 <5246>`.\n"
    parsed = parse_bytes(text.encode(), "rst")
    assert "See PEP 8, PEP 594, RFC 2822 and TLS 1.2." in parsed.text
    assert ":pep:" not in parsed.text and "ERROR" not in parsed.text


def test_docutils_messages_never_reach_the_text():
    # Nested in a note, docutils' complaints about the markup used to be kept as text.
    text = (
        "Title\n=====\n\n.. note::\n\n   unterminated ``literal\n\n"
        "Body.\n\nc. third item\nd. fourth item\n"
    )
    parsed = parse_bytes(text.encode(), "rst")
    assert "Note: unterminated ``literal" in parsed.text
    assert "<string>" not in parsed.text and "WARNING" not in parsed.text and "INFO" not in parsed.text


def test_deprecated_removed_names_both_versions():
    text = "T\n=\n\n.. deprecated-removed:: 3.11 3.13\n   The aifc module is deprecated.\n"
    parsed = parse_bytes(text.encode(), "rst")
    assert "Deprecated since version 3.11, will be removed in version 3.13: The aifc module is deprecated." in parsed.text


def test_a_sphinx_class_keeps_its_signature_and_description_plain_rst_keeps_docutils_class():
    # docutils' own `class` directive (an HTML class for what follows) took Sphinx's
    # `.. class:: MIMEBase(...)`: the signature and, for most classes, the description were lost.
    sphinx = (
        "email.mime\n==========\n\nSee :mod:`email`.\n\n"
        ".. class:: MIMEBase(_maintype, _subtype)\n\n   This is the base class for all MIME subclasses.\n"
    )
    text = parse_bytes(sphinx.encode(), "rst").text
    assert "MIMEBase(_maintype, _subtype)" in text
    assert "This is the base class for all MIME subclasses." in text
    # In plain reStructuredText (parsed after a Sphinx text in the same process) `class` is docutils'.
    plain = "T\n=\n\n.. class:: special\n\nA paragraph.\n"
    assert parse_bytes(plain.encode(), "rst").text == "A paragraph."
