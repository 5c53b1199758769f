"""Run the whole demo: legacy app, new app, the real gateway in front, and traffic through it.

`run_demo()` is what `python -m strangler.demo.runner` calls. It starts the two apps as uvicorn
subprocesses, waits until each answers its health check, writes `demo.yaml` with the chosen
ports to a temporary file, starts `python -m strangler run --config FILE` and waits for the
gateway's own readiness and admin lines, then sends generated traffic into the gateway until
Ctrl-C, SIGTERM or `duration_s`, printing a progress line every PROGRESS_INTERVAL_S and a
summary at the end.

The Rails bridge needs the apps and the gateway to agree on two things: the demo's
secret_key_base (SECRET_KEY_BASE_ENV in the legacy app's environment, for its session cookie;
a file beside the written demo.yaml for the gateway's `rails:` section, so the CLI commands the
banner prints work from any shell) and, for the new app, the admin listener's JWKS URL and the
identity issuer it must check in tokens (in its environment).

The canary route of demo.yaml (CANARY_ROUTE) gets its own stream of traffic, `api_rate_per_s`,
enough for its analyzer to judge every interval; the banner says how to watch the rollout and
how to break the new app with its chaos switch. `chaos` (else CHAOS_ENV) is the mode the new app
starts in.

Rules:
- Ports (gateway, legacy, new, admin) are checked before anything starts; a busy port is an
  error that names it (exit 1).
- Children run in their own session, so a terminal's Ctrl-C reaches only this process, which
  stops them in order (traffic, gateway, new, legacy): no request is cut off by a backend
  that vanished first. Stopping ignores further signals, so it always finishes (bounded by
  STOP_TIMEOUT_S per child).
- If any child dies while the demo runs, traffic stops and the exit code is 1.
- Readiness is observed (health checks, the gateway's readiness and admin lines), never
  assumed after a sleep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import os
import queue
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import yaml

import strangler
from strangler.cli.tokens import create_token
from strangler.demo.cookie_store import DEMO_SECRET_KEY_BASE, SECRET_KEY_BASE_ENV
from strangler.demo.databases import LEGACY_DATABASE, LEGACY_DATABASE_ENV, NEW_DATABASE, SyncJob
from strangler.demo.new_app import (
    CHAOS_DELAY_S,
    CHAOS_ENV,
    CHAOS_PATH,
    DEFAULT_ISSUER,
    ISSUER_ENV,
    JWKS_URL_ENV,
    ChaosMode,
    chaos_from_env,
)
from strangler.demo.red import RedReader
from strangler.demo.traffic import CANARY_ROUTE, TrafficStats, generate_traffic

HOST = "127.0.0.1"
READY_LINE_PREFIX = "strangler listening on http://"
# Printed by the gateway right after its readiness line, in the same write.
ADMIN_LINE_PREFIX = "strangler admin on http://"
JWKS_PATH = "/.well-known/jwks.json"
APP_READY_TIMEOUT_S = 20.0
GATEWAY_READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
# The Rails secret's file beside the written demo.yaml (see write_demo_config).
SECRET_KEY_BASE_FILE = "rails-secret-key-base"
_POLL_INTERVAL_S = 0.05
_WATCH_INTERVAL_S = 0.5
PROGRESS_INTERVAL_S = 10.0
# Reads of CANARY_ROUTE per second on top of the mix: what its plan's min_requests needs at the
# first step (see the route's comment in demo.yaml).
DEFAULT_API_RATE_PER_S = 40.0


class DemoError(Exception):
    """The demo cannot start or keep running; the message is meant for the user as is."""


def load_demo_config() -> dict[str, Any]:
    """The bundled `demo.yaml`, parsed."""
    text = resources.files("strangler.demo").joinpath("demo.yaml").read_text(encoding="utf-8")
    config: dict[str, Any] = yaml.safe_load(text)
    return config


def demo_config(
    gateway_port: int, legacy_port: int, new_port: int, admin_port: int = 9900
) -> dict[str, Any]:
    """`demo.yaml` with the four ports replaced; every other key is kept as it is."""
    config = load_demo_config()
    config["listen"] = f"{HOST}:{gateway_port}"
    config["backends"]["legacy"]["url"] = f"http://{HOST}:{legacy_port}"
    config["backends"]["new"]["url"] = f"http://{HOST}:{new_port}"
    config["admin"]["listen"] = f"{HOST}:{admin_port}"
    return config


def demo_secret_key_base() -> str:
    """The one secret the legacy app and the gateway share: the user's exported one, else the
    demo's public one."""
    return os.environ.get(SECRET_KEY_BASE_ENV) or DEMO_SECRET_KEY_BASE


