"""Instructions the gateway executes per proxied request, counted by callgrind: a figure that
does not move with the machine's load, for comparing two versions of the hot path.

Starts a plain upstream (http.server, in this process) and one gateway worker under
`valgrind --tool=callgrind` with instrumentation off, sends a warm-up burst, then counts only
the measured burst (`callgrind_control -i on/off`). Prints instructions per request; with
`--tree DIR` it measures another checkout (its `src/` and `.venv/`), so a change can be
compared with main in one sitting:

    .venv/bin/python bench/instructions_per_request.py
    .venv/bin/python bench/instructions_per_request.py --tree /tmp/main-clone

Needs valgrind (Debian: `apt-get install -y valgrind`). Under callgrind the gateway runs ~50x
slower; 2,000 requests take about a minute.

The count includes what the gateway process does by the clock while the burst runs: the
worker's sweeper, the control plane's polls and store flushes (SQLAlchemy, in threads). Under
callgrind that work is stretched over a minute, so it is a large share of the figure, and it
grows when the machine is loaded. `--idle` counts a second gateway sitting idle for as long as
the burst took and also prints the difference: the request path alone.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BODY = b'{"id":42,"type":"project","attributes":{"name":"Strangler benchmark"}}' * 3
PATH = "/api/v1/lessons/42.json"
READY = "listening on"


class _Upstream(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        return


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _burst(port: int, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(count):
        conn.request("GET", PATH, headers={"User-Agent": "bench", "Accept": "*/*"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"the gateway answered {response.status}")
    conn.close()


def measure(
    tree: Path, requests: int, folder: Path, extra: str = "", idle_s: float | None = None
) -> tuple[int, float]:
    """(instructions counted, seconds the counting lasted): over a burst of `requests`, or over
    `idle_s` seconds without any request when it is given."""
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    port = _free_port()
    url = f"http://127.0.0.1:{upstream.server_address[1]}"
    config = folder / "strangler.yaml"
    config.write_text(
        f"listen: 127.0.0.1:{port}\n"
        f"backends:\n  legacy: {{url: {url!r}}}\n  new: {{url: {url!r}}}\n"
        f"admin: {{listen: null}}\nstore: {{path: {folder / 'store.db'}}}\n"
        + extra.replace("{folder}", str(folder))
        + "\nroutes:\n"
        "  - {name: lessons.show, match: 'GET /api/v1/lessons/:id(.:format)', stage: legacy}\n",
        encoding="utf-8",
    )
    out = folder / "callgrind.out"
    gateway = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",
            f"--callgrind-out-file={out}",
            str(tree / ".venv" / "bin" / "python"),
            "-m",
            "strangler",
            "run",
            "--config",
            str(config),
        ],
        env={**os.environ, "PYTHONPATH": str(tree / "src")},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert gateway.stdout is not None
        seen: list[str] = []
        for line in gateway.stdout:
            seen.append(line)
            if READY in line:
                break
        else:
            raise SystemExit("the gateway did not start:\n" + "".join(seen))
        threading.Thread(target=gateway.stdout.read, daemon=True).start()
        _burst(port, 300)
        control = ["callgrind_control", "-i"]
        subprocess.run([*control, "on", str(gateway.pid)], check=True, capture_output=True)
        started = time.monotonic()
        if idle_s is None:
            _burst(port, requests)
        else:
            time.sleep(idle_s)
        seconds = time.monotonic() - started
        subprocess.run([*control, "off", str(gateway.pid)], check=True, capture_output=True)
    finally:
        gateway.terminate()
        gateway.wait(60)
        upstream.shutdown()
    # The file's summary line comes first, its totals line (what the dump counted) last.
    totals = [
        int(line.split()[1])
        for line in out.read_text().splitlines()
        if line.startswith(("summary:", "totals:"))
    ]
    if not totals:
        raise SystemExit(f"no totals in {out}")
    return max(totals), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--extra",
        default="",
        help="YAML added to the gateway's config, e.g. 'metrics: {enabled: false}' "
        "({folder} is the run's temp folder)",
    )
    parser.add_argument(
        "--keep", type=Path, help="copy callgrind's output here (for callgrind_annotate)"
    )
    parser.add_argument(
        "--idle",
        action="store_true",
        help="also count an idle gateway for as long as the burst took, and print the request "
        "path alone (the difference)",
    )
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            print(f"{tool} not found (Debian: apt-get install -y valgrind)", file=sys.stderr)
            raise SystemExit(2)
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(prefix="strangler-ipr-") as folder:
        total, seconds = measure(tree, args.requests, Path(folder), args.extra)
        if args.keep is not None:
            shutil.copy(Path(folder) / "callgrind.out", args.keep)
    per_request = total // args.requests
    print(f"{args.tree}: {per_request:,} instructions per request ({args.requests:,} requests)")
    if args.idle:
        with tempfile.TemporaryDirectory(prefix="strangler-ipr-") as folder:
            idle, _ = measure(tree, args.requests, Path(folder), args.extra, idle_s=seconds)
        print(
            f"  idle gateway over the same {seconds:.0f} s: {idle // args.requests:,} per request;"
            f" request path alone: {(total - idle) // args.requests:,} instructions per request"
        )


if __name__ == "__main__":
    main()
