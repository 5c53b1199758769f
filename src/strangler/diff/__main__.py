"""`python -m strangler.diff`: compare the pairs read on stdin, one at a time, and write each
comparison on stdout (frames of diff/wire.py). A worker's helper process (shadow/offload.py).

The only I/O in the diff package, and nothing imports it: it is the process's entry point.

Rules:
- Exits when stdin closes: the worker closed it, or died.
- Ignores SIGINT: a Ctrl-C in a terminal reaches the whole process group, and the worker, which
  drains first, decides when its helper stops.
- A comparison that raises is logged on stderr (the worker's log) and answered as failed; the
  helper goes on with the next pair.
"""

from __future__ import annotations

import signal
import sys
import traceback
from typing import BinaryIO

from strangler.diff.compare import compare_responses
from strangler.diff.model import Comparison
from strangler.diff.rules import DiffRules
from strangler.diff.wire import REQUEST_HEAD, decode_rules, decode_samples, encode_comparison

# Distinct rule sets kept compiled: one per shadowed route, and a new one per config reload.
_MAX_CACHED_RULES = 64


def serve(stdin: BinaryIO, stdout: BinaryIO) -> None:
    """Answer every request frame on `stdin` until it ends."""
    cached: dict[bytes, DiffRules] = {}
    while True:
        head = stdin.read(REQUEST_HEAD.size)
        if len(head) < REQUEST_HEAD.size:
            return
        lengths = REQUEST_HEAD.unpack(head)
        parts = [stdin.read(length) for length in lengths]
        if any(len(part) < length for part, length in zip(parts, lengths, strict=True)):
            return
        rules_bytes, heads, primary_body, shadow_body = parts
        comparison: Comparison | None
        try:
            rules = cached.get(rules_bytes)
            if rules is None:
                if len(cached) >= _MAX_CACHED_RULES:
                    cached.clear()
                rules = cached[rules_bytes] = decode_rules(rules_bytes)
            primary, shadow, max_decoded_bytes = decode_samples(heads, primary_body, shadow_body)
            comparison = compare_responses(
                primary, shadow, rules, max_decoded_bytes=max_decoded_bytes
            )
        except Exception:
            traceback.print_exc(file=sys.stderr)
            comparison = None
        stdout.write(encode_comparison(comparison))
        stdout.flush()


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
