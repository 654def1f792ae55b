"""The layering rules of docs/architecture.md, checked against the code's real imports.

Every module under prefect_conductor/ is parsed with ``ast`` (nothing is imported), so a rule
broken anywhere, even inside a function body or an ``if TYPE_CHECKING`` block, fails here. The
same file checks that the host's side (``host_export`` and what it imports of ours) uses nothing
newer than the host's Python (HOST_PYTHON below and in the doc).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

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


def top_level(name: str) -> str:
    return name.split(".")[0]


# (layer, what it must not import, why) -- the same rules, in the same words, as the doc's table.
FORBIDDEN_LAYERS: dict[str, set[str]] = {
    "conductor_cloud": {"host_export", "sandbox", "tasks", "flows", "cli", "demo"},
    "sandbox": {"host_export", "tasks", "flows", "cli", "demo"},
    "host_export": {"sandbox", "tasks", "flows", "cli", "demo"},
    "tasks": {"flows", "cli", "demo", "sandbox", "host_export"},
    "flows": {"cli", "demo", "sandbox", "host_export"},
    "studio": {"cli", "demo", "sandbox", "host_export", "tasks", "flows"},
}
NO_PREFECT = {"conductor_cloud", "sandbox", "host_export"}
EVERYONE_BUT = {"cli": {"cli"}, "demo": {"demo", "cli"}}


def violations() -> list[str]:
    found = []
    for module in MODULES.values():
        for name in set(imported_names(module)):
            layer = layer_of(name)
            if top_level(name) == "prefect" and module.layer in NO_PREFECT:
                found.append(f"{module.name} imports {name} (no Prefect in {module.layer})")
            if layer is None:
                continue
            if layer in FORBIDDEN_LAYERS.get(module.layer, set()):
                found.append(f"{module.name} imports {name}")
            elif layer in EVERYONE_BUT and module.layer not in EVERYONE_BUT[layer]:
                found.append(f"{module.name} imports {name} (nothing imports {layer})")
    return sorted(found)


def test_every_layer_imports_only_what_the_architecture_allows() -> None:
    assert violations() == []


def test_the_sandbox_imports_only_the_domain_of_ours() -> None:
    for module in MODULES.values():
        if module.layer == "sandbox":
            ours = {layer_of(name) for name in imported_names(module)} - {None}
            assert ours <= {"conductor_cloud", "sandbox", ""}, module.name


def test_the_checker_sees_a_forbidden_import(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rules are not vacuous: planting a bad import in a copy of a module is reported."""
    domain = MODULES[f"{PACKAGE}.conductor_cloud.frames"]
    source = "import prefect\nfrom ..tasks import submit\nfrom prefect_conductor import cli\n"
    planted = Module(domain.name, domain.path, ast.parse(source))
    monkeypatch.setitem(MODULES, domain.name, planted)
    assert violations() == [
        f"{domain.name} imports prefect (no Prefect in conductor_cloud)",
        f"{domain.name} imports prefect_conductor.cli.main",
        f"{domain.name} imports prefect_conductor.tasks",
        f"{domain.name} imports prefect_conductor.tasks.submit",
    ]


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
    assert f"{PACKAGE}.conductor_cloud.retry" in closure  # the trigger's retry policy
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


def test_the_doc_states_the_rules_and_the_hosts_python() -> None:
    text = DOC.read_text()
    assert f"Python {HOST_PYTHON[0]}.{HOST_PYTHON[1]}" in text
    for layer, forbidden in FORBIDDEN_LAYERS.items():
        row = next((line for line in text.splitlines() if line.startswith(f"| `{layer}/`")), "")
        assert row, f"the doc's import table has no row for {layer}/"
        for name in forbidden:
            assert f"`{name}`" in row, f"the doc's row for {layer}/ does not forbid {name}"
        if layer in NO_PREFECT:
            assert "`prefect`" in row, f"the doc's row for {layer}/ does not forbid prefect"
