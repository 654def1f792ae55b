"""The layering rules of docs/architecture.md, checked against the code's real imports.

The rules are import-linter contracts in pyproject.toml; ``lint-imports`` reads every import,
even inside a function body or an ``if TYPE_CHECKING`` block. The same file checks that the
host's side (``host_export`` and what it imports of ours) uses nothing newer than the host's
Python (HOST_PYTHON below and in the doc).
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PACKAGE = "prefect_conductor"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE
DOC = ROOT.parent / "docs" / "architecture.md"

HOST_PYTHON = (3, 10)
"""The oldest Python the host application embeds that host_export must run on (see the doc)."""

NEWER_NAMES: dict[tuple[str, str], str] = {
    ("datetime", "UTC"): "datetime.UTC (use timezone.utc)",
    ("typing", "Self"): "typing.Self",
    ("typing", "LiteralString"): "typing.LiteralString",
    ("typing", "Never"): "typing.Never",
    ("typing", "assert_never"): "typing.assert_never",
    ("typing", "reveal_type"): "typing.reveal_type",
    ("typing", "NotRequired"): "typing.NotRequired",
    ("typing", "Required"): "typing.Required",
    ("typing", "dataclass_transform"): "typing.dataclass_transform",
    ("enum", "StrEnum"): "enum.StrEnum",
    ("asyncio", "TaskGroup"): "asyncio.TaskGroup",
    ("asyncio", "timeout"): "asyncio.timeout",
}
"""Names a module can import only from Python 3.11 on (``from X import N`` or ``X.N``)."""
NEWER_MODULES = {"tomllib": "tomllib", "wsgiref.types": "wsgiref.types"}
NEWER_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup"}
NEWER_REGEX = re.compile(r"(?<!\\)[*+?}]\+|\(\?>")
"""Possessive quantifiers (``\\d*+``) and atomic groups (``(?>...)``): ``re`` has them from 3.11."""
REGEX_FUNCTIONS = {"compile", "match", "fullmatch", "search", "sub", "subn", "split", "findall"}


@dataclass(frozen=True)
class Module:
    """One module of the package: its dotted name, its file and its parsed tree."""

    name: str
    path: Path
    tree: ast.Module

    @property
    def layer(self) -> str:
        """The first part below the package: conductor_cloud, sandbox, tasks, cli, ..."""
        return self.name.split(".")[1] if "." in self.name else ""


def load_modules() -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(), filename=str(path)))
    return modules


MODULES = load_modules()


def imported_names(module: Module) -> Iterator[str]:
    """Every absolute module name this module imports, relative imports resolved."""
    package = module.name if module.path.name == "__init__.py" else module.name.rpartition(".")[0]
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:  # ``from pkg import module`` imports the module
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}"


def layer_of(name: str) -> str | None:
    """Our layer of an imported name (``prefect_conductor.tasks.submit`` -> ``tasks``)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    return parts[1] if len(parts) > 1 else ""


def contracts() -> list[dict[str, Any]]:
    """The import contracts of pyproject.toml, as ``lint-imports`` reads them."""
    config = tomllib.loads((ROOT.parent / "pyproject.toml").read_text())
    return list(config["tool"]["importlinter"]["contracts"])


def test_every_import_keeps_the_contracts() -> None:
    """``lint-imports`` over the real code: every contract kept (it prints the broken chains)."""
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT.parent / "pyproject.toml"), no_cache=True) == 0


def test_every_layer_is_bound_by_a_contract() -> None:
    """A new top-level module or package cannot slip past the contracts unnoticed."""
    top = {"", "cli"}  # the package itself, and the command line, which may import every layer
    layers = {module.layer for module in MODULES.values()} - top
    bound = {
        source.split(".")[1] for contract in contracts() for source in contract["source_modules"]
    }
    assert layers <= bound, f"no contract names {sorted(layers - bound)} as a source"


def test_the_doc_names_every_module_and_its_rules() -> None:
    """docs/architecture.md lists every module, and each contract in the same words."""
    text = DOC.read_text()
    for module in MODULES.values():
        if module.path.name == "__init__.py":
            continue
        relative = module.path.relative_to(ROOT).as_posix()
        assert f"`{relative}`" in text, f"docs/architecture.md does not name {relative}"
    for contract in contracts():
        assert contract["name"] in text, f"docs/architecture.md lacks: {contract['name']}"


def host_closure() -> set[str]:
    """host_export's modules and every module of ours they import, transitively."""
    todo = [name for name, module in MODULES.items() if module.layer == "host_export"]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        for depth in range(1, len(parts)):  # importing a module runs its packages' __init__
            todo.append(".".join(parts[:depth]))
        todo.extend(n for n in imported_names(MODULES[name]) if n in MODULES)
    return seen


def newer_than_host(module: Module) -> Iterator[str]:
    """Names and syntax in ``module`` that need a Python newer than HOST_PYTHON."""
    aliases: dict[str, str] = {}
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name] = alias.name
                if alias.name in NEWER_MODULES:
                    yield f"line {node.lineno}: {NEWER_MODULES[alias.name]}"
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in NEWER_MODULES:
                yield f"line {node.lineno}: {NEWER_MODULES[node.module]}"
            for alias in node.names:
                if (node.module, alias.name) in NEWER_NAMES:
                    yield f"line {node.lineno}: {NEWER_NAMES[node.module, alias.name]}"
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            origin = aliases.get(node.value.id, "")
            if (origin, node.attr) in NEWER_NAMES:
                yield f"line {node.lineno}: {NEWER_NAMES[origin, node.attr]}"
        elif isinstance(node, ast.Name) and node.id in NEWER_BUILTINS:
            yield f"line {node.lineno}: {node.id}"
        elif type(node).__name__ == "TryStar":
            yield f"line {node.lineno}: except*"
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and aliases.get(node.func.value.id) == "re"
            and node.func.attr in REGEX_FUNCTIONS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and NEWER_REGEX.search(node.args[0].value)
        ):
            yield f"line {node.lineno}: a possessive quantifier or atomic group in a regex"


def test_host_side_uses_nothing_newer_than_the_hosts_python() -> None:
    closure = host_closure()
    assert f"{PACKAGE}.host_export.trigger" in closure
    assert f"{PACKAGE}.conductor_cloud.api.retry" in closure  # the trigger's retry policy
    found = [
        f"{name}: {problem}"
        for name in sorted(closure)
        for problem in newer_than_host(MODULES[name])
    ]
    assert found == []


def test_the_newer_name_check_is_not_vacuous() -> None:
    source = (
        "import datetime as dt\nfrom typing import Self\nimport tomllib\nimport re\n"
        "re.compile(r'$F\\d*+')\nre.search('(?>a)', 'a')\nre.compile(r'\\*+')\n"
        "x = dt.UTC\ntry:\n    pass\nexcept* ValueError:\n    raise ExceptionGroup('', [])\n"
    )
    planted = Module("m", Path("m.py"), ast.parse(source))
    assert {problem.split(": ", 1)[1] for problem in newer_than_host(planted)} == {
        "typing.Self",
        "tomllib",
        "datetime.UTC (use timezone.utc)",
        "except*",
        "ExceptionGroup",
        "a possessive quantifier or atomic group in a regex",
    }
    assert len(list(newer_than_host(planted))) == 7  # both regexes; an escaped ``\*+`` is fine


def test_the_doc_states_the_hosts_python() -> None:
    assert f"Python {HOST_PYTHON[0]}.{HOST_PYTHON[1]}" in DOC.read_text()
