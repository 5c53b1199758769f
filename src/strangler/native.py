"""The gateway's hot path, compiled: which modules mypyc turns into C extensions, and whether the
build in use is current.

Building the package (`pip install strangler`, `pip install .`; setup.py) compiles the modules
below with mypyc, the compiler that ships with mypy, into C extensions installed beside their
sources; an extension wins the import over its `.py`. In a source checkout `make native` (run by
`make setup`, so by `make test`, `make demo` and `make bench`) builds them in place through the
same setup.py. The sources stay the truth: without a build they run unchanged as pure Python,
and every test runs against whichever is in use. Compiled modules of one group call each other
directly, not through their module attributes, so in a checkout a single edited source makes the
whole build stale; the package then imports every compiled module from its source
(`prefer_sources`), so what runs is always what the sources say, slower until `make native` runs
again. An installed package is never stale: its extensions and sources come from one build,
whatever dates the installer gave the files.

These modules run for every request: parsing, forwarding, routing and the shadow copy, and the
objects they read; and the diff engine, for every shadow answer that is not byte-identical to
its primary. mypyc needs them fully typed (they are: mypy --strict) and turns their
classes into native classes, which reject attributes that their class does not declare.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Final

COMPILED_MODULES: Final = (
    "strangler.proxy.server",
    "strangler.proxy.exchange",
    "strangler.proxy.upstream_pool",
    # Subclasses upstream_pool's native classes (a balanced backend's servers and connections).
    "strangler.proxy.balance",
    "strangler.proxy.headers",
    "strangler.proxy.wire_guard",
    "strangler.proxy.request_target",
    "strangler.proxy.request_head",
    "strangler.proxy.steering",
    "strangler.routing.matcher",
    "strangler.routing.table",
    "strangler.shadow.mirror",
    "strangler.shadow.channel",
    "strangler.shadow.picker",
    # What the modules above read on every request: compiled code reads a native object's
    # attributes directly, and a Python object's through a dictionary lookup.
    "strangler.routing.model",
    "strangler.runtime.snapshot",
    "strangler.shadow.results",
    "strangler.observe.counters",
    # Every answer is counted per route, with its latency, for the admin API's series.
    "strangler.observe.traffic",
    "strangler.rollout.histogram",
    "strangler.observe.metrics",
    "strangler.observe.access_line",
    # Spans to protobuf wire format: on the worker's core, in the exporter's thread.
    "strangler.observe.otlp_wire",
    # The diff engine: the worker compares every pair of answers that are not byte-identical.
    "strangler.diff.compare",
    "strangler.diff.json_walk",
    "strangler.diff.equality",
    "strangler.diff.automaton",
    "strangler.diff.paths",
    "strangler.diff.values",
    "strangler.diff.normalize",
    "strangler.diff.tolerance",
    "strangler.diff.headers",
    "strangler.diff.text",
    "strangler.diff.rules",
    "strangler.diff.model",
)

# The shared library that holds the group's code; each module's own extension is a small shim.
GROUP: Final = "strangler._native"
# The C compiler's optimisation level (mypyc's default), the same for the wheel and `make native`.
OPT_LEVEL: Final = "3"

_SRC: Final = Path(__file__).resolve().parent.parent


def source_path(module: str, src: Path = _SRC) -> Path:
    """The `.py` file of `module` under the source root `src`."""
    return src.joinpath(*module.split(".")).with_suffix(".py")


def built_extensions(src: Path = _SRC) -> list[Path]:
    """The extension files of the last build under `src`: the group library and the shims."""
    found = []
    for module in (*COMPILED_MODULES, GROUP + "__mypyc"):
        stem = src.joinpath(*module.split("."))
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = stem.with_name(stem.name + suffix)
            if candidate.exists():
                found.append(candidate)
    return found


def is_source_checkout(src: Path = _SRC) -> bool:
    """Whether `src` is a checkout's source root (the native build script beside it), not an
    installed package."""
    return (src.parent / "tools" / "build_native.py").is_file()


def stale_sources(src: Path = _SRC) -> list[Path]:
    """The compiled modules' sources edited after the build under `src` (none without one, and
    none in an installed package: pip dates each file when it unpacks it, so a source may look
    a moment newer than the extension built from it)."""
    if not is_source_checkout(src):
        return []
    built = built_extensions(src)
    if not built:
        return []
    oldest = min(path.stat().st_mtime for path in built)
    sources = [source_path(module, src) for module in COMPILED_MODULES]
    return [path for path in sources if path.stat().st_mtime > oldest]


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds the compiled modules' `.py` files ahead of their extensions."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in COMPILED_MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, source_path(fullname))


def prefers_sources() -> bool:
    """Whether this process imports the compiled modules from their sources (a stale build)."""
    return any(isinstance(finder, _SourcesFirst) for finder in sys.meta_path)


def prefer_sources() -> None:
    """Import the compiled modules from their sources from now on (a stale build)."""
    if not prefers_sources():
        sys.meta_path.insert(0, _SourcesFirst())


def loaded_compiled() -> list[str]:
    """The compiled modules that this process imported from an extension, not from source."""
    compiled = []
    for name in COMPILED_MODULES:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None) or ""
        if origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)):
            compiled.append(name)
    return compiled


def is_compiled() -> bool:
    """True when this process runs the compiled hot path (the proxy's server module stands for
    the build: the group is loaded whole or not at all)."""
    return "strangler.proxy.server" in loaded_compiled()


def describe() -> str:
    """One line for the startup log: how the hot path runs in this process."""
    compiled = loaded_compiled()
    # Modules of the set this process has not imported (the access log's, the tracer's when
    # they are off) do not make it "partly" compiled: the group is built and loaded whole.
    imported = [name for name in COMPILED_MODULES if name in sys.modules]
    if compiled and len(compiled) == len(imported):
        return f"hot path compiled with mypyc ({len(COMPILED_MODULES)} modules)"
    if compiled:
        return f"hot path partly compiled ({len(compiled)} of {len(imported)} modules in use)"
    if stale := stale_sources():
        names = ", ".join(path.name for path in stale)
        return f"hot path in pure Python: its compiled build is older than {names} (`make native`)"
    return f"hot path in pure Python ({how_to_compile()})"


def how_to_compile(src: Path = _SRC) -> str:
    """How the user of the package under `src` gets its hot path compiled."""
    if is_source_checkout(src):
        return "`make native` compiles it"
    # pip caches the wheel it built from source, and would reinstall the pure one from there.
    return (
        "this install has no compiled build: install a C compiler and the Python headers "
        "(Debian: apt-get install gcc python3-dev), then reinstall strangler from source: "
        "pip install --no-deps --force-reinstall --no-cache-dir --no-binary strangler strangler"
    )
