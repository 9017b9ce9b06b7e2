"""KBFLOW_* environment variables: config overrides (read by pydantic-settings) and the process variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from kbflow.config import PROCESS_VARIABLES, ConfigError, KbflowConfig, cache_dir, load_config

from conftest import write_config

ROOT = Path(__file__).parents[2]
# Named in the docs as mistakes the config refuses, or as the pattern rather than a variable.
DOCUMENTED_MISTAKES = {"KBFLOW_EMBEDING__MODEL"}
DOCUMENTED_PATTERNS = {"KBFLOW_SECTION__KEY"}


def documented_variables() -> set[str]:
    """Every KBFLOW_ name README.md and docs/ mention."""
    texts = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    names = {name.rstrip("_") for path in texts for name in re.findall(r"KBFLOW_[A-Z_]+", path.read_text("utf-8"))}
    return names - {"KBFLOW"} - DOCUMENTED_PATTERNS


def config_keys(name: str) -> tuple[str, ...] | None:
    """The config keys a KBFLOW_SECTION__KEY name reaches, or None when it reaches none."""
    keys = tuple(name.removeprefix("KBFLOW_").lower().split("__"))
    table: object = KbflowConfig().model_dump()
    for depth, key in enumerate(keys):
        if not isinstance(table, dict):
            return None
        if key not in table:  # only a table of free keys takes a key it does not hold
            return keys if keys[:depth] == ("store", "storage_options") and depth == len(keys) - 1 else None
        table = table[key]
    return keys


def a_valid_value(keys: tuple[str, ...]) -> str:
    """The key's default as a variable's text (any text for a free key)."""
    value: object = KbflowConfig().model_dump()
    for key in keys:
        value = value.get(key, "x") if isinstance(value, dict) else "x"
    return str(value)


def test_the_docs_name_their_variables_and_the_mistake_is_among_them():
    # Positive control for the test below: the scan finds names of both kinds.
    names = documented_variables()
    assert {"KBFLOW_DEBUG", "KBFLOW_CACHE_DIR", "KBFLOW_HOME", "KBFLOW_EMBEDDING__MODEL"} <= names
    assert DOCUMENTED_MISTAKES <= names | DOCUMENTED_MISTAKES


@pytest.mark.parametrize("name", sorted(documented_variables() - DOCUMENTED_MISTAKES))
def test_every_variable_the_docs_name_is_accepted(tmp_path, name):
    """Issue 26 #7: KBFLOW_DEBUG, KBFLOW_HOME and KBFLOW_CACHE_DIR failed every command
    (`Extra inputs are not permitted`)."""
    path = write_config(tmp_path, "")
    if name in PROCESS_VARIABLES:
        load_config(path, environ={name: "1"})
        return
    keys = config_keys(name)
    assert keys is not None, f"{name} is neither a config key nor one of config.PROCESS_VARIABLES"
    load_config(path, environ={name: a_valid_value(keys)})


def test_every_process_variable_is_documented():
    assert set(PROCESS_VARIABLES) <= documented_variables()


@pytest.mark.parametrize("name", sorted(DOCUMENTED_MISTAKES))
def test_the_mistake_the_docs_show_is_refused_naming_the_variable(tmp_path, name):
    with pytest.raises(ConfigError, match=f"set by the environment variable {name}, not the file"):
        load_config(write_config(tmp_path, ""), environ={name: "x"})


def test_precedence_is_file_then_environment_and_tables_merge_key_by_key(tmp_path):
    path = write_config(tmp_path, '[embedding]\nbatch_size = 16\ndevice = "cpu"\n[quality]\nallowed_languages = ["de"]\n')
    config = load_config(path, environ={"KBFLOW_EMBEDDING__BATCH_SIZE": "8",
                                        "kbflow_quality__allowed_languages": '["en", "fr"]',  # any case; JSON list
                                        "KBFLOW_STORE__STORAGE_OPTIONS__AWS_REGION": "eu-west-1"})
    assert (config.embedding.batch_size, config.embedding.device) == (8, "cpu")  # the file's other key stays
    assert config.quality.allowed_languages == ["en", "fr"]
    assert config.store.storage_options == {"aws_region": "eu-west-1"}
    assert load_config(path, environ={}).embedding.batch_size == 16


def test_a_list_that_is_not_json_names_the_variable_and_the_fix(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write_config(tmp_path, ""), environ={"KBFLOW_QUALITY__ALLOWED_LANGUAGES": "en"})
    assert "KBFLOW_QUALITY__ALLOWED_LANGUAGES" in str(error.value) and "written as JSON" in str(error.value)


def test_a_misspelt_top_level_variable_is_refused_not_ignored(tmp_path):
    with pytest.raises(ConfigError, match="set by the environment variable KBFLOW_DEBGU"):
        load_config(write_config(tmp_path, ""), environ={"KBFLOW_DEBGU": "1"})


def test_cache_dir_follows_kbflow_cache_dir_then_xdg(tmp_path):
    assert cache_dir({"KBFLOW_CACHE_DIR": str(tmp_path / "k"), "XDG_CACHE_HOME": "/x"}) == tmp_path / "k"
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "kbflow"
    assert cache_dir({}) == Path.home() / ".cache" / "kbflow"
