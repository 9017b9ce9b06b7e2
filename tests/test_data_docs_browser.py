"""GX Data Docs, rendered by a real browser (headless Chromium) with no network, list every run's
validations and show each page styled, with its status icons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kbflow.config import load_config
from kbflow.flows.ingest import ingest

from browser import browser, chromium, local_only  # noqa: F401  - fixtures
from conftest import write

pytestmark = pytest.mark.usefixtures("prefect_harness")
ARTIFACTS = Path(__file__).parent / "artifacts"
BOOTSTRAP_DANGER = "rgb(220, 53, 69)"  # .text-danger in Bootstrap 4


def test_data_docs_work_offline(small_corpus, hash_embedder, browser):
    write(small_corpus.parent, {"docs/stub.txt": "tiny"})  # fails the documents suite
    first = ingest(config_path=str(small_corpus))
    write(small_corpus.parent, {"docs/more.md": "# More\n\nA second run validates this new document and its chunks."})
    second = ingest(config_path=str(small_corpus))
    results_dir = load_config(small_corpus).quality.results_dir
    site = results_dir / "gx" / "uncommitted" / "data_docs" / "local_site"
    expected = {
        (suite["name"], report["run_id"])
        for report in (first, second)
        for suite in json.loads((results_dir / "runs" / f"{report['run_id']}.json").read_text())["suites"]
    }
    assert {run for _, run in expected} == {first["run_id"], second["run_id"]}

    # The index's tables are built by bootstrap-table: rows exist only if its scripts loaded.
    requested = browser.open(site / "index.html")
    assert local_only(requested), requested
    links = browser.evaluate(
        "Array.from(document.querySelectorAll('table tbody tr[data-href]')).map(row => row.dataset.href)")
    listed = {(href.split("/")[1], href.split("/")[2]) for href in links if href.startswith("validations/")}
    assert expected <= listed, expected - listed

    (page,) = (site / "validations" / "documents").glob(f"{first['run_id']}/*/*.html")
    requested = browser.open(page)
    assert local_only(requested), requested
    text = browser.evaluate(r"document.body.textContent.replace(/\s+/g, ' ')")
    assert "Expectation Suite: documents" in text and "Status: Failed" in text and "n_chars" in text
    style = browser.evaluate("""document.fonts.ready.then(() => {
        const icon = document.querySelector('i.fa-times.text-danger');  // the failed expectation's mark
        return {navbar: getComputedStyle(document.querySelector('nav.navbar')).display,
                icon_color: getComputedStyle(icon).color,
                icon_glyph: getComputedStyle(icon, '::before').content,
                icon_font_loaded: document.fonts.check('900 16px "Font Awesome 6 Free"')};
    })""")
    assert style == {"navbar": "flex", "icon_color": BOOTSTRAP_DANGER, "icon_glyph": '"\uf00d"',
                     "icon_font_loaded": True}

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "data-docs-documents.png"
    browser.screenshot(screenshot)
    assert screenshot.stat().st_size > 10_000
