"""The docs site in a real browser (headless Chromium) with every outside connection refused: pages render
styled, the navigation lists every section of mkdocs.yml, search finds a word.

The site is served from 127.0.0.1 (as `python -m http.server -d site` would): Material's search runs in a
Web Worker, which a page opened from disk cannot start in Chromium (the offline plugin's iframe shim did
not answer here), so opened from disk, navigation and pages work and search does not."""

from __future__ import annotations

import functools
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from browser import browser, chromium, local_only  # noqa: F401  - fixtures
from docs_site import ROOT, site  # noqa: F401  - site: the built site, a fixture

ARTIFACTS = Path(__file__).parent / "artifacts"
MATERIAL_INDIGO = "rgb(64, 81, 181)"  # the header of theme.palette.primary: indigo


class QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(site):
    """The built site over HTTP on loopback; its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietFiles, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/"
    server.shutdown()


def nav_titles(nav) -> list[str]:
    """Every section and page title of mkdocs.yml's nav."""
    titles = []
    for item in nav:
        if isinstance(item, dict):
            for title, value in item.items():
                titles.append(title)
                if isinstance(value, list):
                    titles += nav_titles(value)
    return titles


def test_the_site_renders_styled_offline_lists_every_section_and_finds_quarantine(served, browser):
    # A desktop window: the sidebar is the page's own column, not the mobile drawer.
    browser.call("Emulation.setDeviceMetricsOverride", width=1280, height=1600, deviceScaleFactor=1, mobile=False)
    requested = browser.open(served + "index.html")
    assert len(requested) > 5 and local_only(requested, served), [u for u in requested if not local_only([u], served)]
    style = browser.evaluate("""document.fonts.ready.then(() => ({
        header: getComputedStyle(document.querySelector('.md-header')).backgroundColor,
        sidebar: getComputedStyle(document.querySelector('.md-sidebar--primary')).position,
        sheets: Array.from(document.styleSheets).filter(s => s.href && s.href.includes('assets/stylesheets/main')).length,
    }))""")
    assert style == {"header": MATERIAL_INDIGO, "sidebar": "sticky", "sheets": 1}, style

    shown = browser.evaluate(
        "Array.from(document.querySelectorAll('.md-nav--primary .md-nav__link')).map(a => a.textContent.trim())")
    expected = nav_titles(yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"])
    assert len(expected) > 40
    assert [title for title in expected if title not in shown] == []

    # Search: Material's own in-browser index (lunr), no server.
    browser.evaluate("""(() => {
        const input = document.querySelector('.md-search__input');
        input.focus(); input.value = 'quarantine';
        for (const kind of ['input', 'keyup', 'change']) input.dispatchEvent(new Event(kind, {bubbles: true}));
    })()""")
    deadline, results = time.monotonic() + 30, []
    while time.monotonic() < deadline and not results:
        time.sleep(0.5)
        results = browser.evaluate(
            "Array.from(document.querySelectorAll('.md-search-result__item')).map(li => li.textContent.trim())")
    assert results and any("quarantine" in result.lower() for result in results), results
    assert any("Quality gates and quarantine" in result for result in results), results

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "docs-site-search.png"
    browser.screenshot(screenshot)
    assert screenshot.stat().st_size > 10_000


def test_a_page_opened_from_disk_renders_styled_with_nothing_fetched(site, browser):
    requested = browser.open(site / "concepts" / "quality.html")
    assert len(requested) > 5 and local_only(requested), [u for u in requested if not local_only([u])]
    header = browser.evaluate("getComputedStyle(document.querySelector('.md-header')).backgroundColor")
    assert header == MATERIAL_INDIGO


def test_a_reference_page_renders_its_generated_tables(site, browser):
    requested = browser.open(site / "reference" / "config.html")
    assert local_only(requested), requested
    rows = browser.evaluate("document.querySelectorAll('article table tbody tr').length")
    key = browser.evaluate("document.getElementById('quality.max_quarantined_share').closest('tr').textContent")
    assert rows > 100 and "0.25" in key, (rows, key)
