from __future__ import annotations

import pytest

from kbflow.config import DEFAULT_MODEL, STARTER_CONFIG, ConfigError, load_config

from conftest import write_config


def test_paths_resolve_relative_to_the_config_file(tmp_path):
    (tmp_path / "docs").mkdir()
    config = load_config(write_config(tmp_path, '[[sources]]\nname = "docs"\nkind = "files"\npath = "docs/"\n'))
    assert config.store.uri == str(tmp_path / ".kbflow")
    assert config.sources[0].path == tmp_path / "docs"
    assert config.embedding.model == DEFAULT_MODEL
    assert "**/*.pdf" in config.sources[0].include  # all supported formats by default


def test_environment_overrides_nested_keys(tmp_path):
    path = write_config(tmp_path, "")
    config = load_config(path, environ={"KBFLOW_EMBEDDING__BATCH_SIZE": "8", "KBFLOW_STORE__URI": "elsewhere"})
    assert config.embedding.batch_size == 8 and config.store.uri == str(tmp_path / "elsewhere")


@pytest.mark.parametrize("variable, value, key", [
    ("KBFLOW_EMBEDING__MODEL", "x", "embeding: Extra inputs are not permitted"),  # a misspelt section
    ("KBFLOW_EMBEDDING__BATCH_SIZE", "eight", "embedding.batch_size: Input should be a valid integer"),
])
def test_a_bad_environment_override_names_the_variable_not_the_file(tmp_path, variable, value, key):
    """Issue 15 #9: the file was blamed for a key only the environment set."""
    path = write_config(tmp_path, "")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={variable: value})
    (line,) = [line for line in str(error.value).splitlines() if key in line]
    assert f"set by the environment variable {variable}, not the file" in line


def test_a_bad_key_in_the_file_is_not_blamed_on_the_environment(tmp_path):
    path = write_config(tmp_path, "[embeding]\nmodel = \"x\"\n")
    with pytest.raises(ConfigError, match="embeding: Extra inputs are not permitted") as error:
        load_config(path, environ={"KBFLOW_EMBEDDING__BATCH_SIZE": "8"})
    assert "environment variable" not in str(error.value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[embedding]\nbatch_sise = 8\n', "embedding.batch_sise: Extra inputs are not permitted (remove it"),
        ('[[sources]]\nname = "r"\nkind = "records"\npath = "."\n', "needs id_field and text_field"),
        ('[[sources]]\nname = "a"\nkind = "web"\npath = "."\n', "sources.0.kind"),
        ('[[sources]]\nname = "a"\nkind = "files"\npath = "."\n' * 2, "repeated: a"),
        ("[store\n", "not valid TOML"),
        ('[[sources]]\nname = "q"\nkind = "records"\npath = "."\nid_field = "id"\nindex = false\n',
         "needs question_field and answer_field"),
    ],
)
def test_bad_config_names_the_key(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(write_config(tmp_path, body))


def test_missing_file_and_unknown_source_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="kbflow init"):
        load_config(tmp_path / "nope.toml")
    config = load_config(write_config(tmp_path, ""))
    with pytest.raises(ConfigError, match="no source named 'x'"):
        config.select_sources("x")


def test_starter_config_is_valid(tmp_path):
    (tmp_path / "kbflow.toml").write_text(STARTER_CONFIG)
    config = load_config(tmp_path / "kbflow.toml")
    assert [s.name for s in config.sources] == ["docs"] and config.chunking.overlap_tokens == 32


def test_a_labeled_only_source_is_never_ingested(tmp_path):
    body = ('[[sources]]\nname = "docs"\nkind = "files"\npath = "."\n'
            '[[sources]]\nname = "qa"\nkind = "records"\npath = "."\nindex = false\n'
            'id_field = "id"\nquestion_field = "q"\nanswer_field = "a"\n')
    config = load_config(write_config(tmp_path, body))
    assert [s.name for s in config.select_sources(None)] == ["docs"]
    assert [s.name for s in config.labeled_sources()] == ["qa"] and config.source("qa").is_labeled
    with pytest.raises(ConfigError, match="labeled-only"):
        config.select_sources("qa")


SQL_SOURCE = '[[sources]]\nname = "tickets"\nkind = "sql"\nid_field = "id"\ntext_field = "body"\n'


def test_a_sql_source_has_no_path_and_hides_its_url(tmp_path):
    config = load_config(write_config(tmp_path, SQL_SOURCE + 'url = "postgresql+psycopg://kb:s3cret@db/kb"\n'
                                      'table = "tickets"\ncursor_field = "updated_at"\ntenant_field = "team"\n'))
    (source,) = config.sources
    assert source.path is None and source.include == [] and source.batch_rows == 1000
    assert "s3cret" not in repr(source) and "s3cret" not in str(source.model_dump())


@pytest.mark.parametrize(("url", "expected"), [
    ("sqlite:///data/tickets.db", "sqlite:///{root}/data/tickets.db"),  # relative: from the config's folder
    ("sqlite+pysqlite:///t.db?timeout=5", "sqlite+pysqlite:///{root}/t.db?timeout=5"),
    ("sqlite:////abs/t.db", "sqlite:////abs/t.db"),
    ("sqlite://", "sqlite://"),
    ("sqlite:///:memory:", "sqlite:///:memory:"),
    ("postgresql+psycopg://kb@db/kb", "postgresql+psycopg://kb@db/kb"),
])
def test_a_relative_sqlite_file_is_found_from_the_config_folder_not_the_working_directory(tmp_path, url, expected):
    config = load_config(write_config(tmp_path, SQL_SOURCE + f'url = "{url}"\ntable = "tickets"\n'))
    assert config.sources[0].url.get_secret_value() == expected.format(root=tmp_path.resolve())


@pytest.mark.parametrize("body, message", [
    ('table = "tickets"\n', "needs url or url_env"),
    ('url_env = "KB_DB_URL"\nurl = "sqlite://"\ntable = "t"\n', "needs url or url_env"),
    ('url_env = "KB_DB_URL"\n', "set table"),
    ('url_env = "KB_DB_URL"\ntable = "t"\nquery = "SELECT 1"\n', "set table"),
    ('url_env = "KB_DB_URL"\ntable = "t"\npath = "rows/"\n', "no path, include or exclude"),
    ('url_env = "KB_DB_URL"\ntable = "t"\ntenant = "a"\ntenant_field = "team"\n', "not both"),
])
def test_a_sql_source_needs_one_url_and_one_table_or_query(tmp_path, body, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, SQL_SOURCE + body))


@pytest.mark.parametrize("source, message", [
    ('[[sources]]\nname = "docs"\nkind = "files"\n', "a files source needs path"),
    ('[[sources]]\nname = "faq"\nkind = "records"\nid_field = "id"\ntext_field = "a"\n', "a records source needs path"),
    ('[[sources]]\nname = "docs"\nkind = "files"\npath = "docs/"\ncursor_field = "t"\n', "cursor_field: for sql sources"),
])
def test_files_and_records_sources_still_need_a_path_and_take_no_sql_keys(tmp_path, source, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, source))
