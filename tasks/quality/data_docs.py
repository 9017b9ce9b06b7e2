"""GX Data Docs that work offline: the site carries its own scripts, styles and fonts.

GX 1.x renders every page with Bootstrap, bootstrap-table, jQuery, Font Awesome and friends
loaded from public CDNs, and its logo from a public bucket. On a closed network (the normal
case for a team on a private one) the index lists no validation results at all, because
bootstrap-table builds its tables, and the result pages render unstyled, without status
icons. After GX builds the site, `make_site_offline` copies the assets into
`<site>/static/vendor/` and points every page at them by relative paths, so the site works
from disk, from any folder it is copied to, with no network.

Where the assets come from (all licences allow redistribution):
- pip packages: XStatic-jQuery 3.7.1 (MIT), XStatic-Bootstrap 4.5.3 (MIT; its bundle includes
  Popper), XStatic-Font-Awesome 6.2.1 (icons CC BY 4.0, fonts OFL 1.1, code MIT),
  XStatic-Bootstrap-Datepicker 1.4.0 (Apache-2.0);
- shipped in tasks/data-docs-assets/: bootstrap-table 1.19.1 and its filter-control
  extension (MIT), the release GX references; no pip package carries it.
Left out, and so removed from the pages: Vega (graphs, which kbflow's suites do not
render) and the dark-mode Bootstrap theme.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

SITE_VENDOR_DIR = Path("static") / "vendor"
_SHIPPED = Path(__file__).parent / "data-docs-assets"
_BOOTSTRAP_TABLE = "bootstrap-table-1.19.1"
_GX_ASSETS_BUCKET = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"


def _xstatic_dir(name: str) -> Path:
    module = __import__(f"xstatic.pkg.{name}", fromlist=["BASE_DIR"])
    return Path(module.BASE_DIR)


def _asset_sources() -> dict[str, Path]:
    """Each file or folder of static/vendor/ (relative path) and where it is copied from."""
    bootstrap, jquery = _xstatic_dir("bootstrap"), _xstatic_dir("jquery")
    font_awesome, datepicker = _xstatic_dir("font_awesome"), _xstatic_dir("bootstrap_datepicker")
    return {
        "bootstrap/bootstrap.min.css": bootstrap / "css" / "bootstrap.min.css",
        "bootstrap/bootstrap.bundle.min.js": bootstrap / "js" / "bootstrap.bundle.min.js",
        "jquery/jquery.min.js": jquery / "jquery.min.js",
        "font-awesome/css/all.min.css": font_awesome / "css" / "all.min.css",
        "font-awesome/webfonts": font_awesome / "webfonts",  # all.min.css loads ../webfonts/*
        "font-awesome/LICENSE.txt": font_awesome / "LICENSE.txt",
        "bootstrap-datepicker/bootstrap-datepicker.js": datepicker / "bootstrap-datepicker.js",
        "bootstrap-datepicker/datepicker.css": datepicker / "datepicker.css",
        "bootstrap-table": _SHIPPED / _BOOTSTRAP_TABLE,
    }


# Every remote URL GX 1.x pages load, and the local file that replaces it (None: the tag goes).
_FILTER_CONTROL = "bootstrap-table/extensions/filter-control/bootstrap-table-filter-control.min"
REMOTE_ASSETS: dict[str, str | None] = {
    "https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css": "bootstrap/bootstrap.min.css",
    "https://stackpath.bootstrapcdn.com/bootstrap/4.3.1/js/bootstrap.min.js": "bootstrap/bootstrap.bundle.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/popper.js/1.12.9/umd/popper.min.js": None,  # in Bootstrap's bundle
    "https://code.jquery.com/jquery-3.7.1.min.js": "jquery/jquery.min.js",
    "https://cdnjs.cloudflare.com/ajax/libs/font-awesome/6.6.0/css/all.min.css": "font-awesome/css/all.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.css": "bootstrap-table/bootstrap-table.min.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/bootstrap-table.min.js": "bootstrap-table/bootstrap-table.min.js",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.min.css":
        f"{_FILTER_CONTROL}.css",
    "https://unpkg.com/bootstrap-table@1.19.0/dist/extensions/filter-control/bootstrap-table-filter-control.css":
        f"{_FILTER_CONTROL}.css",
    "https://unpkg.com/bootstrap-table@1.19.1/dist/extensions/filter-control/bootstrap-table-filter-control.min.js":
        f"{_FILTER_CONTROL}.js",
    # the index's run-time column filters with a datepicker: without it the table is not built
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/css/bootstrap-datepicker.min.css":
        "bootstrap-datepicker/datepicker.css",
    "https://cdnjs.cloudflare.com/ajax/libs/bootstrap-datepicker/1.9.0/js/bootstrap-datepicker.min.js":
        "bootstrap-datepicker/bootstrap-datepicker.js",
    "https://cdn.jsdelivr.net/npm/@forevolve/bootstrap-dark@1.1.0/dist/css/bootstrap-prefers-dark.css": None,
    "https://cdn.jsdelivr.net/npm/vega@5": None,
    "https://cdn.jsdelivr.net/npm/vega-lite@5": None,
    "https://cdn.jsdelivr.net/npm/vega-embed@6": None,
}  # fmt: skip

# <script src=...></script> and <link href=...>, with the URL in group "url".
_TAG = re.compile(
    r"""<script\b[^>]*?\bsrc=["'](?P<url>https?://[^"']+)["'][^>]*>\s*</script>\s*"""
    r"""|<link\b[^>]*?\bhref=["'](?P<link_url>https?://[^"']+)["'][^>]*>\s*""",
    re.IGNORECASE,
)
# Subresource integrity and CORS mode are for CDN copies; a file:// page cannot load a
# crossorigin script at all (its origin is opaque).
_CDN_ATTRIBUTES = re.compile(r"""\s+(?:integrity|crossorigin)=["'][^"']*["']""", re.IGNORECASE)
_BUCKET_URL = re.compile(re.escape(_GX_ASSETS_BUCKET) + r"""(?P<name>[\w.-]+)(?:\?[^"')\s]*)?""")


def copy_assets(site_dir: Path) -> Path:
    """Copy the vendored assets into `<site>/static/vendor/` (again only when one is missing)."""
    vendor = site_dir / SITE_VENDOR_DIR
    for relative, source in _asset_sources().items():
        target = vendor / relative
        if target.exists():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
    return vendor


def localize_page(html: str, page: Path, site_dir: Path) -> str:
    """`html` with each known CDN asset pointed at the site's own copy, relative to `page`."""
    to_vendor = Path(os.path.relpath(site_dir / SITE_VENDOR_DIR, page.parent)).as_posix()
    to_images = Path(os.path.relpath(site_dir / "static" / "images", page.parent)).as_posix()

    def tag(match: re.Match[str]) -> str:
        url = match.group("url") or match.group("link_url")
        if url not in REMOTE_ASSETS:
            log.warning("Data Docs page %s loads %s, which kbflow does not ship: it needs the network", page, url)
            return match.group()
        local = REMOTE_ASSETS[url]
        if local is None:
            return ""
        return _CDN_ATTRIBUTES.sub("", match.group()).replace(url, f"{to_vendor}/{local}")

    def bucket(match: re.Match[str]) -> str:
        # GX's logo and images: the site's own copy (GX puts its images in static/images/)
        name = match.group("name")
        return f"{to_images}/{name}" if (site_dir / "static" / "images" / name).is_file() else f"{to_images}/logo-long.png"

    return _BUCKET_URL.sub(bucket, _TAG.sub(tag, html))


def make_site_offline(site_dir: Path) -> int:
    """Ship the assets with a built Data Docs site and point its pages at them; returns pages changed."""
    if not site_dir.is_dir():
        return 0
    copy_assets(site_dir)
    changed = 0
    for page in site_dir.rglob("*.html"):
        if SITE_VENDOR_DIR.as_posix() in page.relative_to(site_dir).as_posix():
            continue
        html = page.read_text(encoding="utf-8")
        local = localize_page(html, page, site_dir)
        if local != html:
            page.write_text(local, encoding="utf-8")
            changed += 1
    return changed
