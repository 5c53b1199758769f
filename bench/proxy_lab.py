"""The servers a proxy benchmark runs, pinned to cores, and /proc readings of what they cost.

Starts an upstream nginx (a fixed JSON answer), an nginx reverse proxy and the strangler gateway,
each in its own session under `taskset`, with its pid, logs and temp files in a throw-away
directory; waits until each one really serves (no fixed sleeps); stops each process group on the
way out, so no nginx worker is ever orphaned. Used by `proxy_bench.py`.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import http.client
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

GATEWAY_READY_PREFIX = "strangler listening on http://"
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
INSTALL_HINT = "Debian/Ubuntu: sudo apt-get install -y nginx-light wrk util-linux"

# A show answer of a Rails JSON API, 250 bytes. No `'` and no `$`: it sits inside an nginx
# single-quoted string, where `$` would start a variable.
BODY = (
    '{"id":42,"type":"project","attributes":{"name":"Strangler benchmark",'
    '"slug":"strangler-benchmark","status":"active","owner_id":7,"visibility":"internal",'
    '"created_at":"2024-05-01T12:00:00Z","updated_at":"2024-05-02T08:30:00Z"},'
    '"links":{"self":"/api/v1/projects/42.json"}}'
)


class BenchError(Exception):
    """Something the benchmark needs could not be started, or did not answer correctly."""


class MissingToolError(BenchError):
    """A tool or the second CPU core is not available (exit code 2)."""


# --- the lab: tools, cores, work dir ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lab:
    """What every step needs: the tools, the two cores, the work dir and the request path."""

    nginx: str
    wrk: str
    taskset: str
    load_core: int
    proxy_core: int
    workdir: Path
    path: str

    def pinned(self, core: int, *argv: str) -> list[str]:
        """`argv` started on `core`; children and threads inherit the affinity."""
        return [self.taskset, "-c", str(core), *argv]


def find_tools() -> tuple[str, str, str]:
    """(nginx, wrk, taskset) paths, or MissingToolError saying how to install them."""
    sbin = (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK))
    nginx = shutil.which("nginx") or next(sbin, None)
    wrk, taskset = shutil.which("wrk"), shutil.which("taskset")
    if nginx is None or wrk is None or taskset is None:
        found = {"nginx": nginx, "wrk": wrk, "taskset": taskset}
        missing = ", ".join(name for name, path in found.items() if path is None)
        raise MissingToolError(f"missing: {missing}\n  {INSTALL_HINT}\n  (`make bench` does this)")
    return nginx, wrk, taskset


def pick_cores() -> tuple[int, int]:
    """(load core, proxy core): the first two cores this process may run on."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        raise MissingToolError(f"need 2 CPU cores (load + proxy under test), may use {allowed}")
    return allowed[0], allowed[1]


def tool_version(*argv: str) -> str:
    """First line a tool prints about its version (nginx -v writes to stderr)."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().splitlines()[0]


# --- processes -------------------------------------------------------------------------------


def _stat_after_comm(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after `comm`, which may itself hold spaces and parentheses."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants (nginx workers, forked gateway workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                children.setdefault(int(_stat_after_comm(int(entry))[1]), []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def pin_tree(root: int, core: int) -> None:
    """Pin every thread of every process under `root` to `core` (`taskset -apc core pid`).

    The servers already start under `taskset -c`; this repeats it once they are up, in case
    something in them set its own affinity.
    """
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(tid), {core})


def cpu_seconds(root: int) -> float:
    """User + system CPU time of `root` and its live descendants."""
    ticks = 0
    for pid in process_tree(root):
        with contextlib.suppress(OSError):
            fields = _stat_after_comm(pid)
            ticks += int(fields[11]) + int(fields[12])  # utime, stime: stat fields 14 and 15
    return ticks / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    """Resident set size of one process (VmRSS in /proc/<pid>/status)."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cores_busy_s(cores: Collection[int]) -> float:
    """Time the kernel counted `cores` as not idle since boot, whoever ran (/proc/stat).

    Steal (another VM had our CPU) counts as busy: it is interference too. Interrupt and softirq
    time count only when the kernel also charges them to the interrupted task, as it does
    without CONFIG_IRQ_TIME_ACCOUNTING; loopback networking runs in softirq, so otherwise our own
    processes would look short of time and hide the others.
    """
    columns = [0, 1, 2, 7]  # user nice system idle iowait irq softirq steal
    if _is_irq_time_charged_to_tasks():
        columns += [5, 6]
    ticks = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
            ticks += sum(int(values[column]) for column in columns)
    return ticks / os.sysconf("SC_CLK_TCK")


@functools.cache
def _is_irq_time_charged_to_tasks() -> bool:
    """True unless the kernel config says CONFIG_IRQ_TIME_ACCOUNTING=y (also when unknown)."""
    for path in (Path("/proc/config.gz"), Path(f"/boot/config-{os.uname().release}")):
        with contextlib.suppress(OSError):
            data = path.read_bytes()
            config = gzip.decompress(data) if path.suffix == ".gz" else data
            return b"\nCONFIG_IRQ_TIME_ACCOUNTING=y" not in config
    return True


