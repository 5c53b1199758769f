"""Compile the gateway's hot path (strangler.native.COMPILED_MODULES) with mypyc, in place.

Run by `make native`. It runs setup.py's build_ext, the one that compiles the wheel, with
`--inplace`: the C sources and object files go to build/native/, and the extensions land beside
their `.py` files under src/, where the editable install imports them. Needs a C compiler and
the Python headers (the Makefile installs gcc and python3-dev when missing); without them it
fails rather than fall back to pure Python as a wheel build would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"


def main() -> int:
    sys.path.insert(0, str(SRC))
    from strangler.native import COMPILED_MODULES, built_extensions

    # The build is dated when it reads the sources: a source edited later makes it stale.
    started = time.time()
    # A failed or partial build must not leave an older group library beside new shims.
    for path in built_extensions(SRC):
        path.unlink()
    env = {**os.environ, "STRANGLER_REQUIRE_NATIVE": "1"}
    env.pop("STRANGLER_PURE_PYTHON", None)
    subprocess.run(
        [sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=ROOT, env=env, check=True
    )
    # setuptools copies an unchanged extension with its old date; every file gets the build's.
    built = built_extensions(SRC)
    for path in built:
        os.utime(path, (started, started))
    if len(built) != len(COMPILED_MODULES) + 1:
        print(f"error: the build left {len(built)} extensions: {built}", file=sys.stderr)
        return 1
    print(f"compiled {len(COMPILED_MODULES)} modules with mypyc: {', '.join(COMPILED_MODULES)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
