"""GX Data Docs, rendered by a real browser (headless Chromium) with no network, list every run's
validations and show each page styled, with its status icons."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from websockets.sync.client import connect  # a prefect dependency; drives Chromium's DevTools protocol

from kbflow.config import load_config
from kbflow.flows.ingest import ingest

from conftest import unavailable, write

pytestmark = pytest.mark.usefixtures("prefect_harness")
ARTIFACTS = Path(__file__).parent / "artifacts"
# A closed network: no name resolves and every connection goes to a proxy that is not there, so
# a page that needs a CDN fails here whether or not this machine can reach one. Without the
# background-networking flags Chromium keeps trying (and failing) to reach its own services.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9"]
BOOTSTRAP_DANGER = "rgb(220, 53, 69)"  # .text-danger in Bootstrap 4


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed here when missing (as CI runs as root)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        unavailable("chromium is not installed and this user cannot apt-get install it")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600)
    installed = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True,
                               timeout=900)
    if installed.returncode != 0 or not shutil.which("chromium"):
        unavailable(f"could not install chromium: {installed.stderr.decode()[-500:]}")
    return shutil.which("chromium")


class Browser:
    """One headless Chromium page, driven over the DevTools protocol."""

    def __init__(self, chromium: str, profile: Path) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"  # Chromium writes the port it chose here
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert time.monotonic() < deadline, "Chromium did not open its DevTools port"
            time.sleep(0.1)
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        port = port_file.read_text().split()[0]
        targets = json.load(no_proxy.open(f"http://127.0.0.1:{port}/json/list", timeout=30))
        page = next(target for target in targets if target["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, proxy=None)
        self.calls, self.events = 0, []

    def call(self, method: str, **params):
        self.calls += 1
        self.socket.send(json.dumps({"id": self.calls, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.calls:
                assert "error" not in message, message
                return message["result"]
            self.events.append(message)

    def open(self, page: Path) -> list[str]:
        """Load `page`; returns the URLs it requested."""
        self.events.clear()
        self.call("Network.enable")
        self.call("Page.enable")
        self.call("Page.navigate", url=page.as_uri())
        deadline = time.monotonic() + 60
        while not any(event.get("method") == "Page.loadEventFired" for event in self.events):
            self.events.append(json.loads(self.socket.recv(timeout=max(0.1, deadline - time.monotonic()))))
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self, path: Path) -> None:
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=1600, deviceScaleFactor=1, mobile=False)
        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        self.socket.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@pytest.fixture
def browser(chromium, tmp_path):
    opened = Browser(chromium, tmp_path / "profile")
    yield opened
    opened.close()


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
    assert all(url.startswith(("file:", "data:")) for url in requested), requested
    links = browser.evaluate(
        "Array.from(document.querySelectorAll('table tbody tr[data-href]')).map(row => row.dataset.href)")
    listed = {(href.split("/")[1], href.split("/")[2]) for href in links if href.startswith("validations/")}
    assert expected <= listed, expected - listed

    (page,) = (site / "validations" / "documents").glob(f"{first['run_id']}/*/*.html")
    requested = browser.open(page)
    assert all(url.startswith(("file:", "data:")) for url in requested), requested
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
