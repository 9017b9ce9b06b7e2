"""ACLs through real ingest and dataset flows: from a source's rules or fields to search and datasets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kbflow.cli import app
from kbflow.config import load_config
from kbflow.flows.build_dataset import build_dataset
from kbflow.flows.ingest import ingest
from kbflow.search import search
from kbflow.store import RowFilter, Store
from kbflow.tasks.datasets.staleness import find_stale_rows

from conftest import write, write_config

pytestmark = pytest.mark.usefixtures("prefect_harness")

TOPICS = {
    "backup": ["snapshot", "archive", "restore"],
    "sync": ["client", "websocket", "conflict"],
    "search": ["index", "query", "ranking"],
    "billing": ["invoice", "refund", "receipt"],
    "plugins": ["extension", "hook", "sandbox"],
    "monitoring": ["metric", "alert", "dashboard"],
    "install": ["package", "service", "upgrade"],
    "export": ["markdown", "zip", "attachment"],
}
SALARY = "Salary bands for engineers are reviewed by the compensation committee every March."


def page(topic: str, words: list[str]) -> str:
    sections = [f"## Managing the {topic} {word} option\n\nThe {topic} {word} setting controls how the {word} "
                f"behaves for every team. Administrators change the {word} value in the {topic} file."
                for word in words]
    return f"# {topic.title()} guide\n\nThis guide explains {topic} for administrators.\n\n" + "\n\n".join(sections)


def handbook(root: Path, hr_principals: str = '["group:hr"]') -> Path:
    files = {f"docs/{topic}.md": page(topic, words) for topic, words in TOPICS.items()}
    files["docs/hr/salaries.md"] = f"# Salaries\n\n## Salary bands\n\n{SALARY}\n"
    files["docs/drafts/orphan.md"] = "# Orphan\n\n## Draft\n\nA draft page that no rule covers.\n"
    write(root, files)
    sources = f"""
    [[sources]]
    name = "docs"
    kind = "files"
    path = "docs/"
    exclude = ["drafts/**"]
    acl = ["public"]

    [[sources.acl_rules]]
    include = "hr/**"
    principals = {hr_principals}
    """
    settings = ('[access]\nmode = "enforce"\n'
                "[datasets]\nvalidation_share = 0.25\ntest_share = 0.25\nnegatives = 2\ngenerators = [\"heading\"]\n")
    return write_config(root, sources, settings)


def doc_ids(hits: list[dict]) -> list[str]:
    return [hit["uri"] for hit in hits]


def test_an_acl_only_change_relabels_in_one_publish_and_embeds_nothing(tmp_path, hash_embedder):
    config_path = handbook(tmp_path)
    first = ingest(config_path=str(config_path))
    assert first["status"] == "published" and first["documents"]["acl_changed"] == 0
    config = load_config(config_path)
    for mode in ("vector", "fts", "hybrid"):
        assert doc_ids(search(config, [SALARY], k=5, mode=mode, principals=["group:hr"])[0])[0] == "hr/salaries.md"
        assert "hr/salaries.md" not in doc_ids(search(config, [SALARY], k=20, mode=mode, principals=["group:sales"])[0])

    handbook(tmp_path, '["group:hr", "group:sales"]')  # the rule now lets sales in too; no page changed
    hash_embedder.encoded.clear()
    second = ingest(config_path=str(config_path))
    assert second["status"] == "published"
    assert second["documents"]["acl_changed"] == 1 and second["documents"]["changed"] == 0
    assert second["chunks"]["embedded"] == 0 and hash_embedder.encoded == []
    assert second["chunks"]["total"] == first["chunks"]["total"]
    store = Store(config.store)
    # one publish: the run tagged one version of each table
    assert second["run_id"] in store.tags("chunks") and second["run_id"] in store.tags("documents")
    assert doc_ids(search(config, [SALARY], k=5, mode="vector", principals=["group:sales"])[0])[0] == "hr/salaries.md"
    relabelled = store.chunks(["acl"], RowFilter(uris=["hr/salaries.md"])).column("acl").to_pylist()
    assert relabelled and all(acl == ["group:hr", "group:sales"] for acl in relabelled)
    third = ingest(config_path=str(config_path))
    assert third["status"] == "no_change" and third["documents"]["acl_changed"] == 0


def test_status_counts_acls_and_trace_shows_them(tmp_path, hash_embedder):
    config_path = handbook(tmp_path)
    ingest(config_path=str(config_path))
    runner = CliRunner()
    status = json.loads(runner.invoke(app, ["status", "--config", str(config_path), "--json"]).stdout)
    assert status["access"] == {"mode": "enforce", "public": len(TOPICS), "restricted": 1, "missing": 0}
    hit = search(load_config(config_path), [SALARY], k=1, mode="fts", principals=["group:hr"])[0][0]
    trace = json.loads(runner.invoke(app, ["trace", hit["chunk_id"], "--config", str(config_path), "--json"]).stdout)
    assert trace["chunk"]["acl"] == trace["document"]["acl"] == ["group:hr"]
    found = runner.invoke(app, ["search", SALARY, "--config", str(config_path), "--mode", "fts", "--json",
                                "--principal", "group:nobody", "--principal", "group:hr"])
    assert json.loads(found.stdout)[0]["uri"] == "hr/salaries.md"
    public = json.loads(runner.invoke(app, ["search", SALARY, "--config", str(config_path), "--mode", "fts",
                                            "--json"]).stdout)
    assert public and "hr/salaries.md" not in doc_ids(public)


def test_datasets_hold_only_visible_documents_and_check_flags_what_is_no_longer_visible(tmp_path, hash_embedder):
    config_path = handbook(tmp_path)
    ingest(config_path=str(config_path))
    out = tmp_path / "out"
    public = build_dataset(config_path=str(config_path), kind="embedding-pairs", out_dir=str(out / "public"))
    manifest = json.loads((Path(public["dir"]) / "manifest.json").read_text())
    assert manifest["principals"] == ["public"]
    assert "hr/" not in json.dumps(manifest["documents"]) and "Salary" not in _all_text(Path(public["dir"]))
    assert "`public`" in (Path(public["dir"]) / "README.md").read_text()
    hr = build_dataset(config_path=str(config_path), kind="embedding-pairs", out_dir=str(out / "hr"),
                       principals=["group:hr"])
    assert "Salary" in _all_text(Path(hr["dir"]))  # the positive control
    assert json.loads((Path(hr["dir"]) / "manifest.json").read_text())["principals"] == ["group:hr", "public"]

    # the backup guide becomes HR-only: the public dataset's rows from it are no longer visible
    with config_path.open("a") as handle:  # the sources table is the config's last: this rule is the docs source's
        handle.write('\n[[sources.acl_rules]]\ninclude = "backup.md"\nprincipals = ["group:hr"]\n')
    assert ingest(config_path=str(config_path))["documents"]["acl_changed"] == 1
    config = load_config(config_path)
    stale = find_stale_rows(Path(public["dir"]), config, Store(config.store))
    assert stale["not_visible"] > 0 and stale["deleted"] == stale["changed"] == 0
    assert all(example["reason"] == "not_visible" for example in stale["examples"])
    assert find_stale_rows(Path(hr["dir"]), config, Store(config.store))["stale"] == 0


def _all_text(dataset_dir: Path) -> str:
    import pyarrow.parquet as pq

    return " ".join(str(row) for path in sorted(dataset_dir.glob("data/*.parquet"))
                    for row in pq.read_table(path).to_pylist())


def test_record_acls_come_from_a_field_and_bad_values_are_quarantined_by_name(tmp_path, hash_embedder):
    rows = [
        {"id": "1", "text": "Backups run nightly at two.", "visible_to": "group:ops, user:ann"},
        {"id": "2", "text": "Refunds take five business days.", "visible_to": ["group:billing", "public"]},
        {"id": "3", "text": "The VPN key rotates weekly.", "visible_to": None},
        {"id": "4", "text": "Badges open the lab door.", "visible_to": [7]},
        {"id": "5", "text": "Lunch is at noon on Fridays.", "visible_to": " , "},
    ]
    write(tmp_path, {"records/notes.jsonl": "".join(json.dumps(row) + "\n" for row in rows)})
    config_path = write_config(tmp_path, """
    [[sources]]
    name = "notes"
    kind = "records"
    path = "records/notes.jsonl"
    id_field = "id"
    text_field = "text"
    acl_field = "visible_to"
    """, '[access]\nmode = "enforce"\n[quality]\nmax_quarantined_share = 0.7\n')
    report = ingest(config_path=str(config_path))
    assert report["status"] == "published" and report["documents"]["quarantined"] == 3
    config = load_config(config_path)
    reasons = {q["uri"].split("#")[1]: q["reason"] for q in Store(config.store).quarantine()}
    assert reasons == {"3": "missing_acl", "4": "malformed_acl", "5": "missing_acl"}
    store = Store(config.store)
    acls = dict(zip(*store.documents().select(["uri", "acl"]).to_pydict().values()))
    assert acls["notes.jsonl#1"] == ["group:ops", "user:ann"] and acls["notes.jsonl#2"] == ["group:billing", "public"]
    assert doc_ids(search(config, ["refunds"], k=5, mode="fts")[0]) == ["notes.jsonl#2"]  # public, no principal
    assert doc_ids(search(config, ["backups nightly"], k=5, mode="fts", principals=["user:ann"])[0]) == ["notes.jsonl#1"]
    assert search(config, ["backups nightly"], k=5, mode="fts", principals=["group:billing"])[0] == []
