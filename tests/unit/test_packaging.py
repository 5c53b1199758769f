"""The build of the compiled hot path can type-check its sources wherever pip builds it.

mypyc type-checks the compiled modules and everything they import before it writes C; pip builds
in an environment that holds only pyproject's build-system.requires (and what they require). A
package the compiled code reads types from and that is missing there fails the build (or, with
ignore_missing_imports, compiles against Any): every one must be named there.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from strangler.native import COMPILED_MODULES

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_file(module: str) -> Path | None:
    stem = SRC.joinpath(*module.split("."))
    for candidate in (stem.with_suffix(".py"), stem / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _third_party_imports() -> set[str]:
    """Top-level names of the non-strangler modules that mypy reads when it compiles the hot path:
    the compiled modules' imports, and those of every strangler module they reach."""
    seen: set[str] = set()
    found: set[str] = set()
    pending = list(COMPILED_MODULES)
    while pending:
        module = pending.pop()
        if module in seen:
            continue
        seen.add(module)
        path = _module_file(module)
        if path is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                if name.split(".")[0] == "strangler":
                    parts = name.split(".")
                    pending += [".".join(parts[: i + 1]) for i in range(len(parts))]
                else:
                    found.add(name.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__"}


def _build_environment(pyproject: dict[str, object]) -> set[str]:
    """The distributions an isolated build installs: build-system.requires and what they
    require, as this environment's metadata says."""
    build_system = pyproject["build-system"]
    assert isinstance(build_system, dict)
    pending = [Requirement(text) for text in build_system["requires"]]
    names: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = _normalized(requirement.name)
        if name in names:
            continue
        names.add(name)
        try:
            requires = importlib.metadata.requires(requirement.name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        for text in requires:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                pending.append(needed)
    return names


def test_the_build_requirements_hold_every_package_the_compiled_code_reads_types_from() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    untyped = {
        module.split(".")[0]
        for override in pyproject["tool"]["mypy"]["overrides"]
        if override.get("ignore_missing_imports")
        for module in override["module"]
    }
    providers = importlib.metadata.packages_distributions()
    in_build = _build_environment(pyproject)
    missing = {}
    for name in sorted(_third_party_imports() - untyped):
        # mypy reads a stub package in place of the package when there is one.
        needed = (
            providers.get(f"{name}-stubs") or providers.get(name) or [f"(nothing provides {name})"]
        )
        if not {_normalized(dist) for dist in needed} & in_build:
            missing[name] = needed
    assert missing == {}


def test_the_compiled_code_reads_types_from_third_party_packages() -> None:
    # The check above means something only if the walk finds the packages it is about.
    assert {"pydantic", "orjson", "yaml"} <= _third_party_imports()
