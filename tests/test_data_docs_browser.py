"""GX Data Docs, rendered by a real browser (headless Chromium), show the suite and its failure."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from kbflow.config import load_config
from kbflow.flows.ingest import ingest

from conftest import write

pytestmark = pytest.mark.usefixtures("prefect_harness")
ARTIFACTS = Path(__file__).parent / "artifacts"
# Flags for a closed network: without the background-networking ones Chromium keeps
# trying (and failing) to reach its update and sync services.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed here when missing (as CI runs as root)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and this user cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    installed = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True,
                               timeout=900)
    if installed.returncode != 0 or not shutil.which("chromium"):
        pytest.skip(f"could not install chromium: {installed.stderr.decode()[-500:]}")
    return shutil.which("chromium")


def render(chromium: str, page: Path, profile: Path, *extra: str) -> str:
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, page.as_uri()],
                            capture_output=True, timeout=120)
    return result.stdout.decode()


def visible_text(dom: str) -> str:
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def test_data_docs_show_the_suite_and_the_failed_expectation(small_corpus, hash_embedder, chromium, tmp_path):
    write(small_corpus.parent, {"docs/stub.txt": "tiny"})
    report = ingest(config_path=str(small_corpus))
    site = load_config(small_corpus).quality.results_dir / "gx" / "uncommitted" / "data_docs" / "local_site"

    # The index lists results with bootstrap-table from a CDN, which a closed network
    # does not serve; its data, with the link to this run's page, is in the page itself.
    index = render(chromium, site / "index.html", tmp_path / "profile", "--dump-dom")
    assert "Data Docs" in visible_text(index) and f"validations/documents/{report['run_id']}/" in index

    (page,) = (site / "validations" / "documents").glob(f"{report['run_id']}/*/*.html")
    dom = render(chromium, page, tmp_path / "profile", "--dump-dom")
    text = visible_text(dom)
    assert "Expectation Suite: documents" in text and "Status: Failed" in text
    assert "Unsuccessful Expectations 1" in text and "n_chars" in text
    assert "fa-times text-danger" in dom  # the failed expectation's row is marked

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "data-docs-documents.png"
    render(chromium, page, tmp_path / "profile", f"--screenshot={screenshot}", "--window-size=1280,1600")
    assert screenshot.is_file() and screenshot.stat().st_size > 10_000
