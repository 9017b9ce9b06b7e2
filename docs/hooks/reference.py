"""MkDocs hook: the Reference pages, generated from the code at every build, never hand-copied.

- reference/cli.md: every command, argument and option of the Typer app (kbflow.cli:app);
- reference/config.md: every key of kbflow.toml with its type, default and description, walked from
  KbflowConfig and whatever models it references (nested sections, lists of models, unions of models
  told apart by a discriminator such as a source's `kind`);
- reference/json-output.md and reference/exit-codes.md: kbflow.cli.contracts;
- reference/expectations.md: the bundled GX suites (expectations/*.json), expectation by expectation;
- reference/tables.md: the LanceDB tables' Arrow schemas (kbflow.schemas).

It also keeps the navigation open to pages other people add: every docs/guides/*.md that mkdocs.yml's
nav does not list yet is appended to the Guides section (title: the page's first heading).
"""

from __future__ import annotations

import inspect
import json
import re
import shutil
import types
import typing
from importlib import resources
from pathlib import Path
from typing import Any, Iterator

import typer.main
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

GENERATED = ("reference/cli.md", "reference/config.md", "reference/json-output.md", "reference/exit-codes.md",
             "reference/expectations.md", "reference/tables.md")


# ---------------------------------------------------------------------------------------------- types
def type_name(annotation: Any) -> str:
    """A Python annotation as a reader of kbflow.toml or a shell thinks of it."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is typing.Literal:
        return " \\| ".join(json.dumps(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        names = [type_name(arg) for arg in args if arg is not type(None)]
        return " \\| ".join(dict.fromkeys(names)) + (" \\| none" if type(None) in args else "")
    if origin in (list, tuple, set, frozenset):
        return f"list of {type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {type_name(args[1])}" if args else "table"
    if isinstance(annotation, type):
        if issubclass(annotation, BaseModel):
            return "table"
        return {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path",
                SecretStr: "string (secret)"}.get(annotation, annotation.__name__)
    return str(annotation).replace("typing.", "")


def toml_value(value: Any) -> str:
    if value is None or value is PydanticUndefined:
        return "—"
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, Path):
        value = str(value)
    return json.dumps(value, default=str)


# --------------------------------------------------------------------------------------------- config
def models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation holds: itself, a list's items, a union's members."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in models_in(arg)]


def discriminator_value(model: type[BaseModel], field_name: str | None) -> str | None:
    field = model.model_fields.get(field_name or "")
    if field is None or typing.get_origin(field.annotation) is not typing.Literal:
        return None
    return " / ".join(json.dumps(value) for value in typing.get_args(field.annotation))


def discriminator_of(field: FieldInfo, annotation: Any) -> str | None:
    if field.discriminator:
        return field.discriminator if isinstance(field.discriminator, str) else None
    for arg in typing.get_args(annotation):
        found = next((m.discriminator for m in getattr(arg, "__metadata__", ()) if getattr(m, "discriminator", None)),
                     None)
        found = found or discriminator_of(FieldInfo(), arg)
        if isinstance(found, str):
            return found
    return None


def config_sections(model: type[BaseModel], prefix: str = "", heading: str = "top level"
                    ) -> Iterator[tuple[str, str, type[BaseModel]]]:
    """(dotted key prefix, heading, model) for the model and every model below it, depth first."""
    yield prefix, heading, model
    for name, field in model.model_fields.items():
        members = models_in(field.annotation)
        if field.exclude or not members:
            continue
        key = f"{prefix}.{name}" if prefix else name
        is_list = typing.get_origin(field.annotation) is list
        discriminator = discriminator_of(field, field.annotation) if len(members) > 1 else None
        for member in members:
            tag = discriminator_value(member, discriminator) if discriminator else None
            member_heading = (f"[[{key}]]" if is_list else f"[{key}]") + (f" {discriminator} = {tag}" if tag else "")
            yield from config_sections(member, key, member_heading)


def config_page(root_model: type[BaseModel] | None = None) -> str:
    """The configuration reference of `root_model` (default: KbflowConfig). Each key's first row carries
    the HTML id of its dotted path (`id="store.uri"`); a key shared by several kinds of a union (a
    source's `name`) gets `-2`, `-3` ... on its later rows."""
    from kbflow.config import KbflowConfig

    used: dict[str, int] = {}

    lines = ["# Configuration reference", "",
             "Every key of `kbflow.toml`, generated from the pydantic models in `kbflow/config.py` at each "
             "build. Any key can also be set from the environment: `KBFLOW_` + the key path in capitals with "
             "`__` between levels (`KBFLOW_EMBEDDING__MODEL=/models/tuned`). Paths are relative to the config "
             "file's folder. `—` means unset (no default).", ""]
    for prefix, heading, model in config_sections(root_model or KbflowConfig):
        scalar = [(name, field) for name, field in model.model_fields.items()
                  if not field.exclude and not models_in(field.annotation)]
        if not scalar:
            continue
        anchor = "config-" + re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")
        lines += [f"## `{heading}` {{#{anchor}}}", ""]
        doc = inspect.getdoc(model)
        if doc and model.__doc__ is not None and "__doc__" in vars(model):
            lines += [doc.split("\n\n")[0].replace("\n", " "), ""]
        lines += ["| key | type | default | description |", "|---|---|---|---|"]
        for name, field in scalar:
            key = f"{prefix}.{name}" if prefix else name
            default = field.default_factory() if field.default_factory else field.default
            required = field.is_required()
            description = (field.description or "").replace("|", "\\|").replace("\n", " ")
            used[key] = used.get(key, 0) + 1
            anchor = key if used[key] == 1 else f"{key}-{used[key]}"
            lines.append(f"| <code id=\"{anchor}\">{key}</code> | {type_name(field.annotation)} | "
                         f"{'required' if required else toml_value(default)} | {description} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ cli
def cli_commands(command: Any = None, path: tuple[str, ...] = ("kbflow",)) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every command of the app, groups included, as (path, command), in alphabetical order."""
    if command is None:
        from kbflow.cli import app

        command = typer.main.get_command(app)
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from cli_commands(sub, (*path, name))


def _param_type(command: Any, param: Any) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    callback = inspect.unwrap(command.callback) if command.callback else None
    try:
        hints = typing.get_type_hints(callback, include_extras=True) if callback else {}
    except Exception:  # an annotation that cannot be resolved here: show no type rather than fail the build
        hints = {}
    return type_name(hints[param.name]) if param.name in hints else ""


def cli_page() -> str:
    from kbflow.cli.contracts import JSON_OUTPUT

    lines = ["# Command line reference", "",
             "Every command and option of `kbflow`, generated from its Typer app (`kbflow.cli:app`) at each "
             "build: what `kbflow COMMAND --help` shows. Two options work with every command and are read "
             "before it runs: `--verbose` (Prefect's own log lines on the terminal; the command runs in this "
             "process, not the kbflow service) and `--progress` (progress bars on stderr even with `--json`). "
             "What `--json` prints: [JSON output](json-output.md); exit codes: [Exit codes](exit-codes.md).", ""]
    for path, command in cli_commands():
        name = " ".join(path)
        anchor = "-".join(path)
        hidden = " (alias)" if command.hidden else ""
        lines += [f"## `{name}`{hidden} {{#{anchor}}}", ""]
        if command.help:
            lines += [inspect.cleandoc(command.help).replace("\b\n", ""), ""]
        if hasattr(command, "commands"):
            subs = [f"[`{name} {sub}`](#{anchor}-{sub})" for sub in sorted(command.commands)]
            lines += ["Commands: " + ", ".join(subs), ""]
            continue
        usage = " ".join([name] + [p.name.upper() for p in command.params
                                    if p.param_type_name == "argument"] + ["[OPTIONS]"])
        lines += [f"```\n{usage}\n```", ""]
        params = [p for p in command.params if not getattr(p, "hidden", False)]
        if params:
            lines += ["| argument / option | type | default | help |", "|---|---|---|---|"]
            for param in params:
                names = ", ".join(f"<code>{opt}</code>" for opt in [*param.opts, *param.secondary_opts])
                if param.param_type_name == "argument":
                    names = f"<code>{param.name.upper()}</code>"
                default = "required" if param.required else (
                    "—" if param.default is None else "off" if param.default is False else f"`{param.default}`")
                help_text = (getattr(param, "help", None) or "").replace("|", "\\|")
                lines.append(f"| {names} | {_param_type(command, param)} | {default} | {help_text} |")
            lines.append("")
        key = " ".join(path[1:])
        if key in JSON_OUTPUT:
            lines += [f"With `--json`: see [JSON output](json-output.md#{anchor}).", ""]
    return "\n".join(lines)


def json_output_page() -> str:
    from kbflow.cli.contracts import JSON_OUTPUT

    lines = ["# JSON output", "",
             "With `--json` a command prints only JSON on stdout; logs and progress go to stderr. Keys are "
             "only ever added, never renamed. Generated from `kbflow/cli/contracts.py`.", ""]
    for command, shape in sorted(JSON_OUTPUT.items()):
        anchor = "kbflow-" + command.replace(" ", "-")
        lines += [f"## `kbflow {command} --json` {{#{anchor}}}", "", shape, ""]
    return "\n".join(lines)


def exit_codes_page() -> str:
    from kbflow.cli.contracts import EXIT_CODES

    lines = ["# Exit codes", "", "Generated from `kbflow/cli/contracts.py` (the codes are the constants of "
             "`kbflow/cli/common.py`).", "", "| code | meaning |", "|---|---|"]
    lines += [f"| {code} | {meaning} |" for code, meaning in sorted(EXIT_CODES.items())]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------- suites and tables
def _kwargs_text(kwargs: dict[str, Any]) -> str:
    def show(value: Any) -> str:
        if isinstance(value, dict) and "$PARAMETER" in value:
            return f"`[quality] {value['$PARAMETER']}`"
        return f"`{json.dumps(value)}`"

    return "; ".join(f"{key}: {show(value)}" for key, value in kwargs.items() if key != "column")


def expectations_page() -> str:
    lines = ["# Expectation suites", "",
             "The Great Expectations suites kbflow ships (`expectations/*.json`), generated from the files at "
             "each build. `on_failure` says what a failure does: `quarantine` sets the failing rows aside and the "
             "run goes on, `block` publishes nothing (exit 3). A parameter `[quality] key` is read from "
             "your config. Copy a file into `[quality] expectations_dir` to change a suite.", ""]
    folder = resources.files("kbflow.expectations")
    for suite_file in sorted((f for f in folder.iterdir() if f.name.endswith(".json")), key=lambda f: f.name):
        suite = json.loads(suite_file.read_text(encoding="utf-8"))
        lines += [f"## `{suite['name']}` {{#suite-{suite['name'].replace('_', '-')}}}", ""]
        if suite.get("meta", {}).get("description"):
            lines += [suite["meta"]["description"], ""]
        lines += ["| expectation | column | parameters | on failure | why |", "|---|---|---|---|---|"]
        for expectation in suite["expectations"]:
            kwargs, meta = expectation.get("kwargs", {}), expectation.get("meta", {})
            columns = kwargs.get("column") or ", ".join(kwargs.get("column_list", []))
            why = str(meta.get("why", "")).replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{expectation['type']}` | `{columns}` | {_kwargs_text(kwargs)} | "
                         f"{meta.get('on_failure', '')} | {why} |")
        lines.append("")
    return "\n".join(lines)


def tables_page() -> str:
    import pyarrow as pa

    from kbflow import schemas

    lines = ["# Store tables", "",
             "The LanceDB tables of a store and their columns, generated from the Arrow schemas in "
             "`kbflow/schemas.py`. Names and columns are part of the contract. The `chunks` table's "
             "`vector` column has the model's dimension (384 for the packaged all-MiniLM-L6-v2).", ""]
    tables = {"chunks": schemas.chunks_schema(384)}
    tables.update({name.lower(): value for name, value in vars(schemas).items()
                   if isinstance(value, pa.Schema) and name in ("DOCUMENTS", "RUNS", "QUARANTINE", "LINE_HASHES",
                                                               "SOURCE_CURSORS")})
    for table, schema in tables.items():
        lines += [f"## `{table}`", "", "| column | Arrow type |", "|---|---|"]
        lines += [f"| `{field.name}` | `{field.type}` |" for field in schema]
        lines.append("")
    return "\n".join(lines)


PAGES = {"reference/cli.md": cli_page, "reference/config.md": config_page,
         "reference/json-output.md": json_output_page, "reference/exit-codes.md": exit_codes_page,
         "reference/expectations.md": expectations_page, "reference/tables.md": tables_page}


# ------------------------------------------------------------------------------------------ the hooks
def _title(page: Path) -> str:
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return page.stem.replace("-", " ").capitalize()


def _listed(nav: Any) -> set[str]:
    if isinstance(nav, str):
        return {nav}
    if isinstance(nav, list):
        return set().union(*(_listed(item) for item in nav)) if nav else set()
    if isinstance(nav, dict):
        return set().union(*(_listed(value) for value in nav.values()))
    return set()


API_SOURCES = Path("build/docs-api")  # mkdocstrings' `paths` in mkdocs.yml


def mirror_installed_layout(root: Path) -> None:
    """kbflow as installed, for mkdocstrings (griffe reads files, it does not follow pyproject's
    package-dir): build/docs-api/kbflow/ links each file of kbflow/ and the folders flows/, tasks/
    and expectations/ under the names they install as (kbflow.flows, kbflow.tasks, ...)."""
    target = root / API_SOURCES / "kbflow"
    if target.is_symlink():
        target.unlink()
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for entry in (root / "kbflow").iterdir():
        if entry.name != "__pycache__":
            (target / entry.name).symlink_to(entry.resolve())
    for folder in ("flows", "tasks", "expectations"):
        (target / folder).symlink_to((root / folder).resolve())


# Laid out when mkdocs loads this hook, before any plugin (mkdocstrings) reads its search paths.
mirror_installed_layout(Path(__file__).resolve().parents[2])


def on_config(config, **kwargs):
    """Append the guides nobody has listed in nav yet, so a new docs/guides/*.md is never orphaned."""
    guides = next((item for item in config["nav"] if isinstance(item, dict) and "Guides" in item), None)
    if guides is None:
        return config
    listed = _listed(config["nav"])
    folder = Path(config["docs_dir"]) / "guides"
    for page in sorted(folder.glob("*.md")):
        uri = f"guides/{page.name}"
        if uri not in listed:
            guides["Guides"].append({_title(page): uri})
    return config


def on_files(files, config, **kwargs):
    from mkdocs.structure.files import File

    for uri, render in PAGES.items():
        files.append(File.generated(config, uri, content=render()))
    return files
