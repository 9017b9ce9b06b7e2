"""The docs site builds with --strict, its reference lists everything the code has, and its examples run.

The reference pages are generated from the code (docs/hooks/reference.py); these tests walk the Typer
app and the pydantic models on their own and look for each command, option and key in the built HTML,
so a generator that skips something fails here. Config and Python examples live in docs/snippets/ and
are loaded or run below (the client and search snippets run against a live index and a real service
in tests/test_docs_snippets.py).
"""

from __future__ import annotations

import html
import json
import re
import shutil
import sys
import threading
import tomllib
import typing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

import pytest
import typer.main
from pydantic import BaseModel

from kbflow.cli import app
from kbflow.cli import common as cli_common
from kbflow.cli.contracts import EXIT_CODES, JSON_OUTPUT
from kbflow.config import KbflowConfig, QualityConfig, load_config

from docs_site import ROOT, build_site, site  # noqa: F401  - site: the built site, a fixture

DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"


def page_text(site: Path, page: str) -> str:
    return html.unescape((site / page).read_text(encoding="utf-8"))


def sections(page: str) -> dict[str, str]:
    """The built page's h2 sections by id: {id: html up to the next h2}."""
    parts = re.split(r'<h2 id="([^"]+)"', page)
    return dict(zip(parts[1::2], parts[2::2]))


# ------------------------------------------------------------------------------------------- the build
def test_the_site_builds_strict_and_every_nav_section_has_its_pages(site):
    index = page_text(site, "index.html")
    nav = index[index.index("md-nav--primary"):index.index("md-sidebar--secondary")]
    for section in ("Getting started", "Concepts", "Guides", "Reference", "Operations", "Project"):
        assert re.search(rf">\s*{section}\s*<", nav), section
    for page in ("reference/cli.html", "reference/config.html", "reference/json-output.html",
                 "reference/exit-codes.html", "reference/expectations.html", "reference/tables.html",
                 "reference/python-api.html", "operations/troubleshooting.html", "project/contributing.html"):
        assert (site / page).is_file(), page


def test_a_broken_link_fails_the_build(tmp_path):
    """--strict is what makes the build a check: a link to a page that does not exist must fail it
    (built from a copy of the docs, with the code linked in, so the checkout is never written to)."""
    copy = tmp_path / "repo"
    shutil.copytree(DOCS, copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "mkdocs.yml", copy / "mkdocs.yml")
    for name in ("kbflow", "flows", "tasks", "expectations", "bench", "CONTRIBUTING.md"):
        (copy / name).symlink_to(ROOT / name)
    assert build_site(tmp_path / "good", cwd=copy).returncode == 0  # positive control: the copy builds
    (copy / "docs" / "guides" / "broken.md").write_text("# Broken\n\nSee [nowhere](no-such-page.md).\n")
    built = build_site(tmp_path / "bad", cwd=copy)
    assert built.returncode != 0 and "no-such-page.md" in built.stderr


# ------------------------------------------------------------------------------------- the reference
def commands(command=None, path=("kbflow",)):
    """Every command of the app as (path, click command), walked here independently of the generator."""
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from commands(sub, (*path, name))


def test_every_cli_command_and_option_is_in_the_reference(site):
    by_id = sections(page_text(site, "reference/cli.html"))
    walked = list(commands())
    assert len(walked) > 20  # positive control: the walk sees the app
    for path, command in walked:
        anchor = "-".join(path)
        assert anchor in by_id, f"{' '.join(path)} is not in the command reference"
        for param in command.params:
            names = [param.name.upper()] if param.param_type_name == "argument" else param.opts + param.secondary_opts
            for name in names:
                assert f"<code>{name}</code>" in by_id[anchor], f"{' '.join(path)} {name} is not in the reference"