def write_demo_config(config_dir: Path, config: dict[str, Any]) -> Path:
    """Write `config` as `demo.yaml` in `config_dir`, its Rails secret read from a file beside it.

    The demo's gateway gets the secret through the environment like the legacy app, but the
    commands the banner suggests run in another terminal, where that variable is not set: with
    the secret in a file next to the config (mode 0600, as a deployment would keep it), every
    `strangler ... --config demo.yaml` works from any shell.
    """
    rails = config.get("rails")
    if rails is not None and rails.get("secret_key_base_env") == SECRET_KEY_BASE_ENV:
        secret_path = config_dir / SECRET_KEY_BASE_FILE
        secret = demo_secret_key_base()
        descriptor = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(secret + "\n")
        del rails["secret_key_base_env"]
        rails["secret_key_base_file"] = SECRET_KEY_BASE_FILE
    config_path = config_dir / "demo.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return config_path


@dataclass(slots=True)
class _Child:
    """One subprocess of the demo and what the user should call it in messages."""

    label: str
    port: int
    process: subprocess.Popen[str]
    output_thread: threading.Thread | None = None
    # The gateway's readiness line, then its admin line, as they are printed.
    ready_lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def exit_message(self) -> str | None:
        code = self.process.poll()
        if code is None:
            return None
        return f"the {self.label} (port {self.port}) exited with code {code}"


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    # The children must import this same strangler, also from a source checkout that was never
    # pip-installed; PYTHONUNBUFFERED makes the gateway's readiness line arrive when printed.
    package_parent = str(Path(strangler.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    # One secret for the legacy app's cookies and the gateway that reads them. A secret the user
    # exported is kept (both children still share it); otherwise the demo's public one.
    env[SECRET_KEY_BASE_ENV] = demo_secret_key_base()
    # The new app fetches the JWKS with urllib, which follows HTTP_PROXY unless told otherwise.
    for name in ("NO_PROXY", "no_proxy"):
        env[name] = ",".join(p for p in (env.get(name), HOST) if p)
    env.update(extra or {})
    return env


def _check_ports_free(ports: dict[str, int]) -> None:
    if len(set(ports.values())) != len(ports):
        raise DemoError(f"the demo needs {len(ports)} different ports, got {ports}")
    for label, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            # Same option the servers use, so a port in TIME_WAIT counts as free, as for them.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((HOST, port))
            except OSError as exc:
                reason = "is already in use" if exc.errno == errno.EADDRINUSE else f"fails: {exc}"
                raise DemoError(
                    f"port {port} for the {label} {reason} on {HOST}; "
                    "stop whatever holds it or choose another port"
                ) from exc


def _start_app(label: str, factory: str, port: int, env: dict[str, str] | None = None) -> _Child:
    command = [
        sys.executable, "-m", "uvicorn", "--factory", factory,
        "--host", HOST, "--port", str(port),
        "--no-server-header", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=_child_env(env), start_new_session=True, text=True)
    return _Child(label, port, process)


def _wait_healthy(child: _Child, url: str) -> None:
    deadline_s = time.monotonic() + APP_READY_TIMEOUT_S
    while time.monotonic() < deadline_s:
        if (message := child.exit_message()) is not None:
            raise DemoError(f"{message} before it was ready (its output is above)")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        time.sleep(_POLL_INTERVAL_S)
    raise DemoError(f"the {child.label} did not answer {url} within {APP_READY_TIMEOUT_S:g} s")


def _forward_output(child: _Child) -> None:
    """Runs in a thread per gateway: echoes its output and reports the readiness lines."""
    stream = child.process.stdout
    if stream is None:
        return
    for line in stream:
        text = line.rstrip("\n")
        # Echoed before it is reported, so it shows above the banner printed once it is seen.
        print(f"  gateway | {text}", flush=True)
        if text.startswith((READY_LINE_PREFIX, ADMIN_LINE_PREFIX)):
            child.ready_lines.put(text)


def _start_gateway(config_path: Path, port: int) -> _Child:
    command = [sys.executable, "-m", "strangler", "run", "--config", str(config_path)]
    process = subprocess.Popen(
        command,
        env=_child_env(),
        start_new_session=True,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    child = _Child("gateway", port, process)
    child.output_thread = threading.Thread(
        target=_forward_output, args=(child,), name="demo-gateway-output", daemon=True
    )
    child.output_thread.start()
    return child


def _wait_gateway_ready(child: _Child) -> str:
    """Wait for the readiness line, then the admin line; returns the admin listener's URL."""
    deadline_s = time.monotonic() + GATEWAY_READY_TIMEOUT_S
    _next_ready_line(child, READY_LINE_PREFIX, deadline_s)
    admin_line = _next_ready_line(child, ADMIN_LINE_PREFIX, deadline_s)
    return "http://" + admin_line.removeprefix(ADMIN_LINE_PREFIX).split()[0]


def _next_ready_line(child: _Child, prefix: str, deadline_s: float) -> str:
    while time.monotonic() < deadline_s:
        with contextlib.suppress(queue.Empty):
            line = child.ready_lines.get(timeout=_POLL_INTERVAL_S)
            if not line.startswith(prefix):
                raise DemoError(f"the gateway printed {line!r} where '{prefix}...' was expected")
            return line
        if (message := child.exit_message()) is not None:
            raise DemoError(f"{message} before it was ready (its output is above)")
    raise DemoError(f"the gateway did not print '{prefix}...' within {GATEWAY_READY_TIMEOUT_S:g} s")


def _stop(children: list[_Child]) -> None:
    # Gateway first (it is last in the list), so backends never vanish under a live request.
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
            try:
                child.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait()
        if child.output_thread is not None:
            child.output_thread.join(timeout=STOP_TIMEOUT_S)


async def _drive_traffic(
    gateway_url: str,
    rate_per_s: float,
    api_rate_per_s: float,
    duration_s: float | None,
    children: list[_Child],
    metrics_url: str | None = None,
) -> tuple[TrafficStats, str | None]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Only the main thread may handle signals, and Windows loops cannot; Ctrl-C then raises.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    casualties: list[str] = []

    async def watch_children() -> None:
        while not stop.is_set():
            casualties.extend(m for c in children if (m := c.exit_message()) is not None)
            if casualties:
                stop.set()
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=_WATCH_INTERVAL_S)

    stats = TrafficStats()

    async def report_progress() -> None:
        red = RedReader(metrics_url) if metrics_url is not None else None
        async with httpx.AsyncClient(trust_env=False) as client:
            if red is not None:
                await red.lines(client)  # the first reading: RED is what happens after it
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=PROGRESS_INTERVAL_S)
                if stop.is_set():
                    break
                print(f"  traffic | {stats.progress_line()}", flush=True)
                # Live RED per route, from the gateway's own /metrics (what Prometheus reads).
                for line in await red.lines(client) if red is not None else []:
                    print(f"  red     | {line}", flush=True)

    watcher = asyncio.create_task(watch_children(), name="demo-child-watcher")
    reporter = asyncio.create_task(report_progress(), name="demo-progress")
    try:
        await generate_traffic(
            gateway_url, rate_per_s, duration_s, stop, stats=stats, api_rate_per_s=api_rate_per_s
        )
    finally:
        stop.set()
        await asyncio.gather(watcher, reporter)
    return stats, (casualties[0] if casualties else None)


def _canary_plan_text(config: dict[str, Any]) -> str:
    """How CANARY_ROUTE's plan climbs, in words: "5, 25, 50 and 100 % of users, one step per
    healthy 10 s interval"."""
    route: dict[str, Any] = next((r for r in config["routes"] if r["name"] == CANARY_ROUTE), {})
    plan = route.get("canary", {}).get("plan", {})
    steps = [f"{step:g}" for step in plan.get("steps", [])]
    if not steps or route.get("stage") != "canary":
        return "its plan's steps"
    listed = steps[0] if len(steps) == 1 else ", ".join(steps[:-1]) + f" and {steps[-1]}"
    return f"{listed} % of users, one step per healthy {plan.get('interval_s', 60):g} s interval"


def _print_banner(
    urls: dict[str, str],
    admin: str,
    rate_per_s: float,
    api_rate_per_s: float,
    config: Path,
    plan: str,
    chaos: ChaosMode,
    dashboard_token: str,
) -> None:
    gateway, legacy, new = urls["gateway"], urls["legacy"], urls["new"]
    setup = _shell_setup(config)
    access_log = config.parent / str(load_demo_config()["access_log"]["path"])
    chaos_url = new + CHAOS_PATH
    chaos_delay_ms = round(CHAOS_DELAY_S * 1000)
    starts_broken = (
        ""
        if chaos is ChaosMode.OK
        else f"The new app started in chaos mode {chaos.value}: expect a rollback at once.\n"
    )
    api_traffic = (
        f"plus {api_rate_per_s:g} reads/s of {CANARY_ROUTE} from many anonymous clients"
        if api_rate_per_s > 0
        else "and none extra to the canary"
    )
    print(
        f"""
strangler demo is running

  through the gateway   {gateway}/
                        {gateway}/projects
                        {gateway}/api/projects.json
                        {gateway}/login   (any email, password "secret")
                        {gateway}/api/me  (the new app: who you are, once logged in)
  legacy app, direct    {legacy}/   (the "Rails monolith")
  new app, direct       {new}/api/projects.json
  dashboard             {admin}/   (log in with the demo's write token:
                        {dashboard_token} )
  gateway admin         {admin}{JWKS_PATH}   (the identity keys)
  gateway metrics       {admin}/metrics   (Prometheus; the "red |" lines below read it)
  gateway config        {config}
  access log            {access_log}   (one JSON line per request: tail -f it)

The commands below run in another terminal, once it has these two lines (`strangler` lives in
the virtualenv, and STRANGLER_CONFIG saves typing --config on every command):
{setup}

Who answered? The new app says X-Served-By: new; the legacy app sends Rails' X-Runtime:
  curl -i {gateway}/api/projects.json          # new
  curl -i {gateway}/api/projects/1.json        # the canary: new or legacy, sticky per client
  curl -i {gateway}/api/projects/1/tasks.json  # legacy (and a copy to new, compared)

Logged in on legacy, known to the new app. In a browser, log in at {gateway}/login,
then open {gateway}/api/me: the new app answers with your user id, which it
learned from the identity token (a JWT) the gateway made out of legacy's Rails session cookie;
the cookie itself never reaches the new app. A project page's Star button posts to the new app
the same way, with the page's CSRF token. Or with curl:
  T=$(curl -s -c jar {gateway}/login | grep -o 'token" value="[^"]*' | cut -d'"' -f3)
  curl -s -b jar -c jar {gateway}/login \\
       -d email=you@example.com -d password=secret -d authenticity_token=$T
  curl -s -b jar {gateway}/api/me
  curl -s -b jar -X POST {gateway}/api/projects/1/star   # no X-CSRF-Token: the gateway says 403

The tasks API is shadowed: legacy answers, the new app gets a copy, the gateway compares them.
In another terminal, see what differs (and what was learned as noise):
  strangler diffs
  strangler diffs projects.tasks.api
  strangler diffs projects.tasks.api --examples

The project detail API ({CANARY_ROUTE}) is a canary: the gateway's analyzer moves it to the new
app for {plan}, then to stage new. In another terminal, watch its verdicts (with their numbers)
and every change, or every route at once:
  canary: strangler rollout status {CANARY_ROUTE}
          strangler status
          strangler progress   # the whole migration: routes by stage, share answered by new
Break it before it completes: the new app's chaos switch makes that route answer 503 ("fail")
or {chaos_delay_ms} ms late ("slow"). The route's SLO (99 % of new's answers good and under
100 ms) pages within seconds and rolls the canary back to legacy, unless the analyzer's next
interval does first; the audit log says who did.
  break it: curl -X POST {chaos_url} -d '{{"mode":"fail"}}' -H 'content-type: application/json'
  the mode: curl {chaos_url}   ("ok" heals it)
  the SLO:  strangler slo status   # budget left, burn rates, the page alert and its numbers
  who:      strangler audit {CANARY_ROUTE}
{starts_broken}To start broken, set {CHAOS_ENV}=fail (or slow) before starting the demo. Or act
yourself: strangler pause|resume|promote|rollback {CANARY_ROUTE} -r "why"

The data: each app keeps its projects in SQLite beside the config ({LEGACY_DATABASE}, a Rails
table with an integer status enum; {NEW_DATABASE}, renamed columns and the enum as text), and a
sync job copies legacy's rows over every second. Does the new database hold what legacy's holds?
  strangler data diff            # checksums both sides, names every differing row
  strangler data diff --json     # the same as JSON; `strangler progress` shows the last run
The sync never deletes: once the traffic deletes a project on legacy, the diff reports it as
missing_in_legacy (rows written in the last `min_age_s` are left for the next run).

Sending {rate_per_s:g} actions/s of demo traffic (mostly single requests) into the gateway
{api_traffic}; some of it logs in and checks /api/me. Ctrl-C to stop.
""",
        flush=True,
    )


def demo_dir(gateway_port: int) -> Path:
    """Where a running demo keeps its config: the same path every run on this port, so a
    terminal that exported STRANGLER_CONFIG keeps working after the demo restarts."""
    return Path(tempfile.gettempdir()) / f"strangler-demo-{gateway_port}"


def _shell_setup(config: Path) -> str:
    """The lines that make the banner's commands work in a new terminal."""
    activate = ""
    if sys.prefix != sys.base_prefix:
        # Installed in a virtualenv (`make demo`'s .venv): `strangler` is on PATH only inside.
        activate = f"  . {shlex.quote(sys.prefix)}/bin/activate   # puts `strangler` on PATH\n"
    return (
        f"{activate}  export STRANGLER_CONFIG={shlex.quote(str(config))}"
        "   # every strangler command finds the demo's config"
    )


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run_demo(
    gateway_port: int = 8000,
    legacy_port: int = 3000,
    new_port: int = 8080,
    rate_per_s: float = 5.0,
    duration_s: float | None = None,
    admin_port: int = 9900,
    api_rate_per_s: float = DEFAULT_API_RATE_PER_S,
    chaos: ChaosMode | None = None,
) -> int:
    """Run the demo until Ctrl-C, SIGTERM or `duration_s`; 0 on a clean stop, 1 on failure.

    `chaos` is the new app's chaos mode at start (None: CHAOS_ENV, else `ok`).
    """
    is_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigint = signal.getsignal(signal.SIGINT) if is_main_thread else None
    previous_sigterm = signal.getsignal(signal.SIGTERM) if is_main_thread else None
    if is_main_thread:
        # While starting up, SIGTERM unwinds like Ctrl-C, so the finally below still cleans up.
        signal.signal(signal.SIGTERM, _raise_interrupt)
    children: list[_Child] = []
    config_dir = demo_dir(gateway_port)
    urls = {name: f"http://{HOST}:{port}" for name, port in
            (("gateway", gateway_port), ("legacy", legacy_port), ("new", new_port))}  # fmt: skip
    exit_code = 1
    stats: TrafficStats | None = None
    sync: SyncJob | None = None
    try:
        _check_ports_free(
            {"gateway": gateway_port, "legacy app": legacy_port, "new app": new_port,
             "gateway admin": admin_port}
        )  # fmt: skip
        # The ports are free, so no other demo on this port uses the folder: what is left in it
        # is a crashed run's.
        shutil.rmtree(config_dir, ignore_errors=True)
        config_dir.mkdir(parents=True)
        config = demo_config(gateway_port, legacy_port, new_port, admin_port)
        if chaos is None:
            try:
                chaos = chaos_from_env()
            except ValueError as exc:
                raise DemoError(f"{CHAOS_ENV}: {exc}") from exc
        legacy_env = {LEGACY_DATABASE_ENV: str(config_dir / LEGACY_DATABASE)}
        children.append(
            _start_app(
                "legacy app", "strangler.demo.legacy_app:create_legacy_app", legacy_port, legacy_env
            )
        )
        # The new app starts before the gateway: it fetches the JWKS on its first token.
        new_env = {
            JWKS_URL_ENV: f"http://{HOST}:{admin_port}{JWKS_PATH}",
            ISSUER_ENV: str(config.get("identity", {}).get("issuer", DEFAULT_ISSUER)),
            CHAOS_ENV: chaos.value,
        }
        children.append(
            _start_app("new app", "strangler.demo.new_app:create_new_app", new_port, new_env)
        )
        _wait_healthy(children[0], f"{urls['legacy']}/up")
        _wait_healthy(children[1], f"{urls['new']}/healthz")
        # Healthy, the legacy app has written its seed: the new app's table starts as its copy.
        sync = SyncJob(config_dir / LEGACY_DATABASE, config_dir / NEW_DATABASE)
        sync.start()
        config_path = write_demo_config(config_dir, config)
        children.append(_start_gateway(config_path, gateway_port))
        admin_url = _wait_gateway_ready(children[2])
        # A write token of the demo's own, for the dashboard's login: the store is the demo's
        # temporary one, removed with it.
        _, dashboard_token = create_token(config_path, "demo", "write", "demo")
        _print_banner(
            urls, admin_url, rate_per_s, api_rate_per_s, config_path,
            _canary_plan_text(config), chaos, dashboard_token,
        )  # fmt: skip
        stats, casualty = asyncio.run(
            _drive_traffic(
                urls["gateway"],
                rate_per_s,
                api_rate_per_s,
                duration_s,
                children,
                metrics_url=f"{admin_url}/metrics",
            )
        )
        if casualty is not None:
            raise DemoError(f"{casualty}; stopping the demo")
        exit_code = 0
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        # Interrupted while starting (or on a loop that cannot handle signals): 128 + SIGINT.
        exit_code = 130
    finally:
        if is_main_thread:
            # Stopping is bounded; a second Ctrl-C must not leave children running.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if children:
                print("stopping the gateway and both apps...", flush=True)
            _stop(children)
            if sync is not None:
                sync.stop()
            shutil.rmtree(config_dir, ignore_errors=True)
        finally:
            if is_main_thread:
                signal.signal(signal.SIGINT, previous_sigint or signal.default_int_handler)
                signal.signal(signal.SIGTERM, previous_sigterm or signal.SIG_DFL)
    if stats is not None:
        print(stats.render(), flush=True)
    return exit_code


def main(argv: list[str] | None = None) -> int:
    """`python -m strangler.demo.runner [--gateway-port 8000] [--rate 5] ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m strangler.demo.runner",
        description="Run the legacy app, the new app and the strangler gateway with traffic.",
    )
    parser.add_argument("--gateway-port", type=int, default=8000)
    parser.add_argument("--legacy-port", type=int, default=3000)
    parser.add_argument("--new-port", type=int, default=8080)
    parser.add_argument("--admin-port", type=int, default=9900, help="the gateway's admin port")
    parser.add_argument("--rate", type=float, default=5.0, help="requests per second")
    parser.add_argument(
        "--api-rate",
        type=float,
        default=DEFAULT_API_RATE_PER_S,
        help=f"extra reads of the canary route {CANARY_ROUTE} per second (0: none)",
    )
    parser.add_argument(
        "--chaos",
        choices=[mode.value for mode in ChaosMode],
        default=None,
        help=f"the new app's chaos mode at start (default: ${CHAOS_ENV}, else ok)",
    )
    parser.add_argument("--duration", type=float, default=None, help="seconds (default: forever)")
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.api_rate < 0:
        parser.error("--rate must be > 0 and --api-rate >= 0")
    return run_demo(
        args.gateway_port, args.legacy_port, args.new_port, args.rate, args.duration,
        args.admin_port, args.api_rate, None if args.chaos is None else ChaosMode(args.chaos),
    )  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
