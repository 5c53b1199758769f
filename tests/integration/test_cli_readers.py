"""`strangler diffs` and `strangler progress` read a running gateway with `--admin URL` and
print what they print from the config's store; `diffs accept` takes `-r`; `diffs --examples`
shows values as JSON, names the sides legacy and new, and shows a value one side lacks as
(absent).

One gateway with real upstreams answers real traffic; the CLI runs as a user runs it, in a
child process, from a folder with no config when it is pointed at the gateway.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.integration.gateway_process import GatewayProcess, write_config
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream

ROUTES = """\
  - name: pages
    match: "GET /pages/*rest"
    stage: legacy
  - name: answers
    match: "GET /chaos/*rest"
    stage: shadow
    shadow: {noise_sample_rate: 0}
  - name: later
    match: "GET /later/*rest"
    stage: shadow
"""
# Every way two JSON answers can differ at a key: a value for a value (null for false, false
# for null, one string for another), a key only legacy has, a key only new has.
LEGACY_BODY = b'{"flag": null, "done": false, "title": "old", "gone": 1}'
NEW_BODY = b'{"flag": false, "done": null, "title": "new", "added": true}'


@dataclass
class Setup:
    gateway: GatewayProcess
    token: str
    nowhere: Path  # a folder with no config in it

    def cli(self, *args: str, admin: bool = False) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STRANGLER_")}
        if admin:
            assert self.gateway.admin_url is not None
            env |= {
                "STRANGLER_ADMIN_URL": self.gateway.admin_url,
                "STRANGLER_ADMIN_TOKEN": self.token,
            }
        else:
            args = (*args, "--config", str(self.gateway.config_path))
        return subprocess.run(
            [sys.executable, "-m", "strangler", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=self.nowhere,
            env=env,
        )

    def api(self, path: str) -> Any:
        response = httpx.get(
            f"{self.gateway.admin_url}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        response.raise_for_status()
        return response.json()


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    legacy, new = EchoUpstream("legacy").start(), EchoUpstream("new").start()
    legacy.app.state.chaos = {"status": 200, "delay_ms": 0, "body": LEGACY_BODY}
    new.app.state.chaos = {"status": 200, "delay_ms": 0, "body": NEW_BODY}
    path = write_config(
        tmp_path_factory.mktemp("gw") / "strangler.yaml",
        legacy=legacy.url,
        new=new.url,
        routes=ROUTES,
    )
    gateway = GatewayProcess(path).start()
    try:
        made = subprocess.run(
            [sys.executable, "-m", "strangler", "token", "create", "--name", "reviewer",
             "--scope", "write", "--json", "--config", str(path)],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        ready = Setup(gateway, orjson.loads(made.stdout)["token"], tmp_path_factory.mktemp("cwd"))
        with httpx.Client() as client:
            for index in range(3):
                assert client.get(f"{gateway.url}/chaos/{index}").status_code == 200
            for index in range(2):
                client.get(f"{gateway.url}/pages/{index}")

        def flushed() -> bool:
            routes = {r["route"]: r for r in ready.api("/api/v1/progress")["routes"]}
            hour = routes["pages"]["last_hour"]
            return routes["answers"]["compared"] == 3 and hour is not None and hour["legacy"] == 2

        wait_until(flushed, "the traffic and the comparisons in the store", 15)
        yield ready
    finally:
        gateway.stop()
        legacy.stop()
        new.stop()


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_progress_through_the_admin_api_is_the_local_report(setup: Setup) -> None:
    local = orjson.loads(_ok(setup.cli("progress", "--json")))
    remote = orjson.loads(_ok(setup.cli("progress", "--json", admin=True)))
    assert remote == local
    assert local["routes_by_stage"] == {"legacy": 1, "shadow": 2}
    assert _ok(setup.cli("progress", admin=True)) == _ok(setup.cli("progress"))


def test_diffs_through_the_admin_api_are_the_local_ones(setup: Setup) -> None:
    local = orjson.loads(_ok(setup.cli("diffs", "--json")))
    assert orjson.loads(_ok(setup.cli("diffs", "--json", admin=True))) == local
    # A shadowed route without results yet is listed too, with zeros.
    assert [(r["route"], r["compared"], r["is_shadowed"]) for r in local] == [
        ("answers", 3, True),
        ("later", 0, True),
    ]
    for args in (("diffs", "answers", "--json"), ("diffs", "answers", "--examples", "--json")):
        assert _ok(setup.cli(*args, admin=True)) == _ok(setup.cli(*args))
    assert _ok(setup.cli("diffs", "answers", admin=True)) == _ok(setup.cli("diffs", "answers"))


def test_examples_name_the_sides_and_print_json_values(setup: Setup) -> None:
    examples = orjson.loads(_ok(setup.cli("diffs", "answers", "--examples", "--json")))
    # Three requests, one example each per path: the request differs, nothing else does.
    by_path = {example.pop("path"): example for example in examples}
    assert {example.pop("request") for example in examples} == {f"GET /chaos/{i}" for i in range(3)}
    assert {key: by_path[f"$.{key}"] for key in ("flag", "gone", "added")} == {
        "flag": {"rule_path": "$.flag", "kind": "type_changed", "legacy": None, "new": False},
        # The side that lacks the key has no entry at all: null would be a value.
        "gone": {"rule_path": "$.gone", "kind": "missing", "legacy": 1},
        "added": {"rule_path": "$.added", "kind": "extra", "new": True},
    }
    assert "primary" not in _ok(setup.cli("diffs", "answers", "--examples", "--json"))

    text = _ok(setup.cli("diffs", "answers", "--examples")).splitlines()

    def sides(path: str) -> list[str]:
        at = text.index(next(line for line in text if f"  {path}  (" in line))
        return text[at + 1 : at + 3]

    assert sides("$.flag") == ["  legacy: null", "  new:    false"]
    assert sides("$.done") == ["  legacy: false", "  new:    null"]
    assert sides("$.title") == ['  legacy: "old"', '  new:    "new"']
    assert sides("$.gone") == ["  legacy: 1", "  new:    (absent)"]
    assert sides("$.added") == ["  legacy: (absent)", "  new:    true"]


def test_the_paths_header_says_what_count_counts(setup: Setup) -> None:
    text = _ok(setup.cli("diffs", "answers"))
    assert text.startswith("answers: 3 comparisons, 3 with differences;")
    assert "COUNT is the number of values that differed at PATH" in text


def test_accept_takes_r_through_either_door(setup: Setup) -> None:
    missing = setup.cli("diffs", "accept", "answers", "$.title", admin=True)
    assert missing.returncode == 2
    assert "needs a reason" in missing.stderr
    unknown = setup.cli("diffs", "accept", "answers", "$.nope", "-r", "why")
    assert unknown.returncode == 2
    assert "has no difference path '$.nope'" in unknown.stderr

    accepted = setup.cli("diffs", "accept", "answers", "$.title", "-r", "renamed", admin=True)
    assert _ok(accepted) == "answers $.title: marked accepted\n"
    noise = setup.cli("diffs", "noise", "answers", "$.flag", "--reason", "both mean no")
    assert _ok(noise) == "answers $.flag: marked noise\n"
    paths = {p["rule_path"]: p for p in setup.api("/api/v1/diffs/answers")["paths"]}
    assert (paths["$.title"]["review"], paths["$.title"]["review_reason"]) == (
        "accepted",
        "renamed",
    )
    assert paths["$.title"]["reviewed_by"] == "token:reviewer"
    assert (paths["$.flag"]["review"], paths["$.flag"]["review_reason"]) == (
        "noise",
        "both mean no",
    )


def test_a_refused_token_exits_1_naming_the_status(setup: Setup) -> None:
    setup.token, real = "not-a-token", setup.token
    try:
        for args in (("progress",), ("diffs",)):
            result = setup.cli(*args, admin=True)
            assert (result.returncode, result.stderr.startswith("error: 401")) == (1, True)
    finally:
        setup.token = real
