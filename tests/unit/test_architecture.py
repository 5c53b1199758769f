"""The boundaries ARCHITECTURE.md draws, checked on the sources: the control plane imports
neither the proxy nor the shadow runner, and the compiled hot path reads no file and no
environment variable (building a snapshot, which does, is runtime/snapshot_build.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from strangler.native import COMPILED_MODULES, source_path

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "strangler"
# Calls and attributes that read the environment or the file system.
IO_NAMES = {"environ", "getenv", "open", "read_text", "read_bytes", "stat", "fstat", "listdir"}


def _imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_the_control_plane_imports_neither_the_proxy_nor_the_shadow_runner() -> None:
    offenders = {
        f"{path.relative_to(SRC)} imports {module}"
        for path in (PACKAGE / "control").rglob("*.py")
        for module in _imported_modules(path)
        if module.startswith(("strangler.proxy", "strangler.shadow", "strangler.runtime"))
    }
    assert sorted(offenders) == []


def test_the_compiled_hot_path_reads_no_file_and_no_environment() -> None:
    offenders = []
    for module in COMPILED_MODULES:
        path = source_path(module, SRC)
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Name):
                name = node.id
            if name in IO_NAMES:
                offenders.append(f"{module}:{node.lineno} uses {name}")
    assert offenders == []
