"""Rules the test suite keeps about itself: a test that needs a server (PostgreSQL, the GCS emulator,
Chromium) may skip on a laptop that lacks it, but FAILS under CI=true, so CI cannot pass without it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import require_module, unavailable

TESTS = Path(__file__).parent
SERVER_MODULES = ("gcp_storage_emulator", "gcsfs", "pgserver", "psycopg", "websockets")


def test_a_missing_server_skips_here_but_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL"):
        unavailable("no PostgreSQL")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no PostgreSQL .CI is set"):
        unavailable("no PostgreSQL")
    assert require_module("json").dumps([]) == "[]"  # an installed module is simply imported
    with pytest.raises(pytest.fail.Exception, match="not_a_module_kbflow_has is not installed"):
        require_module("not_a_module_kbflow_has")


def test_no_test_skips_for_a_missing_server_by_itself():
    # Every such skip goes through `unavailable` (conftest), the one place that knows about CI=true.
    own = (TESTS / "conftest.py").read_text().split("def unavailable", 1)[1].split("\ndef ", 1)[0]
    assert "pytest.skip(reason)" in own  # the control: the one allowed skip is where this test looks
    offenders = []
    for path in sorted(set(TESTS.rglob("*.py")) - {Path(__file__)}):
        text = path.read_text().replace(own, "") if path.name == "conftest.py" else path.read_text()
        for number, line in enumerate(text.splitlines(), start=1):
            skipped = re.search(r"pytest\.skip\(|importorskip\(\s*[\"'](\w+)", line)
            if skipped and (skipped.group(1) is None or skipped.group(1) in SERVER_MODULES):
                offenders.append(f"{path.relative_to(TESTS)}:{number}: {line.strip()}")
    assert offenders == [], offenders