def own_cpu_s(servers: Collection[Server]) -> float:
    """CPU time of this harness, its finished children (wrk) and the running `servers`."""
    usages = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    harness_and_wrk = sum(usage.ru_utime + usage.ru_stime for usage in usages)
    return harness_and_wrk + sum(cpu_seconds(server.proc.pid) for server in servers)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(port: int, path: str, tls: ssl.SSLContext | None = None) -> tuple[int, str]:
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=tls)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


# --- a certificate for the TLS run --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 (ECDSA P-256, the usual choice for speed) that
    nginx and the gateway both serve, and `client` trusts."""

    cert: Path
    key: Path

    @property
    def client(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.cert)


def make_certificate(folder: Path) -> Certificate:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    paths = Certificate(folder / "bench-cert.pem", folder / "bench-key.pem")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    # nginx started by root reads it as root; its workers never need it.
    paths.key.chmod(0o600)
    return paths


# --- servers ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Server:
    """One started server: its process (a session leader, so pgid == pid), port and log."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path
    # Set for a server that answers over TLS on `port` (the context trusts its certificate).
    tls: ssl.SSLContext | None = None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it has not gone within STOP_TIMEOUT_S.

        Signalling the group rather than the pid means an nginx worker is never orphaned.
        """
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def wait_serving(self, path: str) -> None:
        """Poll GET `path` until it answers 200 with BODY; fail fast if the server exits."""
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with code {self.proc.returncode}")
            try:
                status, body = http_get(self.port, path, self.tls)
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"{self.name} did not answer on port {self.port}") from None
                time.sleep(0.02)
                continue
            if status != 200 or body != BODY:
                raise BenchError(f"{self.name} answered GET {path} with {status}: {body[:300]!r}")
            return


@contextlib.contextmanager
def serving(server: Server, core: int, path: str) -> Iterator[Server]:
    """Wait until `server` serves BODY, pin it to `core`, and stop it on the way out."""
    try:
        try:
            server.wait_serving(path)
        except BenchError as exc:
            raise BenchError(f"{exc}\nlog:\n{server.log_tail()}") from exc
        pin_tree(server.proc.pid, core)
        yield server
    finally:
        server.stop()


def nginx_temp_paths(nginx_v: str, prefix: Path) -> str:
    """temp_path directives for every compiled-in module, so nothing touches /var/lib/nginx.

    nginx creates each module's temp directory at startup, which fails for a non-root user when
    the compiled-in default is /var/lib/nginx; a module left out (`--without-http_X_module`)
    must not get the directive, or the config does not parse.
    """
    modules = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    return "\n".join(
        f"  {module}_temp_path {prefix / ('temp_' + module)};"
        for module in modules
        if f"--without-http_{module}_module" not in nginx_v
    )


def nginx_conf(
    prefix: Path,
    temp_paths: str,
    port: int,
    location: str,
    upstream: str = "",
    tls: Certificate | None = None,
) -> str:
    """A foreground, one-worker nginx whose pid, error log and temp files live in `prefix`;
    with `tls`, it listens with TLS (1.2 and 1.3, nginx's default ciphers) instead."""
    listen = f"127.0.0.1:{port}"
    if tls is not None:
        listen += (
            f" ssl;\n    ssl_certificate {tls.cert};\n    ssl_certificate_key {tls.key};\n"
            "    ssl_protocols TLSv1.2 TLSv1.3"
        )
    return f"""daemon off;
master_process on;
worker_processes 1;
pid {prefix / "nginx.pid"};
error_log {prefix / "error.log"} warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
{temp_paths}
  keepalive_requests 1000000;
  keepalive_timeout 75s;
{upstream}
  server {{
    listen {listen};
{location}
  }}
}}
"""


def upstream_conf(prefix: Path, temp_paths: str, port: int) -> str:
    location = f"    location / {{ default_type application/json; return 200 '{BODY}'; }}"
    return nginx_conf(prefix, temp_paths, port, location)


def proxy_conf(
    prefix: Path, temp_paths: str, port: int, upstream_port: int, tls: Certificate | None = None
) -> str:
    # The forwarding headers a production nginx in front of Rails sets, so nginx does work
    # comparable to the gateway's (X-Forwarded-*, traceparent, request id).
    upstream = f"""  upstream app {{
    server 127.0.0.1:{upstream_port};
    keepalive 64;
    keepalive_requests 1000000;
  }}"""
    location = """    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Request-Id $request_id;
    }"""
    return nginx_conf(prefix, temp_paths, port, location, upstream, tls)


def mirror_proxy_conf(
    prefix: Path, temp_paths: str, port: int, upstream_port: int, shadow_port: int
) -> str:
    """The nginx proxy of `proxy_conf`, plus nginx's own mirror: a copy of every request goes
    to the second upstream (`shadow_port`), whose answer nginx discards without comparing."""
    upstreams = f"""  upstream app {{
    server 127.0.0.1:{upstream_port};
    keepalive 64;
    keepalive_requests 1000000;
  }}
  upstream shadow {{
    server 127.0.0.1:{shadow_port};
    keepalive 64;
    keepalive_requests 1000000;
  }}"""
    headers = """      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Request-Id $request_id;"""
    locations = f"""    location / {{
      mirror /mirror;
      proxy_pass http://app;
{headers}
    }}
    location = /mirror {{
      internal;
      proxy_pass http://shadow$request_uri;
{headers}
    }}"""
    return nginx_conf(prefix, temp_paths, port, locations, upstreams)


def launch_nginx(
    lab: Lab, name: str, prefix: Path, conf_text: str, *, port: int, core: int
) -> Server:
    """Start nginx in the foreground (own session) on `core`; it is not serving yet."""
    conf, log_path = prefix / "nginx.conf", prefix / "error.log"
    conf.write_text(conf_text)
    # -e: nginx opens its error log before it reads the config, so point it into `prefix` too.
    argv = [lab.nginx, "-p", str(prefix), "-c", str(conf), "-e", str(log_path)]
    with (prefix / "stderr.log").open("wb") as stderr:
        proc = subprocess.Popen(
            lab.pinned(core, *argv),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    return Server(name, proc, port, log_path)


# --- the gateway -----------------------------------------------------------------------------


def gateway_yaml(
    *,
    port: int,
    upstream_port: int,
    routes_yaml: str,
    new_port: int | None = None,
    extra: str = "",
) -> str:
    """Both backends on `upstream_port`, unless `new_port` gives `new` an upstream of its own."""
    upstream = f"http://127.0.0.1:{upstream_port}"
    new = f"http://127.0.0.1:{new_port or upstream_port}"
    return (
        f"listen: 127.0.0.1:{port}\n"
        "backends:\n"
        f'  legacy: {{url: "{upstream}"}}\n'
        f'  new:    {{url: "{new}"}}\n'
        "default: legacy\n"
        # Several gateways run at once here; none needs the admin listener.
        "admin: {listen: null}\n" + extra + "routes:\n" + routes_yaml.rstrip("\n") + "\n"
    )


class OutputWatcher:
    """Reads a child's stdout in a thread: flags the readiness line, keeps the last lines.

    It reads until the child closes stdout, so a chatty gateway never blocks on a full pipe.
    """

    def __init__(self, proc: subprocess.Popen[bytes], ready_prefix: str) -> None:
        self.ready = threading.Event()
        self.tail: deque[str] = deque(maxlen=30)
        self._thread = threading.Thread(
            target=self._read, args=(proc, ready_prefix), name="gateway-stdout", daemon=True
        )
        self._thread.start()

    def _read(self, proc: subprocess.Popen[bytes], ready_prefix: str) -> None:
        assert proc.stdout is not None  # started with stdout=PIPE
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            if line.startswith(ready_prefix):
                self.ready.set()

    def wait_ready(self, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self.ready.wait(timeout=0.1):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError(
                    f"strangler did not print {GATEWAY_READY_PREFIX!r} (exit code {proc.poll()})"
                )


def launch_gateway(
    lab: Lab,
    port: int,
    upstream_port: int,
    routes_yaml: str,
    *,
    name: str = "strangler",
    new_port: int | None = None,
    extra: str = "",
    tls: tuple[int, Certificate] | None = None,
) -> Server:
    """Start `strangler run --workers 1` on the proxy core; returns once it says it listens.
    `extra` is YAML added to its config (top-level keys). With `tls` (a port and the
    certificate), it also serves HTTPS there, and the Server returned is that listener."""
    if tls is not None:
        tls_port, certificate = tls
        extra += (
            f"tls: {{listen: 127.0.0.1:{tls_port}, cert: {certificate.cert}, "
            f"key: {certificate.key}}}\n"
        )
    config = lab.workdir / f"{name}.yaml"
    text = gateway_yaml(
        port=port,
        upstream_port=upstream_port,
        routes_yaml=routes_yaml,
        new_port=new_port,
        extra=extra,
    )
    config.write_text(text)
    log_path = lab.workdir / f"{name}.stderr.log"
    argv = [sys.executable, "-m", "strangler", "run", "--config", str(config), "--workers", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the readiness line must not sit in a buffer
    with log_path.open("wb") as stderr:
        proc = subprocess.Popen(
            lab.pinned(lab.proxy_core, *argv),
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
    server = Server(name, proc, port, log_path)
    if tls is not None:
        server = Server(name, proc, tls[0], log_path, tls[1].client)
    watcher = OutputWatcher(proc, GATEWAY_READY_PREFIX)
    try:
        watcher.wait_ready(proc)
    except BenchError as exc:
        server.stop()
        stdout = "\n".join(watcher.tail)
        raise BenchError(f"{exc}\nstdout:\n{stdout}\nstderr:\n{server.log_tail()}") from exc
    # Compiled or pure Python: the same sources, a different cost per request.
    print(f"{name}: {hot_path_of(server)}")
    return server


def hot_path_of(server: Server) -> str:
    """What the gateway logged at startup about its hot path (compiled or pure Python)."""
    for line in server.log_path.read_text(errors="replace").splitlines():
        if "hot path" in line:
            return line[line.index("hot path") :]
    return "hot path not logged"