def config_keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted paths of every key of the config, models inside lists and unions included."""
    keys = set()
    for name, field in model.model_fields.items():
        if field.exclude:
            continue
        key = f"{prefix}.{name}" if prefix else name
        nested = [arg for arg in _flatten(field.annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        if nested:
            for member in nested:
                keys |= config_keys(member, key)
        else:
            keys.add(key)
    return keys


def _flatten(annotation) -> list:
    args = typing.get_args(annotation)
    return [annotation] if not args else [annotation, *[a for arg in args for a in _flatten(arg)]]


def test_every_config_key_is_in_the_reference_with_its_default(site):
    page = page_text(site, "reference/config.html")
    keys = config_keys(KbflowConfig)
    assert {"store.uri", "quality.max_quarantined_share", "datasets.llm.base_url", "sources.name"} <= keys
    missing = sorted(key for key in keys if f'id="{key}"' not in page)
    assert not missing, f"config keys missing from the reference: {missing}"
    row = re.search(r'id="quality.max_quarantined_share".*?</tr>', page, re.S).group(0)
    assert "0.25" in row  # the default comes from the model


def test_every_json_command_has_its_contract_and_every_contract_a_command(site):
    with_json = {" ".join(path[1:]) for path, command in commands()
                 if any("--json" in param.opts for param in command.params) and not command.hidden}
    assert {"ingest", "search", "dataset check"} <= with_json
    assert with_json <= set(JSON_OUTPUT), f"--json without a contract: {sorted(with_json - set(JSON_OUTPUT))}"
    real = {" ".join(path[1:]) for path, _ in commands()}
    assert set(JSON_OUTPUT) <= real, f"contracts of no command: {sorted(set(JSON_OUTPUT) - real)}"
    page = page_text(site, "reference/json-output.html")
    assert all(f"kbflow {command} --json" in page for command in JSON_OUTPUT)


def test_every_exit_code_is_documented(site):
    codes = {value for name, value in vars(cli_common).items() if name.startswith("EXIT_")}
    assert codes == set(EXIT_CODES) - {0}
    page = page_text(site, "reference/exit-codes.html")
    assert all(f"<td>{code}</td>" in page for code in EXIT_CODES)


def test_every_bundled_suite_and_expectation_is_in_the_reference(site):
    page = page_text(site, "reference/expectations.html")
    suites = [json.loads(f.read_text()) for f in resources.files("kbflow.expectations").iterdir()
              if f.name.endswith(".json")]
    assert len(suites) >= 8
    by_id = sections(page)
    for suite in suites:
        section = by_id["suite-" + suite["name"].replace("_", "-")]
        assert section.count("<tr>") - 1 == len(suite["expectations"]), suite["name"]


def test_the_python_api_page_is_rendered_from_docstrings(site):
    page = page_text(site, "reference/python-api.html")
    assert 'id="kbflow.search.search"' in page and 'id="kbflow.flows.ingest.ingest"' in page
    assert "config_path" in page  # a parameter of the flows' signatures


# --------------------------------------------------------------------------------------- the snippets
INCLUDE = re.compile(r'^--8<-- "([^"]+)"$', re.M)


def doc_examples(lang: str) -> list[tuple[str, str]]:
    """Every ```toml or ```python example of the docs pages as (where, text), snippet includes
    resolved to the file they include: what a reader sees."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        for body in re.findall(rf"```{lang}\n(.*?)```", page.read_text(encoding="utf-8"), re.S):
            included = INCLUDE.fullmatch(body.strip())
            where = included.group(1) if included else f"{page.relative_to(ROOT)} (inline)"
            found.append((where, (ROOT / included.group(1)).read_text(encoding="utf-8") if included else body))
    return found


def test_every_config_example_in_the_docs_loads(tmp_path):
    """A config example that no longer loads (a renamed key, a bad value) fails here, inline or included.
    The docs' own examples are files in docs/snippets/ (`--8<--`); other pages' inline ones count too."""
    examples = doc_examples("toml")
    assert len(examples) > 12 and all(text.strip() for _, text in examples)
    failing = []
    for where, text in examples:
        (tmp_path / "kbflow.toml").write_text(text, encoding="utf-8")
        try:
            load_config(tmp_path / "kbflow.toml")
        except Exception as error:  # collect them all: one run names every broken example
            failing.append(f"{where}: {error}")
    assert not failing, "\n".join(failing)


def test_every_python_example_in_the_docs_compiles():
    examples = doc_examples("python")
    assert len(examples) > 5
    for where, text in examples:
        compile(text, where, "exec")


def test_every_snippet_file_is_shown_somewhere():
    pages = "".join(page.read_text(encoding="utf-8") for page in DOCS.rglob("*.md"))
    unused = [s.name for s in SNIPPETS.iterdir() if f'"docs/snippets/{s.name}"' not in pages]
    assert not unused, f"snippets no page includes: {unused}"


def test_the_readme_search_example_is_the_tested_snippet():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    (example,) = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert example == (SNIPPETS / "search_api.py").read_text(encoding="utf-8")


COMMENTED_KEY = re.compile(r"^(\s*)# ?([a-z_]+ = \S.*?)(\s+#.*)?$")


@pytest.mark.parametrize("snippet", sorted(SNIPPETS.glob("*.toml")), ids=lambda p: p.name)
def test_each_config_snippet_loads_as_written_and_with_its_commented_keys(snippet, tmp_path):
    text = snippet.read_text(encoding="utf-8")
    (tmp_path / "kbflow.toml").write_text(text, encoding="utf-8")
    loaded = load_config(tmp_path / "kbflow.toml")
    for section, values in tomllib.loads(text).items():
        if isinstance(values, dict) and section != "sources":
            for key, value in values.items():
                if not isinstance(value, dict):
                    assert getattr(getattr(loaded, section), key) is not None, f"[{section}] {key}"
    # The keys a snippet shows commented out (`# max_tokens = 256`) must be real keys with valid values too.
    uncommented = "\n".join(COMMENTED_KEY.sub(r"\1\2", line) for line in text.splitlines())
    (tmp_path / "kbflow.toml").write_text(uncommented, encoding="utf-8")
    load_config(tmp_path / "kbflow.toml")


