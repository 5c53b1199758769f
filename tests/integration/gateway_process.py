"""Run the real gateway (`python -m strangler run`) as a child process for integration tests.

Readiness is the gateway's own "strangler listening on http://..." line, never a sleep, and,
when the config turns the admin listener on, the "strangler admin on http://..." line after it.
Configs written by `write_config` put the admin listener on 127.0.0.1:0 unless the test sets
`admin:` itself, so gateways started one after another never fight over the default port.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from strangler.config import load_config
from strangler.errors import ConfigError

READY_PREFIX = "strangler listening on http://"
TLS_PREFIX = "strangler listening on https://"
ADMIN_PREFIX = "strangler admin on http://"


class GatewayProcess:
    """A running gateway; `url` is its base URL once `start()` returned, and `admin_url` the
    admin listener's (None when the config turns it off)."""

    def __init__(
        self,
        config_path: Path,
        *,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.config_path = config_path
        self.workers = workers
        self.extra_args = extra_args
        self.env = env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.host = "127.0.0.1"
        self.stdout_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self.admin_url: str | None = None
        # The HTTPS listener's base URL when the config has `tls:`.
        self.tls_url: str | None = None
        self._ready: queue.Queue[str] = queue.Queue()
        self._tls_ready: queue.Queue[str] = queue.Queue()
        self._admin_ready: queue.Queue[str] = queue.Queue()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 20.0) -> GatewayProcess:
        cmd = [
            sys.executable,
            "-m",
            "strangler",
            "run",
            "--config",
            str(self.config_path),
            "--workers",
            str(self.workers),
            *self.extra_args,
        ]
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        expects_admin = self._expects_admin()
        has_plain, has_tls = self._expects_listeners()
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        assert self.proc.stdout is not None and self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stdout, True), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, False), daemon=True).start()
        ready = self._ready if has_plain else self._tls_ready
        try:
            line = ready.get(timeout=timeout_s)
        except queue.Empty:
            self.stop()
            raise RuntimeError(f"gateway not ready in {timeout_s}s: {self.stderr_text()}") from None
        if not line:
            raise RuntimeError(f"gateway exited: {self.stderr_text()}")
        if has_plain:
            address = line[len(READY_PREFIX) :].split()[0]
            self.host, port = address.rsplit(":", 1)
            self.port = int(port)
        if has_tls:
            # Printed in the same write as the readiness line.
            tls_line = line if not has_plain else self._tls_ready.get(timeout=timeout_s)
            self.tls_url = "https://" + tls_line[len(TLS_PREFIX) :].split()[0]
        if expects_admin:
            # Printed in the same write as the readiness line: it is already in the pipe.
            admin = self._admin_ready.get(timeout=timeout_s)
            if not admin:
                raise RuntimeError(f"gateway exited: {self.stderr_text()}")
            self.admin_url = "http://" + admin[len(ADMIN_PREFIX) :].split()[0]
        return self

    def _expects_admin(self) -> bool:
        try:
            return load_config(self.config_path).admin.listen is not None
        except ConfigError:
            return False  # the gateway refuses the file; start() reports how it exited

    def _expects_listeners(self) -> tuple[bool, bool]:
        try:
            config = load_config(self.config_path)
        except ConfigError:
            return True, False
        return config.listen is not None, config.tls is not None

    def _pump(self, stream: IO[str], is_stdout: bool) -> None:
        for line in stream:
            (self.stdout_lines if is_stdout else self.stderr_lines).append(line)
            if is_stdout and line.startswith(READY_PREFIX):
                self._ready.put(line.strip())
            if is_stdout and line.startswith(TLS_PREFIX):
                self._tls_ready.put(line.strip())
            if is_stdout and line.startswith(ADMIN_PREFIX):
                self._admin_ready.put(line.strip())
        if is_stdout:
            self._ready.put("")
            self._tls_ready.put("")
            self._admin_ready.put("")

    def stderr_text(self) -> str:
        return "".join(self.stderr_lines)

    def wait_for_log(self, text: str, timeout_s: float = 10.0) -> str:
        """Block until a stderr line contains `text` (polling the captured lines)."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            lines = self.stderr_lines
            for line in lines[seen:]:
                if text in line:
                    return line
            seen = len(lines)
            time.sleep(0.02)
        raise AssertionError(f"no log line with {text!r}; stderr was:\n{self.stderr_text()}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def write_config(
    path: Path,
    *,
    legacy: str,
    new: str | None = None,
    routes: str = "",
    extra: str = "",
    listen: str = "127.0.0.1:0",
    backend_options: str = "",
) -> Path:
    """Write a gateway config; `routes`/`extra` are YAML snippets (already indented).

    The admin listener goes on 127.0.0.1:0 unless `extra` has an `admin:` section.
    """
    new_url = new or legacy
    text = (
        f"listen: {listen}\n"
        "backends:\n"
        f'  legacy: {{url: "{legacy}"{backend_options}}}\n'
        f'  new: {{url: "{new_url}"{backend_options}}}\n'
        "default: legacy\n"
        f"routes:\n{routes or '  []'}\n{extra}"
    )
    if not routes:
        text = text.replace("routes:\n  []", "routes: []")
    if not re.search(r"^admin:", extra, re.MULTILINE):
        text += ("" if text.endswith("\n") else "\n") + 'admin: {listen: "127.0.0.1:0"}\n'
    path.write_text(text)
    return path


def run_gateway(path: Path, **kwargs: object) -> Iterator[GatewayProcess]:
    gateway = GatewayProcess(path, **kwargs)  # type: ignore[arg-type]
    gateway.start()
    try:
        yield gateway
    finally:
        gateway.stop()


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`strangler ARGS...` in a child process, as a user runs it; never raises on its exit."""
    return subprocess.run(
        [sys.executable, "-m", "strangler", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )
