"""`strangler routes --match "GET /projects/new"`: which route takes a request, and why.

Rules:

- The request goes through what the gateway itself runs: the path is made canonical under the
  config's `path_policy` (a path the gateway refuses is reported as the 400 it gets), the query
  is cut off, and the snapshot's own route table picks the route. Nothing here re-implements
  matching; the explanations of misses only describe what the matcher decided.
- Every route before the winner (every route, when none matched) is listed with why it did not
  take the request: its verbs, the first path segment that differs, or, for HEAD, a route that
  names HEAD and so wins before HEAD is tried as GET.
- Routing reads the method and the path only: a host in an absolute-form target
  (`GET http://shop.example/x`) is shown and ignored, as the gateway ignores it for routing.

Exit codes: 0 when a route or the default backend takes the request (or the gateway refuses
its path), 2 when the request line cannot be read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, assert_never
from urllib.parse import urlsplit

import orjson
import typer

from strangler.errors import ClientProtocolError
from strangler.proxy.request_target import canonical_path
from strangler.routing.model import CanarySides, Decision, Stage
from strangler.routing.pattern import RoutePattern, Segment, TokenKind, fragment_regex
from strangler.runtime.snapshot import Snapshot

# A method token as the gateway reads it: case-sensitive (RFC 9110 §9.1), so `get` is not GET.
_METHOD = re.compile(r"^[A-Z][A-Z-]*$")
# shadow/mirror.py copies only these unless the route's shadow target is a sandbox.
_MIRRORED_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestLineError(ValueError):
    """The `--match` argument is not `METHOD /path[?query]` (or an absolute-form target)."""


@dataclass(frozen=True, slots=True)
class MatchRequest:
    """A request line as `--match` reads it; `path` is the raw path, before canonicalization."""

    method: str
    target: str
    path: str
    query: str | None
    host: str | None


def parse_request_line(line: str) -> MatchRequest:
    """`"GET /projects/new?page=2"` or `"GET http://host/path"`; raises RequestLineError."""
    words = line.split()
    if len(words) != 2:
        raise RequestLineError(
            f"expected METHOD and a path, e.g. 'GET /projects/new', got {line.strip()!r}"
        )
    method, target = words
    if not _METHOD.match(method):
        hint = f" (methods are case-sensitive: {method.upper()})" if method.isalpha() else ""
        raise RequestLineError(f"{method!r} is not an HTTP method{hint}")
    host: str | None = None
    if target.startswith(("http://", "https://")):
        parts = urlsplit(target)
        if not parts.netloc:
            raise RequestLineError(f"{target!r} names no host")
        host = parts.netloc
        # `http://host?next=/x` is the path "/" with its query, as the gateway reads it.
        rest = target[len(parts.scheme) + 3 + len(parts.netloc) :]
        target = rest if rest.startswith("/") else "/" + rest
    elif not target.startswith("/"):
        raise RequestLineError(f"{target!r} is not a path: it must start with '/'")
    cut = target.find("#")
    if cut >= 0:
        raise RequestLineError("a request target never carries a #fragment; leave it out")
    question = target.find("?")
    path = target if question < 0 else target[:question]
    query = None if question < 0 else target[question + 1 :]
    return MatchRequest(method, target, path, query, host)


def print_match(snapshot: Snapshot, request: str, *, as_json: bool) -> int:
    """Print which route of `snapshot` takes `request` and why; returns the exit code."""
    try:
        parsed = parse_request_line(request)
    except RequestLineError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 2
    report = explain(snapshot, parsed)
    if as_json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
    else:
        for line in _text(report):
            typer.echo(line)
    return 0


# -- the report --------------------------------------------------------------------------------


def explain(snapshot: Snapshot, request: MatchRequest) -> dict[str, Any]:
    """The whole answer as plain data: `--json` prints it as is, the text mode reads it."""
    report: dict[str, Any] = {
        "request": {
            "method": request.method,
            "target": request.target,
            "path": request.path,
            "query": request.query,
            "host": request.host,
        }
    }
    raw = request.path.encode("utf-8")
    try:
        canonical = canonical_path(raw, snapshot.config.path_policy)
    except ClientProtocolError as exc:
        report |= {
            "outcome": "refused",
            "refused": {"status": exc.status, "reason": exc.reason},
            "path_policy": str(snapshot.config.path_policy),
            "route": None,
            "backend": None,
            "tried": [],
        }
        return report
    # The server hands the table the path's bytes as latin-1, so a multi-byte character is
    # matched byte for byte, as it is on the wire.
    path = canonical.decode("latin-1")
    table = snapshot.table
    found = table.matcher.match_params(request.method, path)
    winner = None if found is None else found[0]
    heads_first = _explicit_head_winner(table.patterns, winner, request.method)
    before = table.patterns if winner is None else table.patterns[:winner]
    tried = [
        _miss(index, table.routes[index].name, pattern, request.method, path, heads_first)
        for index, pattern in enumerate(before)
    ]
    report["path"] = path
    report["tried"] = tried
    if found is None:
        decision = table.unmatched
        report |= {
            "outcome": "default",
            "route": None,
            "backend": decision.backend,
            "why": "no route matches; the default backend answers",
        }
        return report
    index, params = found
    spec = table.routes[index]
    decision = table.decisions[index]
    pattern = table.patterns[index]
    is_head_as_get = request.method == "HEAD" and (
        pattern.verbs is None or "HEAD" not in pattern.verbs
    )
    why = "the first route, in file order, whose method and path match"
    if is_head_as_get:
        why += "; HEAD is tried as GET because no route naming HEAD matches"
    report |= {
        "outcome": "route",
        "route": {
            "number": index + 1,
            "name": spec.name,
            "match": spec.match,
            "params": params,
            "stage": decision.stage.value if decision.stage is not None else None,
            "reason": decision.reason.value,
            **_serving(decision, request.method),
        },
        "backend": decision.backend,
        "why": why,
    }
    return report


def canary_json(sides: CanarySides) -> dict[str, Any]:
    """A canary route's plan and sides, as `routes --json` and `routes --match` show them."""
    plan = sides.plan
    return {
        "group": plan.group,
        "weight": plan.weight,
        "new_backend": sides.new.backend,
        "legacy_backend": sides.legacy.backend,
        "stickiness": [str(source) for source in plan.stickiness],
        "segments": [segment.name for segment in plan.segments],
        "shadow_backend": sides.legacy.shadow_backend,
    }


