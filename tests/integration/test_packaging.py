"""What a user installs: the wheel holds the compiled hot path, its data and its license, and
runs compiled from where pip put it; built from the sdist on a machine without a C compiler it is
pure Python that says how to get the compiled build; the demo without its extra names the extra;
systemd accepts the unit in deploy/.

The wheel is built in the checkout without build isolation (the venv's setuptools and mypy, so
nothing is downloaded), as `pip install .` would: after `make native` with no source edited
since, setuptools finds the extensions up to date and only mypyc's type check and code
generation run again (about a minute).
"""

from __future__ import annotations

import fcntl
import importlib.machinery
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

import strangler
from strangler import native
from strangler.config import LimitsConfig
from tests.integration.conftest import GatewayFactory
from tests.integration.upstreams import EchoUpstream

REPO = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
DIST_INFO = f"strangler-{strangler.__version__}.dist-info"
REINSTALL = "pip install --no-deps --force-reinstall --no-cache-dir --no-binary strangler strangler"
EXTENSIONS = {
    module.replace(".", "/") + SUFFIX
    for module in (native.GROUP + "__mypyc", *native.COMPILED_MODULES)
}


def _package_files() -> set[str]:
    """Every file of the package in the checkout (tracked by git, so no build output or cache),
    as a path inside the wheel: the modules, and the data they read at run time."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "src/strangler"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    ).stdout.split("\0")
    return {
        Path(name).relative_to("src").as_posix()
        for name in listed
        if name and (REPO / name).is_file()
    }


def _environment(**changes: str | None) -> dict[str, str]:
    env = dict(os.environ)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _pip(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def _install(wheel: Path, target: Path) -> Path:
    """Install `wheel` alone where pip puts packages (its dependencies are this venv's)."""
    _pip(
        "install",
        "--no-deps",
        "--no-index",
        "--target",
        str(target),
        str(wheel),
        env=_environment(),
        cwd=target.parent,
    )
    return target


def _how_it_runs(site: Path, cwd: Path) -> dict[str, object]:
    """Import strangler and its compiled modules from `site`, in a process outside the checkout."""
    script = (
        "import importlib, json, strangler, strangler.native as n\n"
        "for m in n.COMPILED_MODULES: importlib.import_module(m)\n"
        "print(json.dumps({'package': strangler.__file__, 'compiled': n.loaded_compiled(),"
        " 'describe': n.describe()}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_environment(PYTHONPATH=str(site)),
        timeout=60,
        check=True,
    )
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _has_compiler() -> bool:
    compiler = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]
    headers = Path(sysconfig.get_paths()["include"], "Python.h")
    return shutil.which(compiler) is not None and headers.is_file()


def _once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """`build(folder)` once per test run, whichever xdist worker asks first; the others wait for
    it and get the same result (the wheel is 45 s of mypyc on this machine, and two builds at
    once share setuptools' build/ and egg-info folders). xdist's loadgroup would keep these tests
    on one worker, but it does not (pytest-xdist 3.8 spreads a group over the workers)."""
    base = factory.getbasetemp()
    # Under xdist each worker's folder is in the run's own folder; alone, the run's folder.
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = root / f"{name}.built"
        if done.exists():
            return Path(done.read_text())
        folder = root / name
        folder.mkdir(exist_ok=True)
        result = build(folder)
        done.write_text(str(result))
        return result


@pytest.fixture(scope="module")
def compiled_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not _has_compiler() and os.environ.get("STRANGLER_REQUIRE_NATIVE") != "1":
        pytest.skip("no C compiler or Python headers (`make test` installs them)")

    def build(out: Path) -> Path:
        # STRANGLER_REQUIRE_NATIVE=1: a build that fell back to pure Python fails here, loudly.
        env = _environment(STRANGLER_REQUIRE_NATIVE="1", STRANGLER_PURE_PYTHON=None)
        _pip(
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(REPO),
            env=env,
            cwd=out,
        )
        (wheel,) = out.glob("strangler-*.whl")
        return wheel

    return _once(tmp_path_factory, "wheel", build)


@pytest.fixture(scope="module")
def compiled_site(tmp_path_factory: pytest.TempPathFactory, compiled_wheel: Path) -> Path:
    return _once(tmp_path_factory, "site", lambda out: _install(compiled_wheel, out / "site"))


def test_the_wheel_holds_the_compiled_hot_path_its_data_and_license(compiled_wheel: Path) -> None:
    with zipfile.ZipFile(compiled_wheel) as wheel:
        names = set(wheel.namelist())
        license_text = wheel.read(f"{DIST_INFO}/licenses/LICENSE")
        metadata = wheel.read(f"{DIST_INFO}/METADATA").decode()
        wheel_info = wheel.read(f"{DIST_INFO}/WHEEL").decode()
    assert {name for name in names if name.endswith(SUFFIX)} == EXTENSIONS
    assert _package_files() - names == set()
    assert license_text == (REPO / "LICENSE").read_bytes()
    assert "Apache License\n                           Version 2.0" in license_text.decode()
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "Root-Is-Purelib: false" in wheel_info.splitlines()
    # The built dashboard (make setup): its page and every asset the page names.
    page = "strangler/admin/static/index.html"
    assert page in names, "the wheel has no dashboard: was it built (`make dashboard`)?"
    assets = {name for name in names if name.startswith("strangler/admin/static/assets/")}
    with zipfile.ZipFile(compiled_wheel) as wheel:
        named = re.findall(r'"/(assets/[^"]+)"', wheel.read(page).decode())
    assert named and {f"strangler/admin/static/{name}" for name in named} <= assets


