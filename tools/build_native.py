"""Compile the gateway's hot path (strangler.native.COMPILED_MODULES) with mypyc, in place.

Run by `make native`. The C sources and object files go to build/native/; the extensions land
beside their `.py` files under src/, where the editable install imports them. Needs a C
compiler and the Python headers (the Makefile installs gcc and python3-dev when missing).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
BUILD = ROOT / "build" / "native"


def main() -> int:
    sys.path.insert(0, str(SRC))
    from mypyc.build import mypycify
    from setuptools import setup

    from strangler.native import COMPILED_MODULES, GROUP, built_extensions, source_path

    # The build is dated when it reads the sources: a source edited later makes it stale.
    started = time.time()
    # A failed or partial build must not leave an older group library beside new shims.
    for path in built_extensions(SRC):
        path.unlink()
    os.chdir(SRC)  # build_ext --inplace puts each extension beside its module under cwd
    sources = [source_path(module, Path()).as_posix() for module in COMPILED_MODULES]
    extensions = mypycify(
        ["--config-file", str(ROOT / "pyproject.toml"), *sources],
        opt_level="3",
        group_name=GROUP,
        target_dir=str(BUILD / "c"),
    )
    setup(
        name="strangler-native",
        ext_modules=extensions,
        script_args=[
            "-q",
            "build_ext",
            "--inplace",
            "--build-temp",
            str(BUILD / "temp"),
            "--build-lib",
            str(BUILD / "lib"),
        ],
    )
    # setuptools copies an unchanged shim with its old date; every file gets the build's date.
    built = built_extensions(SRC)
    for path in built:
        os.utime(path, (started, started))
    assert len(built) == len(COMPILED_MODULES) + 1, built
    print(f"compiled {len(COMPILED_MODULES)} modules with mypyc: {', '.join(COMPILED_MODULES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
