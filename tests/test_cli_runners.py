"""`kbflow ingest --runner`: a bad value is a usage error, caught before Prefect or a cluster starts."""

from __future__ import annotations

from typer.testing import CliRunner

from kbflow.cli import app


def test_an_unknown_runner_is_a_usage_error(small_corpus):
    result = CliRunner().invoke(app, ["ingest", "--config", str(small_corpus), "--runner", "spark", "--json"])
    assert result.exit_code == 2
    assert "dask[=ADDRESS]" in result.output
    assert not (small_corpus.parent / ".kbflow").exists()  # nothing ran