def _serving(decision: Decision, method: str) -> dict[str, Any]:
    """Who answers, and what else happens to the request, by the route's stage."""
    out: dict[str, Any] = {"backend": decision.backend}
    if decision.stage is Stage.SHADOW and decision.shadow_backend is not None:
        is_copied = method in _MIRRORED_METHODS or decision.mirrors_unsafe
        out["shadow"] = {"backend": decision.shadow_backend, "is_copied": is_copied}
    if decision.canary is not None:
        out["canary"] = canary_json(decision.canary)
    return out


def _explicit_head_winner(
    patterns: tuple[RoutePattern, ...], winner: int | None, method: str
) -> int | None:
    """The winner when it won HEAD's first phase (it names HEAD), else None.

    Routes before it that take HEAD only as GET lost for that reason alone (matcher.py: HEAD is
    tried as GET only when no route naming HEAD matches).
    """
    if method != "HEAD" or winner is None:
        return None
    verbs = patterns[winner].verbs
    return winner if verbs is not None and "HEAD" in verbs else None


def _miss(
    index: int,
    name: str,
    pattern: RoutePattern,
    method: str,
    path: str,
    heads_first: int | None,
) -> dict[str, Any]:
    method_reason = _method_reason(pattern, method, heads_first)
    is_path_ok = pattern.capture(path) is not None
    path_reason = None if is_path_ok else _path_reason(pattern, path)
    reasons = [r for r in (method_reason, path_reason) if r is not None]
    return {
        "number": index + 1,
        "name": name,
        "match": f"{_verbs_text(pattern)} {pattern.path}",
        "method_ok": method_reason is None,
        "path_ok": is_path_ok,
        "reason": "; ".join(reasons) or "matches, but an earlier route won",
        "segments_matched": _depth(pattern, path),
    }


def _verbs_text(pattern: RoutePattern) -> str:
    return "ANY" if pattern.verbs is None else "|".join(sorted(pattern.verbs))


def _method_reason(pattern: RoutePattern, method: str, heads_first: int | None) -> str | None:
    verbs = pattern.verbs
    if method == "HEAD":
        if verbs is not None and "HEAD" in verbs:
            return None
        if verbs is None or "GET" in verbs:
            if heads_first is None:
                return None
            return (
                f"HEAD is tried as GET only when no route naming HEAD matches, "
                f"and #{heads_first + 1} names HEAD"
            )
        return f"method HEAD is not {_verbs_text(pattern)} (nor GET, which HEAD falls back to)"
    if verbs is None or method in verbs:
        return None
    return f"method {method} is not {_verbs_text(pattern)}"


def _segment_text(segment: Segment) -> str:
    parts: list[str] = []
    for token in segment:
        match token.kind:
            case TokenKind.LITERAL:
                parts.append(token.text)
            case TokenKind.PARAM:
                parts.append(f":{token.text}")
            case TokenKind.GLOB:
                parts.append(f"*{token.text}")
            case _:
                assert_never(token.kind)
    return "".join(parts)


def _request_segments(path: str) -> list[str]:
    # The matcher ignores one trailing slash and reads "/" as no segment at all.
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    return [] if path == "/" else path[1:].split("/")


