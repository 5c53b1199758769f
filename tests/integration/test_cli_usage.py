"""The command line as a user meets it: `--version`, shell completion, help pages that document
every option, and a config found without `--config` ($STRANGLER_CONFIG, then ./strangler.yaml).

Behaviour a user sees runs the real `strangler` in a child process; the walk over every help
page uses typer's CliRunner on the same app, in this process (forty-odd pages).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

import orjson
import pytest
import typer
from typer.testing import CliRunner

from strangler.cli.main import app
from strangler.cli.options import CONFIG_ENV, NO_CONFIG

CONFIG = """\
listen: 127.0.0.1:0
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
default: legacy
routes:
  - name: projects.show
    match: "GET /projects/:id"
    stage: new
"""

# Variables a developer's shell may have set that would change what the CLI finds.
_ISOLATED = ("STRANGLER_CONFIG", "STRANGLER_ADMIN_URL", "STRANGLER_ADMIN_TOKEN")


def _strangler(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in _ISOLATED}
    return subprocess.run(
        [sys.executable, "-m", "strangler", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
        env={**base, **(env or {})},
    )


def test_version_prints_the_installed_version_and_the_hot_path() -> None:
    result = _strangler("--version")
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first == f"strangler {version('strangler')}"
    assert second.startswith("hot path ")


def test_completion_script_and_completions() -> None:
    # Shell detection looks at the parent process (pytest here); typer's own tests turn it off
    # this way and name the shell instead.
    shown = _strangler(
        "--show-completion", "bash", env={"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}
    )
    assert shown.returncode == 0, shown.stderr
    assert "_STRANGLER_COMPLETE=complete_bash" in shown.stdout
    # What that script runs on <TAB>: the commands that start with the word typed.
    completed = _strangler(
        env={
            "_STRANGLER_COMPLETE": "complete_bash",
            "COMP_WORDS": "strangler di",
            "COMP_CWORD": "1",
        }
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.split() == ["diffs"]


def test_install_completion_writes_the_script_where_bash_reads_it(tmp_path: Path) -> None:
    result = _strangler(
        "--install-completion",
        "bash",
        env={"HOME": str(tmp_path), "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
    )
    assert result.returncode == 0, result.stderr
    script = tmp_path / ".bash_completions" / "strangler.sh"
    assert "_STRANGLER_COMPLETE=complete_bash" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "strangler.yaml").write_text(CONFIG)
    return tmp_path


def _route_names(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [row["name"] for row in orjson.loads(result.stdout)]


def test_config_found_in_the_working_directory(config_dir: Path) -> None:
    assert _route_names(_strangler("routes", "--json", cwd=config_dir)) == ["projects.show"]
    checked = _strangler("check-config", cwd=config_dir)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith("strangler.yaml: ok (2 backends, 1 routes")


def test_config_from_the_environment_outranks_the_working_directory(
    config_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "gateway.yaml"
    elsewhere.write_text(CONFIG.replace("projects.show", "from.env"))
    env = {CONFIG_ENV: str(elsewhere)}
    assert _route_names(_strangler("routes", "--json", cwd=config_dir, env=env)) == ["from.env"]
    # --config outranks the environment.
    flagged = _strangler("routes", "--json", "-c", "strangler.yaml", cwd=config_dir, env=env)
    assert _route_names(flagged) == ["projects.show"]
    checked = _strangler("check-config", cwd=config_dir, env=env)
    assert checked.stdout.startswith(f"{elsewhere}: ok"), checked.stderr


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("routes",), id="routes"),
        pytest.param(("check-config",), id="check-config"),
        pytest.param(("status",), id="status"),
        pytest.param(("token", "list"), id="token-list"),
        pytest.param(("progress",), id="progress"),
    ],
)
def test_no_config_anywhere_says_where_one_may_come_from(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    result = _strangler(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == f"error: {NO_CONFIG}\n"
    assert not list(tmp_path.iterdir()), "nothing may be created where no config was found"


def test_environment_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "strangler.yaml").write_text(CONFIG)
    result = _strangler("routes", cwd=tmp_path, env={CONFIG_ENV: str(tmp_path / "typo.yaml")})
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: {CONFIG_ENV} names {tmp_path / 'typo.yaml'}, which is not a file\n"
    )


def test_a_reader_pointed_at_a_gateway_needs_no_config(tmp_path: Path) -> None:
    # No config and no token: the error is about the missing token, so --admin was honoured.
    result = _strangler("status", "--admin", "http://127.0.0.1:9", cwd=tmp_path)
    assert result.returncode == 2
    assert "STRANGLER_ADMIN_TOKEN" in result.stderr
    from_env = _strangler("status", cwd=tmp_path, env={"STRANGLER_ADMIN_URL": "http://127.0.0.1:9"})
    assert "STRANGLER_ADMIN_TOKEN" in from_env.stderr


def test_check_config_refuses_two_different_files(config_dir: Path) -> None:
    result = _strangler("check-config", "strangler.yaml", "--config", "other.yaml", cwd=config_dir)
    assert result.returncode == 2
    assert "two config files given" in result.stderr


# -- every help page ---------------------------------------------------------------------------


def _commands(
    command: typer.main.TyperGroup | object, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], object]]:
    yield path, command
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        yield from _commands(sub, (*path, name))


ROOT = typer.main.get_command(app)
COMMANDS = list(_commands(ROOT))


def _help(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(
        app, [*path, "--help"], env={"COLUMNS": "80"}, prog_name="strangler"
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_the_walk_finds_the_sub_apps_commands() -> None:
    paths = {" ".join(path) for path, _ in COMMANDS}
    assert {"diffs", "keys rotate", "token create", "canary sign", "rollout weight"} <= paths


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "strangler" for p, _ in COMMANDS]
)
def test_every_option_is_documented(path: tuple[str, ...], command: object) -> None:
    params = getattr(command, "params", [])
    undocumented = [
        param.opts[0]
        for param in params
        if param.param_type_name == "option" and not param.hidden and not (param.help or "").strip()
    ]
    assert undocumented == []
    text = _help(path)
    assert "<bool>" not in text
    # A --config option is the shared one, so every command finds its file the same way.
    for param in params:
        if "--config" in getattr(param, "opts", ()):
            assert param.envvar == CONFIG_ENV, f"{' '.join(path)} --config ignores {CONFIG_ENV}"


GROUPS = [(path, command) for path, command in COMMANDS if getattr(command, "commands", None)]


@pytest.mark.parametrize(
    ("path", "group"), GROUPS, ids=[" ".join(p) or "strangler" for p, _ in GROUPS]
)
def test_command_lists_show_whole_sentences(path: tuple[str, ...], group: object) -> None:
    # Click cuts a first sentence that does not fit the line and ends it with "...".
    text = _help(path)
    listing = text.split("Commands:\n", 1)[1]
    cut = [line.strip() for line in listing.splitlines() if line.rstrip().endswith("...")]
    assert cut == []