def test_the_quality_thresholds_snippet_shows_the_defaults(tmp_path):
    text = (SNIPPETS / "quality-thresholds.toml").read_text(encoding="utf-8")
    shown = tomllib.loads(text)["quality"]
    assert len(shown) > 20
    defaults = QualityConfig()
    assert {key: getattr(defaults, key) for key in shown} == shown


@pytest.mark.parametrize("snippet", sorted(SNIPPETS.glob("*.py")), ids=lambda p: p.name)
def test_each_python_snippet_compiles(snippet):
    compile(snippet.read_text(encoding="utf-8"), str(snippet), "exec")


def test_the_s3_event_lambda_snippet_posts_a_source_changed_event(monkeypatch):
    received: list[tuple[str, dict, list]] = []

    class Events(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Events)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{server.server_port}/api")
        monkeypatch.setenv("PREFECT_API_KEY", "pnu_test")
        monkeypatch.setenv("KBFLOW_SOURCE", "kb")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        namespace: dict = {}
        exec(compile((SNIPPETS / "s3_event_lambda.py").read_text(), "s3_event_lambda.py", "exec"), namespace)
        namespace["handler"]({"Records": []}, None)
    finally:
        server.shutdown()
    ((path, headers, events),) = received
    assert path == "/api/events" and headers["Authorization"] == "Bearer pnu_test"
    assert events[0]["event"] == "kbflow.source.changed"
    assert events[0]["resource"] == {"prefect.resource.id": "kbflow.source.kb", "prefect.resource.name": "kb"}


# ------------------------------------------------------------------------------------------ the nav
def test_a_guide_nobody_listed_is_added_to_the_guides_section(tmp_path):
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import reference
    finally:
        sys.path.remove(str(DOCS / "hooks"))
    (tmp_path / "guides").mkdir()
    (tmp_path / "guides" / "listed.md").write_text("# Listed\n")
    (tmp_path / "guides" / "service.md").write_text("# Running kbflow as a service\n\nText.\n")
    config = {"docs_dir": str(tmp_path), "nav": [{"Home": "index.md"}, {"Guides": [{"Listed": "guides/listed.md"}]}]}
    reference.on_config(config)
    assert config["nav"][1]["Guides"] == [{"Listed": "guides/listed.md"},
                                          {"Running kbflow as a service": "guides/service.md"}]


def described_keys(model: type[BaseModel], prefix: str = "") -> dict[str, str | None]:
    """{dotted key: its Field description} for every key, as config_keys walks them."""
    found = {}
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}" if prefix else name
        nested = [arg for arg in _flatten(field.annotation) if isinstance(arg, type) and issubclass(arg, BaseModel)]
        for member in nested:
            found |= described_keys(member, key)
        if not nested and not field.exclude:
            found[key] = field.description
    return found


def test_every_config_key_says_what_it_does():
    """The reference's description column comes from Field(description=...), every source kind's keys included."""
    keys = described_keys(KbflowConfig)
    assert keys["quality.max_quarantined_share"]  # positive control
    assert any(key.startswith("sources.") for key in keys)  # the source kinds' keys are walked too
    undescribed = sorted(key for key, description in keys.items() if not description)
    assert not undescribed, f"add Field(description=...) to: {undescribed}"


def test_the_config_reference_walks_a_discriminated_union_of_models():
    """Sources are becoming one model per kind (a union told apart by `kind`): each kind gets its section."""
    from typing import Annotated, Literal, Union

    from pydantic import Field

    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import reference
    finally:
        sys.path.remove(str(DOCS / "hooks"))

    class Files(BaseModel):
        kind: Literal["files"]
        name: str = Field(description="the source's name")
        path: str = Field(".", description="a folder")

    class Sql(BaseModel):
        kind: Literal["sql"]
        name: str = Field(description="the source's name")
        url_env: str = Field(description="the variable holding the URL")

    class Config(BaseModel):
        sources: list[Annotated[Union[Files, Sql], Field(discriminator="kind")]] = Field(default_factory=list)

    page = reference.config_page(Config)
    assert '## `[[sources]] kind = "files"`' in page and '## `[[sources]] kind = "sql"`' in page
    assert 'id="sources.path"' in page and 'id="sources.url_env"' in page
    assert 'id="sources.name"' in page and 'id="sources.name-2"' in page  # one id per row


def test_no_built_page_loads_a_script_style_or_font_from_elsewhere(site):
    """Offline by construction (the browser test checks what Chromium actually requests): no page's
    <script src>, <link href> (stylesheets, fonts, preloads) or <img src> leaves the site."""
    pages = list(site.rglob("*.html"))
    assert len(pages) > 30
    remote = re.compile(r'<(?:script|img|iframe)[^>]*\ssrc="(?:https?:)?//|<link[^>]*\shref="(?:https?:)?//')
    assert remote.search('<link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">')  # control
    outside = [str(page.relative_to(site)) for page in pages if remote.search(page.read_text(encoding="utf-8"))]
    assert not outside, outside
