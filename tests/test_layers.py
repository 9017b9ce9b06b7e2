"""One house: kbflow installs as one import name, and its floors (cli → flows → tasks → core) hold.

The layer contracts live in pyproject.toml ([tool.importlinter]). They are checked on the
built wheel, the tree a user gets: in the repository flows/, tasks/ and expectations/ sit
beside kbflow/ and are mapped into it only by the install.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(REPO)], check=True, capture_output=True, timeout=300)
    (built,) = out.glob("kbflow-*.whl")
    return built


@pytest.fixture
def installed_tree(wheel, tmp_path) -> Path:
    """The wheel unpacked: the package as site-packages holds it."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(tmp_path / "site")
    return tmp_path / "site"


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    # Run from the tree so that it, not the repository's kbflow/ folder, is what gets analysed.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache", str(REPO / "pyproject.toml")], cwd=tree,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                          timeout=300)


def test_the_wheel_installs_one_import_name(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        top_level = archive.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode()
    assert top_level.split() == ["kbflow"]
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"kbflow"}
    assert "kbflow/flows/ingest.py" in names and "kbflow/tasks/formats/parse.py" in names
    assert "kbflow/expectations/documents.json" in names  # bundled suites travel with the package


def test_only_the_kbflow_name_is_importable_from_outside_the_repository(tmp_path):
    def imports(module: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", f"import {module}"], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120)

    assert imports("kbflow.flows.ingest").returncode == 0
    assert imports("kbflow.tasks.quality.suites").returncode == 0
    for stray in ("flows", "tasks", "expectations"):
        result = imports(stray)
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, stray


def test_the_floors_hold(installed_tree):
    result = lint_imports(installed_tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def add_import(module: Path, imported: str, inside_a_function: bool = False) -> None:
    """A deliberate violation appended to an installed module (at module level, or hidden in a function)."""
    line = (f"\ndef _hidden():\n    import {imported}  # a deliberate violation\n" if inside_a_function
            else f"\nimport {imported}  # a deliberate violation\n")
    module.write_text(module.read_text() + line)


def test_a_core_module_that_imports_a_flow_breaks_the_contract(installed_tree):
    add_import(installed_tree / "kbflow" / "store" / "reads.py", "kbflow.flows.ingest")
    result = lint_imports(installed_tree)
    assert result.returncode != 0
    assert "kbflow.store.reads -> kbflow.flows.ingest" in result.stdout


def test_a_format_that_imports_a_source_task_breaks_the_domain_floors(installed_tree):
    add_import(installed_tree / "kbflow" / "tasks" / "formats" / "markdown.py", "kbflow.tasks.sources.read")
    result = lint_imports(installed_tree)
    assert result.returncode != 0
    assert "kbflow.tasks.formats is not allowed to import kbflow.tasks.sources" in result.stdout


def test_an_import_loop_hidden_in_a_function_breaks_the_contract(installed_tree):
    # kbflow.tasks.formats.parse imports the format modules; one importing parse back closes a loop
    add_import(installed_tree / "kbflow" / "tasks" / "formats" / "markdown.py", "kbflow.tasks.formats.parse",
               inside_a_function=True)
    result = lint_imports(installed_tree)
    assert result.returncode != 0
    assert "No cycles are allowed in kbflow.tasks.formats" in result.stdout


def test_a_new_module_must_be_placed_on_a_floor(installed_tree):
    (installed_tree / "kbflow" / "stray.py").write_text('"""Not on any floor."""\n')
    result = lint_imports(installed_tree)
    assert result.returncode != 0
    assert "kbflow.stray" in result.stdout + result.stderr
