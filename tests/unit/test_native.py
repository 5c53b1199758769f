"""The compiled hot path: which build is in use, and when a build is stale."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from strangler import native

_SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def _tree(tmp_path: Path, *, built_at: float | None, is_checkout: bool = True) -> Path:
    """A source root holding every compiled module's `.py`, and a build of them if `built_at`;
    in a checkout (the native build script beside it) or as an installed package."""
    if is_checkout:
        script = tmp_path / "tools" / "build_native.py"
        script.parent.mkdir()
        script.write_text("")
    tmp_path = tmp_path / "src"
    for module in native.COMPILED_MODULES:
        source = native.source_path(module, tmp_path)
        source.parent.mkdir(parents=True, exist_ok=True)
        source.write_text("")
        os.utime(source, (1_000, 1_000))
    if built_at is not None:
        for module in (*native.COMPILED_MODULES, native.GROUP + "__mypyc"):
            stem = tmp_path.joinpath(*module.split("."))
            built = stem.with_name(stem.name + _SUFFIX)
            built.write_bytes(b"")
            os.utime(built, (built_at, built_at))
    return tmp_path


def test_without_a_build_nothing_is_stale(tmp_path: Path) -> None:
    src = _tree(tmp_path, built_at=None)
    assert native.built_extensions(src) == []
    assert native.stale_sources(src) == []


def test_a_build_newer_than_every_source_is_current(tmp_path: Path) -> None:
    src = _tree(tmp_path, built_at=2_000)
    assert len(native.built_extensions(src)) == len(native.COMPILED_MODULES) + 1
    assert native.stale_sources(src) == []


def test_one_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    src = _tree(tmp_path, built_at=2_000)
    edited = native.source_path("strangler.proxy.exchange", src)
    os.utime(edited, (3_000, 3_000))
    assert native.stale_sources(src) == [edited]


def test_the_oldest_extension_dates_the_build(tmp_path: Path) -> None:
    # A shim left from an older build: every source newer than it is stale.
    src = _tree(tmp_path, built_at=2_000)
    stem = src.joinpath(*native.COMPILED_MODULES[0].split("."))
    os.utime(stem.with_name(stem.name + _SUFFIX), (500, 500))
    assert len(native.stale_sources(src)) == len(native.COMPILED_MODULES)


def test_an_installed_package_is_never_stale(tmp_path: Path) -> None:
    # pip writes each file at its own moment: a source may be newer than its extension.
    src = _tree(tmp_path, built_at=2_000, is_checkout=False)
    os.utime(native.source_path("strangler.proxy.exchange", src), (3_000, 3_000))
    assert native.stale_sources(src) == []


@pytest.mark.parametrize(
    ("is_checkout", "hint", "not_in_hint"),
    [
        (True, "`make native` compiles it", "pip"),
        (False, "pip install --no-deps --force-reinstall --no-cache-dir --no-binary", "make"),
    ],
)
def test_the_pure_python_hint_fits_how_strangler_was_installed(
    tmp_path: Path, is_checkout: bool, hint: str, not_in_hint: str
) -> None:
    src = _tree(tmp_path, built_at=None, is_checkout=is_checkout)
    assert native.is_source_checkout(src) is is_checkout
    assert hint in native.how_to_compile(src)
    assert not_in_hint not in native.how_to_compile(src)


def test_this_checkout_is_one() -> None:
    assert native.is_source_checkout()
    assert native.how_to_compile() == "`make native` compiles it"


@pytest.mark.skipif(
    os.environ.get("STRANGLER_REQUIRE_NATIVE") != "1",
    reason="STRANGLER_REQUIRE_NATIVE=1 (set by `make test`) checks the compiled build",
)
def test_make_test_runs_the_compiled_hot_path() -> None:
    for module in native.COMPILED_MODULES:
        importlib.import_module(module)
    assert native.loaded_compiled() == list(native.COMPILED_MODULES)
    assert (
        native.describe()
        == f"hot path compiled with mypyc ({len(native.COMPILED_MODULES)} modules)"
    )
    assert native.stale_sources() == []


def test_a_stale_build_runs_the_sources_instead() -> None:
    # What the package does at import when its build is stale, in a process of its own.
    script = (
        "import strangler.native as n; n.prefer_sources(); "
        "import strangler.proxy.server as s, strangler.routing.model as m; "
        "print(s.__file__, m.__file__, n.loaded_compiled())"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    server_file, model_file, compiled = done.stdout.split(" ", 2)
    assert server_file == str(native.source_path("strangler.proxy.server"))
    assert model_file == str(native.source_path("strangler.routing.model"))
    assert compiled.strip() == "[]"