def _walk(alternative: tuple[Segment, ...], segments: list[str]) -> tuple[int, str | None]:
    """How many segments of one alternative fit, and why the next does not (None: all fit)."""
    for k, segment in enumerate(alternative):
        if any(token.kind is TokenKind.GLOB for token in segment):
            rest = "/".join(segments[k:])
            shown = "/".join(_segment_text(s) for s in alternative[k:])
            if re.fullmatch(fragment_regex(alternative[k:]), rest, re.DOTALL):
                return len(segments), None
            if not rest:
                return k, f"the path ends before `/{shown}` (a glob needs a character)"
            return k, f"`{rest}` does not fit `{shown}`"
        if k >= len(segments):
            return k, f"the path ends before `/{_segment_text(segment)}`"
        text = segments[k]
        if re.fullmatch(fragment_regex((segment,)), text):
            continue
        return k, _segment_reason(k + 1, text, segment)
    if len(segments) > len(alternative):
        extra = "/".join(segments[len(alternative) :])
        return len(alternative), f"the path goes on after the pattern ends (`/{extra}`)"
    return len(alternative), None


def _segment_reason(number: int, text: str, segment: Segment) -> str:
    shown = _segment_text(segment)
    if len(segment) == 1 and segment[0].kind is TokenKind.LITERAL:
        return f"segment {number} is `{text}`, not `{shown}`"
    if not text:
        return f"segment {number} is empty; `{shown}` needs a character"
    if len(segment) == 1 and "." in text:
        return f"segment {number} `{text}` has a `.`, which `{shown}` never matches"
    return f"segment {number} `{text}` does not fit `{shown}`"


def _path_reason(pattern: RoutePattern, path: str) -> str:
    """Why the path misses: the alternative that fits furthest, at its first misfit."""
    segments = _request_segments(path)
    best_depth, best_reason = -1, "the path does not match"
    for alternative in pattern.alternatives:
        depth, reason = _walk(alternative, segments)
        if reason is not None and depth > best_depth:
            best_depth, best_reason = depth, reason
    return f"path: {best_reason}"


def _depth(pattern: RoutePattern, path: str) -> int:
    segments = _request_segments(path)
    return max(_walk(alternative, segments)[0] for alternative in pattern.alternatives)


# -- text --------------------------------------------------------------------------------------

# A long table lists only the routes that came close; the rest are counted. JSON lists them all.
_MAX_MISSES_SHOWN = 30


def _text(report: dict[str, Any]) -> list[str]:
    request = report["request"]
    lines = [f"{request['method']} {request['target']}"]
    if request["host"] is not None:
        lines.append(f"  host {request['host']}: not used for routing (method and path only)")
    if report["outcome"] == "refused":
        refused = report["refused"]
        lines.append(
            f"-> refused with {refused['status']} before routing (path_policy "
            f"{report['path_policy']}): {refused['reason']}"
        )
        return lines
    if report["path"] != request["path"]:
        lines.append(f"  routed as {report['path']} (path_policy normalize)")
    route = report["route"]
    if route is None:
        lines.append(f"-> no route matches: the default backend `{report['backend']}` answers")
    else:
        lines += _route_lines(route, report["why"])
    tried = report["tried"]
    if not tried:
        return lines
    lines.append("")
    lines.append("Tried first, in file order:" if route is not None else "Routes tried:")
    shown = tried
    if len(tried) > _MAX_MISSES_SHOWN:
        shown = [t for t in tried if t["path_ok"] or t["segments_matched"] > 0]
    width = max(len(f"#{t['number']} {t['name']}  {t['match']}") for t in shown) if shown else 0
    for miss in shown:
        head = f"#{miss['number']} {miss['name']}  {miss['match']}"
        lines.append(f"  {head.ljust(width)}  {miss['reason']}")
    hidden = len(tried) - len(shown)
    if hidden:
        lines.append(
            f"  ... and {hidden} more whose first path segment differs (--json lists them)"
        )
    return lines


def _route_lines(route: dict[str, Any], why: str) -> list[str]:
    lines = [f"-> route #{route['number']} {route['name']}: {route['match']}", f"   {why}"]
    params = route["params"]
    if params:
        lines.append("   params: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    lines.append(f"   stage {route['stage']}: backend `{route['backend']}` answers")
    shadow = route.get("shadow")
    if shadow is not None:
        copied = "a copy goes to" if shadow["is_copied"] else "no copy (unsafe method) to"
        lines.append(f"   shadow: {copied} `{shadow['backend']}`, diffed against the answer")
    canary = route.get("canary")
    if canary is not None:
        sticky = ", ".join(canary["stickiness"]) or "nothing"
        lines.append(
            f"   canary: {canary['weight']:g}% of users to `{canary['new_backend']}`, the rest to "
            f"`{canary['legacy_backend']}` (group {canary['group']}, sticky by {sticky})"
        )
        if canary["segments"]:
            lines.append(f"   canary segments: {', '.join(canary['segments'])}")
    return lines