def test_the_installed_wheel_runs_its_compiled_hot_path(
    compiled_site: Path, tmp_path: Path
) -> None:
    # pip dates every file as it writes it, so a source may look newer than its extension: an
    # installed package must not take that for a stale build.
    report = _how_it_runs(compiled_site, tmp_path)
    assert report["package"] == str(compiled_site / "strangler" / "__init__.py")
    assert report["compiled"] == list(native.COMPILED_MODULES)
    assert (
        report["describe"]
        == f"hot path compiled with mypyc ({len(native.COMPILED_MODULES)} modules)"
    )


def test_a_gateway_from_the_installed_wheel_serves_compiled(
    compiled_site: Path, start_gateway: GatewayFactory, legacy_upstream: EchoUpstream
) -> None:
    gw = start_gateway(legacy=legacy_upstream.url, env={"PYTHONPATH": str(compiled_site)})
    gw.wait_for_log(f"hot path compiled with mypyc ({len(native.COMPILED_MODULES)} modules)")
    answer = httpx.get(gw.url + "/projects/1", trust_env=False)
    assert answer.status_code == 200
    assert (answer.json()["name"], answer.json()["path"]) == ("legacy", "/projects/1")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source distribution, made by setuptools' build backend as `python -m build` does."""

    def build(out: Path) -> Path:
        script = (
            "import sys; from setuptools import build_meta; "
            "print(build_meta.build_sdist(sys.argv[1]))"
        )
        done = subprocess.run(
            [sys.executable, "-c", script, str(out)],
            capture_output=True,
            text=True,
            cwd=REPO,
            env=_environment(),
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return out / done.stdout.strip().splitlines()[-1]

    return _once(tmp_path_factory, "sdist", build)


def test_the_sdist_holds_what_a_build_needs_and_nothing_built(sdist: Path) -> None:
    with tarfile.open(sdist) as archive:
        root = sdist.name.removesuffix(".tar.gz")
        names = {name.removeprefix(root + "/") for name in archive.getnames()}
    needed = {"setup.py", "pyproject.toml", "LICENSE", "README.md"}
    needed |= {"src/" + name for name in _package_files()}
    assert needed - names == set()
    assert [name for name in names if name.endswith((".so", ".c", ".o"))] == []


def test_without_a_compiler_the_sdist_builds_pure_python_that_says_how_to_compile(
    sdist: Path, tmp_path: Path
) -> None:
    env = _environment(
        CC="/nonexistent/cc", STRANGLER_REQUIRE_NATIVE=None, STRANGLER_PURE_PYTHON=None
    )
    built = _pip(
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-v",
        "--wheel-dir",
        str(tmp_path),
        str(sdist),
        env=env,
        cwd=tmp_path,
    )
    assert (
        "WARNING: strangler's hot path is not compiled: no C compiler (/nonexistent/cc not found"
        in (built.stdout + built.stderr)
    )
    (wheel,) = tmp_path.glob("strangler-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        assert [name for name in archive.namelist() if name.endswith(SUFFIX)] == []
    report = _how_it_runs(_install(wheel, tmp_path / "site"), tmp_path)
    assert report["compiled"] == []
    assert report["describe"] == (
        "hot path in pure Python (this install has no compiled build: install a C compiler and "
        "the Python headers (Debian: apt-get install gcc python3-dev), then reinstall strangler "
        f"from source: {REINSTALL})"
    )


def test_the_demo_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    # A real environment without the extra: every installed distribution but python-multipart,
    # linked into one folder, and no site-packages (-S).
    purelib = Path(sysconfig.get_paths()["purelib"])
    extra = importlib.metadata.distribution("python-multipart")
    extra_tops = {Path(str(file)).parts[0] for file in extra.files or []}
    assert extra_tops, "python-multipart lists no files"
    deps = tmp_path / "deps"
    deps.mkdir()
    for entry in purelib.iterdir():
        if entry.name not in extra_tops:
            (deps / entry.name).symlink_to(entry)
    done = subprocess.run(
        [sys.executable, "-S", "-m", "strangler", "demo"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_environment(PYTHONPATH=os.pathsep.join([str(deps), str(REPO / "src")])),
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'strangler[demo]'" in done.stderr


def test_systemd_accepts_the_unit_in_deploy(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (`make test` installs Debian's systemd)")
    unit = (REPO / "deploy" / "strangler.service").read_text()
    assert "ExecStart=/usr/local/bin/strangler run --config /etc/strangler/strangler.yaml" in unit
    # verify wants every command the unit runs to exist: here, this venv's strangler.
    venv_strangler = Path(sys.executable).parent / "strangler"
    copy = tmp_path / "strangler.service"
    copy.write_text(unit.replace("/usr/local/bin/strangler", str(venv_strangler)))
    done = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    # verify only warns about an unknown key or a value it cannot parse, and exits 0.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
    settings = [line for line in unit.splitlines() if line and not line.startswith("#")]
    for setting in (
        "DynamicUser=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "KillSignal=SIGTERM",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "StateDirectory=strangler",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
    ):
        assert setting in settings
    # The stop timeout covers the gateway's drain, and then some for the workers to exit.
    (stop,) = [line for line in settings if line.startswith("TimeoutStopSec=")]
    drain_timeout_s = LimitsConfig.model_fields["drain_timeout_s"].default
    assert float(stop.removeprefix("TimeoutStopSec=").removesuffix("s")) >= drain_timeout_s + 10
