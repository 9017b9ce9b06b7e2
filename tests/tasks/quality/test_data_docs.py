"""Offline Data Docs: every CDN asset GX pages load is shipped, and pages point at the site's copy."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import great_expectations

from kbflow.tasks.quality.data_docs import REMOTE_ASSETS, SITE_VENDOR_DIR, localize_page, make_site_offline

GX_TEMPLATES = Path(great_expectations.__file__).parent / "render" / "view" / "templates"
_REMOTE = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)=["'](https?://[^"']+)["']""")
_LOCAL = re.compile(r"""<(?:script|link|img)\b[^>]*?\b(?:src|href)=["']([^"'#?]+)""")


def gx_remote_assets() -> set[str]:
    """The URLs of scripts and stylesheets in the installed GX's page templates."""
    return {url for template in GX_TEMPLATES.glob("*.j2") for url in _REMOTE.findall(template.read_text())}


def page_with(urls) -> str:
    tags = [f'<script src="{url}" integrity="sha384-x" crossorigin="anonymous"></script>' if not url.endswith("css")
            else f'<link rel="stylesheet" href="{url}"/>' for url in urls]
    return "<html><head>\n" + "\n".join(tags) + "\n</head><body>ok</body></html>"


def test_every_remote_asset_of_the_installed_gx_is_known():
    found = gx_remote_assets()
    assert found, f"no CDN links found in {GX_TEMPLATES}: has GX moved its templates?"
    assert found <= set(REMOTE_ASSETS), f"GX pages load assets kbflow does not ship: {found - set(REMOTE_ASSETS)}"


def test_a_page_points_at_the_site_copy_relative_to_its_depth(tmp_path, caplog):
    site = tmp_path / "site"
    page = site / "validations" / "documents" / "run-1" / "20261130T1200Z" / "kbflow-documents.html"
    html = page_with(["https://code.jquery.com/jquery-3.7.1.min.js",
                      "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js",
                      "https://example.org/other.js"])
    html += ('<img src="https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/logo-long.png?d=1&x=2"/>'
             "<style>.a { background: url('https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
             "full_logo_dark.png') }</style>")

    with caplog.at_level(logging.WARNING):
        local = localize_page(html, page, site)

    assert '<script src="../../../../static/vendor/jquery/jquery.min.js"></script>' in local  # no integrity
    assert "popper" not in local  # inside Bootstrap's bundle
    assert '<script src="https://example.org/other.js"' in local and "example.org/other.js" in caplog.text
    assert '<img src="../../../../static/images/logo-long.png"/>' in local
    assert "url('../../../../static/images/logo-long.png')" in local  # an image GX does not ship: its logo
    assert "amazonaws" not in local


def test_site_made_offline_loads_only_files_that_exist(tmp_path):
    site = tmp_path / "site"
    pages = [site / "index.html", site / "expectations" / "documents.html",
             site / "validations" / "run" / "r1" / "t1" / "kbflow-run.html"]
    for page in pages:
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(page_with(REMOTE_ASSETS))

    assert make_site_offline(site) == len(pages)

    for page in pages:
        html = page.read_text()
        assert "https://" not in html and "integrity=" not in html and "crossorigin" not in html
        local = _LOCAL.findall(html)
        assert len(local) == sum(1 for path in REMOTE_ASSETS.values() if path)  # None: the tag is gone
        for reference in local:
            assert (page.parent / reference).is_file(), (page, reference)
    # Font Awesome's stylesheet loads its fonts from ../webfonts/
    fonts = set(re.findall(r"url\(\.\./webfonts/([\w.-]+)\)",
                           (site / SITE_VENDOR_DIR / "font-awesome" / "css" / "all.min.css").read_text()))
    assert "fa-solid-900.woff2" in fonts
    assert all((site / SITE_VENDOR_DIR / "font-awesome" / "webfonts" / font).is_file() for font in fonts)
    assert make_site_offline(site) == 0  # a second pass finds nothing left to change


def test_no_site_no_work(tmp_path):
    assert make_site_offline(tmp_path / "missing") == 0
    assert not (tmp_path / "missing").exists()
