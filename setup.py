"""Build the gateway's hot path into the package: the modules `strangler.native` lists are
compiled with mypyc when the wheel is built (`pip install strangler`, `pip install .`), and by
`make native` in place in a checkout (tools/build_native.py runs this file's build_ext).

Rules:
- Everything else about the package is in pyproject.toml; this file only adds the extensions.
- Without a C compiler or the Python headers, or when mypyc refuses the sources, the build warns
  and ships pure Python, which behaves the same, slower; the gateway's startup line says which
  build it runs and how to get the compiled one.
- STRANGLER_PURE_PYTHON=1 builds no extension (the Makefile's editable install: `make native`
  compiles in place); STRANGLER_REQUIRE_NATIVE=1 fails the build instead of falling back (the
  Dockerfile, the tests).
- Generated C, objects and built extensions stay under build/native/, so a wheel built in a
  checkout reuses what `make native` compiled when the sources have not changed since.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

BUILD = Path("build", "native")


def _native() -> ModuleType:
    """strangler/native.py alone: importing the package would run its import-time checks."""
    path = Path(__file__).resolve().parent / "src" / "strangler" / "native.py"
    spec = importlib.util.spec_from_file_location("_strangler_native_for_build", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


native = _native()
# The group's shared library, then one small shim per module (mypyc's naming).
EXTENSION_NAMES = (native.GROUP + "__mypyc", *native.COMPILED_MODULES)


def _is_set(name: str) -> bool:
    return os.environ.get(name, "") == "1"


class NotCompiled(Exception):
    """Why the hot path cannot be compiled here."""


def _missing_toolchain() -> str | None:
    """What this machine lacks to compile the extensions, if anything."""
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    if not headers.is_file():
        return f"no Python headers ({headers} is missing; Debian: apt-get install python3-dev)"
    from distutils.ccompiler import new_compiler
    from distutils.sysconfig import customize_compiler

    compiler = new_compiler()
    customize_compiler(compiler)
    executable = getattr(compiler, "compiler_so", [None])[0]
    if compiler.compiler_type == "unix" and not (executable and shutil.which(executable)):
        return f"no C compiler ({executable or '$CC'} not found; Debian: apt-get install gcc)"
    return None


class BuildHotPath(build_ext):
    """build_ext whose extensions mypyc generates when the build runs, not when setup.py is
    read: an sdist or a metadata query never type-checks or writes C. The extension names are
    known up front (one per compiled module, and the group's library), so the wheel's file list
    is right before the C exists."""

    def run(self) -> None:
        try:
            if missing := _missing_toolchain():
                raise NotCompiled(missing)
            self._generate_c()
            super().run()
        except (NotCompiled, CCompilerError, ExecError, PlatformError) as exc:
            self._fall_back(str(exc) or type(exc).__name__)

    def _generate_c(self) -> None:
        try:
            from mypyc.build import mypycify
        except ImportError as exc:
            raise NotCompiled("mypy is not installed (it is a build requirement)") from exc
        sources = [
            native.source_path(module, Path("src")).as_posix() for module in native.COMPILED_MODULES
        ]
        try:
            generated = mypycify(
                ["--config-file", "pyproject.toml", *sources],
                opt_level=native.OPT_LEVEL,
                group_name=native.GROUP,
                target_dir=str(BUILD / "c"),
            )
        except SystemExit as exc:  # mypyc reports type errors, then exits
            raise NotCompiled(f"mypyc refused the sources ({exc.code})") from exc
        by_name = {extension.name.removesuffix(".__init__"): extension for extension in generated}
        if sorted(by_name) != sorted(EXTENSION_NAMES):
            raise NotCompiled(f"mypyc made {sorted(by_name)}, setup.py expected {EXTENSION_NAMES}")
        for extension in self.extensions:
            made = by_name[extension.name]
            extension.sources = made.sources
            extension.depends = made.depends
            extension.include_dirs = made.include_dirs
            extension.extra_compile_args = made.extra_compile_args
            # mypyc's marker: its copy of an unchanged extension into the tree is skipped.
            extension.__dict__.update(
                {key: value for key, value in vars(made).items() if key.startswith("_mypyc")}
            )

    def _fall_back(self, reason: str) -> None:
        if _is_set("STRANGLER_REQUIRE_NATIVE"):
            raise SystemExit(f"error: the hot path could not be compiled: {reason}")
        # A half-built group must not ship: a shim without its library fails to import.
        for extension in self.extensions:
            Path(self.get_ext_fullpath(extension.name)).unlink(missing_ok=True)
        self.extensions = []
        print(
            f"WARNING: strangler's hot path is not compiled: {reason}. The package is pure "
            "Python, which works the same, slower. To compile it, install a C compiler and the "
            "Python headers (Debian: apt-get install gcc python3-dev) and build again.",
            file=sys.stderr,
        )


setup(
    ext_modules=(
        []
        if _is_set("STRANGLER_PURE_PYTHON")
        else [Extension(name, sources=[]) for name in EXTENSION_NAMES]
    ),
    cmdclass={"build_ext": BuildHotPath},
    options={"build": {"build_base": str(BUILD)}},
)
