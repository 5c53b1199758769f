"""Read the output of `bin/rails routes` into routes for the config (`strangler import-routes`).

Pure: text in, a RoutesImport out; no I/O. The same text always gives the same import.

Both layouts are read: the default table (`Prefix Verb URI Pattern Controller#Action`, columns
padded with spaces, Prefix right-aligned and empty for unnamed routes, Verb empty for
`match ... via: :all` and `mount`) and `--expanded` (`--[ Route N ]---` blocks of `Key | value`
lines). Each `Routes for Foo::Engine:` (`[ Routes for Foo::Engine ]`) section lists an engine's
routes relative to where it is mounted. Rules:

- Order is kept: Rails tries routes in order and so does the gateway. An engine's routes are
  put where its `mount` line is, once per mount point, with the mount path in front: that is
  where Rails dispatches to the engine. The mount line itself becomes no route.
- Adjacent rows that differ only in verb (a resource's PATCH and PUT) become one route,
  `"PATCH|PUT /projects/:id(.:format)"`; an empty Verb is `ANY`.
- Requirements printed after the action (`{:id=>/\\d+/}`, Ruby 3.4's `{id: /\\d+/}`) are
  recorded. The gateway matches by method and path pattern only, so every one of them is
  dropped, and each route says which in a note: every imported route is stage `legacy`, so a
  request the unconstrained pattern catches still goes to Rails, which applies the constraint
  itself (the same place it would reach unmatched). Skipping the route would lose its name for
  the day it moves; the note says to check the constraint before that day. Three kinds:
  a regex on a path param, `:format` included (`{:id=>/\\d+/}`, `format: /json/`); a request
  constraint on the host, which Rails' Mapper prints among the defaults when its value is a
  String or an Integer (`constraints: {subdomain: "api"}` prints `{:subdomain=>"api"}`); and a
  default (`{:format=>:json}`), which restricts nothing but is a value Rails fills in that the
  new backend will have to fill in too. Constraints `rails routes` does not print (a lambda,
  a regex on the host, `constraints(...) do` blocks) cannot be noted.
- Redirects (`redirect(301, /new)`) and Rack apps are imported with a note: legacy serves them.
  A mounted Rack app that is not an engine (empty Verb, no routes section) matches everything
  below its mount point, as Rails' `mount` does: `"ANY /status(/*mounted_path)"`.
- Rails' own routes are imported when users' requests reach them in production (Active Storage
  blobs and uploads, Action Mailbox ingresses, Turbo's `*_historical_location`); the
  development-only ones are skipped: `rails/info`, `rails/mailers`, `rails/welcome` and the
  Action Mailbox Conductor (its controllers refuse non-development requests).
- Names: `controller.action` (`projects#update` -> `projects.update`, `admin/users#index` ->
  `admin.users.index`) when unique in the import, as the config's own examples name routes.
  Rails prints a Prefix only on the first route of a name, and one controller#action can serve
  several routes (the same concern nested twice), so an ambiguous name becomes
  `<Rails route name>.<action>` (`project_task_comments.index`), taking the Prefix of the row
  above for an unnamed row with the same URI (as Rails' own helper name covers it), and then a
  numeric suffix. Engine routes start with the mount's name (`blog.posts.index`,
  `news.blog.posts.index`).
- Every match is checked with `parse_match`; a pattern it refuses is skipped with its error. A
  route an earlier imported route takes every request of (overlap.unreachable: possible once
  constraints are dropped, or when Rails told them apart by a constraint it does not print)
  is skipped, naming the earlier route: the first always wins, so it would never be used, and
  the config would refuse it.
- Anything else (warnings printed before the table, truncated rows) is skipped with its
  1-based line number and the reason.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from strangler.routing.overlap import unreachable
from strangler.routing.pattern import PatternError, RoutePattern, parse_match


class Layout(enum.Enum):
    """Which `bin/rails routes` output the text is."""

    TABLE = "table"
    EXPANDED = "expanded"


class RouteKind(enum.Enum):
    """What serves an imported route in the Rails app."""

    ACTION = "action"  # controller#action
    REDIRECT = "redirect"  # redirect(301, /new)
    RACK_APP = "rack_app"  # `to: SomeRackApp`, a lambda
    MOUNT = "mount"  # a mounted Rack app that is not an engine: every path below it


class RequirementKind(enum.Enum):
    """What one entry of the requirements hash does in Rails."""

    PATH_CONSTRAINT = "path_constraint"  # a regex a path param must match
    REQUEST_CONSTRAINT = "request_constraint"  # the host: subdomain, domain, host, protocol, port
    DEFAULT = "default"  # a value Rails fills in; restricts nothing


# ActionDispatch::Routing::Mapper::URL_OPTIONS: Mapping#initialize copies these from a route's
# `constraints:` hash into its defaults when the value is a String or an Integer, which is why
# `rails routes` prints them; as constraints they restrict the request's host, not its path.
_REQUEST_CONSTRAINT_KEYS = frozenset({"protocol", "subdomain", "domain", "host", "port"})


# Ruby Regexp#inspect: /source/flags. Only the flags Python has an equal of are read.
_RUBY_REGEX = re.compile(r"^/(?P<source>.*)/(?P<flags>[mix]*)$", re.DOTALL)
# Ruby syntax Python reads as something else (or refuses, which re.error catches anyway):
# `\h` hex digit, `\z` `\G` `\R` `\X` `\K`, `(?<name>` groups, `\k<name>`, POSIX brackets
# `[[:alpha:]]`, `\p{...}`. Such a constraint is "can't tell".
_RUBY_ONLY = re.compile(r"\\[hHzGRXK]|\(\?<[A-Za-z_]|\\k<|\[\[:|\\p\{")


def _python_regex(inspected: str) -> re.Pattern[str] | None:
    found = _RUBY_REGEX.match(inspected)
    if found is None or _RUBY_ONLY.search(found["source"]):
        return None
    flags = 0
    if "i" in found["flags"]:
        flags |= re.IGNORECASE
    if "x" in found["flags"]:
        flags |= re.VERBOSE
    # Ruby's /m is "dot matches newline", Python's DOTALL.
    if "m" in found["flags"]:
        flags |= re.DOTALL
    try:
        return re.compile(found["source"], flags)
    except re.error:
        return None


@dataclass(frozen=True, slots=True)
class Requirement:
    """One entry of the requirements hash: `value` is Ruby's inspect text (`/\\d+/`, `:json`)."""

    key: str
    value: str
    is_regex: bool

    @property
    def kind(self) -> RequirementKind:
        if self.is_regex:
            return RequirementKind.PATH_CONSTRAINT
        if self.key in _REQUEST_CONSTRAINT_KEYS:
            return RequirementKind.REQUEST_CONSTRAINT
        return RequirementKind.DEFAULT

    def accepts(self, value: str) -> bool | None:
        """Whether this path constraint lets a param's `value` through, as Rails tests it (the
        whole value must match); None when that can't be told: not a path constraint, or a Ruby
        regex Python reads differently (`\\h`, named groups: see _RUBY_ONLY)."""
        if self.kind is not RequirementKind.PATH_CONSTRAINT:
            return None
        compiled = _python_regex(self.value)
        return None if compiled is None else compiled.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ImportedRoute:
    """One route for the config. `lines` are the 1-based source lines it was read from."""

    name: str
    match: str
    kind: RouteKind
    target: str
    rails_name: str | None
    engine: str | None
    requirements: tuple[Requirement, ...]
    notes: tuple[str, ...]
    lines: tuple[int, ...]

    @property
    def constraints(self) -> tuple[Requirement, ...]:
        """The requirements that restrict, in Rails, which requests reach this route; the
        gateway enforces none of them, so the route takes more requests here than in Rails."""
        return tuple(r for r in self.requirements if r.kind is not RequirementKind.DEFAULT)


@dataclass(frozen=True, slots=True)
class SkippedLine:
    """A line (or route) that was not imported, and why."""

    line: int
    text: str
    reason: str


@dataclass(frozen=True, slots=True)
class RoutesImport:
    """The routes to add, in Rails' order, and everything skipped, in line order.

    `rows_read` counts the route rows found (imported or not): 0 means the text was not
    `bin/rails routes` output at all.
    """

    layout: Layout
    routes: tuple[ImportedRoute, ...]
    skipped: tuple[SkippedLine, ...]
    rows_read: int


# -- reading rows ------------------------------------------------------------------------------

_MAIN = ""  # the application's section; engine sections are named by their engine class
_HEADER = re.compile(r"^\s*Prefix\s+Verb\s+URI Pattern\s+Controller#Action\s*$")
_TABLE_SECTION = re.compile(r"^Routes for (?P<engine>\S+):$")
_EXPANDED_SECTION = re.compile(r"^\[ Routes for (?P<engine>\S+) \]$")
_EXPANDED_BLOCK = re.compile(r"^--\[ Route \d+ \]-*$")
_EXPANDED_FIELD = re.compile(r"^(?P<key>[A-Za-z#][A-Za-z# ]*?)\s*\| ?(?P<value>.*)$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERBS = re.compile(r"^[A-Z][A-Z-]*(?:\|[A-Z][A-Z-]*)*$")
_ACTION = re.compile(r"^(?P<controller>[A-Za-z0-9_/]+)#(?P<action>[A-Za-z0-9_!?]+)$")
_APP = re.compile(r"^[A-Z][A-Za-z0-9_]*(?:::[A-Z][A-Za-z0-9_]*)*$")
_INLINE_HANDLER = "Inline handler (Proc/Lambda)"
_MOUNT_GLOB = "*mounted_path"

# Controllers Rails only serves in development (or, for the Conductor, refuses elsewhere).
_DEVELOPMENT_ONLY = ("rails/info", "rails/mailers", "rails/welcome", "rails/conductor/")


@dataclass(frozen=True, slots=True)
class _Row:
    """One route as printed, before engines are placed and names chosen."""

    line: int
    section: str
    rails_name: str | None
    verb: str
    path: str
    target: str
    requirements: tuple[Requirement, ...]


@dataclass(slots=True)
class _Reader:
    rows: list[_Row] = field(default_factory=list)
    skipped: list[SkippedLine] = field(default_factory=list)
    sections: list[str] = field(default_factory=list)

    def skip(self, line: int, text: str, reason: str) -> None:
        self.skipped.append(SkippedLine(line, text.strip(), reason))

    def add(self, line: int, section: str, name: str, verb: str, path: str, reqs: str) -> None:
        target, requirements = _split_requirements(reqs.strip())
        self.rows.append(_Row(line, section, name or None, verb, path, target, requirements))


def _read_table(lines: Sequence[str], reader: _Reader) -> None:
    section = _MAIN
    seen_header = False
    for number, raw in enumerate(lines, start=1):
        text = raw.rstrip()
        if not text.strip():
            continue
        if _HEADER.match(text):
            seen_header = True
            continue
        found = _TABLE_SECTION.match(text)
        if found:
            section = found["engine"]
            reader.sections.append(section)
            continue
        tokens = text.split()
        path_at = next(
            (i for i, token in enumerate(tokens[:3]) if token.startswith(("/", "("))), None
        )
        if path_at is None:
            where = "before the table's header" if not seen_header else "in the table"
            reader.skip(number, text, f"not a route ({where}): no URI Pattern starting with '/'")
            continue
        name, verb = "", ""
        leading = tokens[:path_at]
        if len(leading) == 2:
            name, verb = leading
        elif len(leading) == 1:
            # A lone token is the Verb when it reads as one, else the Prefix (route names are
            # lowercase identifiers; verbs are uppercase).
            if _VERBS.match(leading[0]):
                verb = leading[0]
            else:
                name = leading[0]
        if (name and not _NAME.match(name)) or (verb and not _VERBS.match(verb)):
            reader.skip(number, text, "not a route: expected Prefix, Verb, URI Pattern, action")
            continue
        path = tokens[path_at]
        path_start = [found.start() for found in re.finditer(r"\S+", text)][path_at]
        rest = text[path_start + len(path) :]
        if not rest.strip():
            reader.skip(number, text, "truncated route: no Controller#Action after the URI")
            continue
        reader.add(number, section, name, verb, path, rest)


def _read_expanded(lines: Sequence[str], reader: _Reader) -> None:
    section = _MAIN
    block: dict[str, str] | None = None
    block_line = 0

    def flush() -> None:
        if block is None:
            return
        missing = [key for key in ("URI", "Controller#Action") if not block.get(key)]
        if missing:
            text = f"--[ Route ]-- {block}"
            reader.skip(block_line, text, f"route block without {' or '.join(missing)}")
            return
        verb = block.get("Verb", "")
        if verb and not _VERBS.match(verb):
            reader.skip(block_line, f"Verb | {verb}", f"not a verb: {verb!r}")
            return
        reader.add(
            block_line,
            section,
            block.get("Prefix", ""),
            verb,
            block["URI"],
            block["Controller#Action"],
        )

    for number, raw in enumerate(lines, start=1):
        text = raw.rstrip()
        if _EXPANDED_BLOCK.match(text):
            flush()
            block, block_line = {}, number
            continue
        found = _EXPANDED_SECTION.match(text)
        if found:
            flush()
            block = None
            section = found["engine"]
            reader.sections.append(section)
            continue
        if not text.strip():
            continue
        field_match = _EXPANDED_FIELD.match(text)
        if block is not None and field_match:
            # Unknown keys (Rails 7.1's `Source Location`) are read and ignored.
            block[field_match["key"].strip()] = field_match["value"].strip()
            continue
        reader.skip(number, text, "not a route: expected `--[ Route N ]--` or `Key | value`")
    flush()


# -- the requirements hash ---------------------------------------------------------------------


def _split_requirements(reqs: str) -> tuple[str, tuple[Requirement, ...]]:
    """`'projects#show {:id=>/\\d+/}'` -> ('projects#show', (Requirement('id', '/\\d+/'),)).

    The hash is the first ` {` from which the rest reads as a whole Ruby hash; a `{` inside the
    target (`redirect(302, /help/%{page})`) never does.
    """
    at = reqs.find(" {")
    while at >= 0:
        parsed = _parse_ruby_hash(reqs[at + 1 :])
        if parsed is not None:
            return reqs[:at].strip(), parsed
        at = reqs.find(" {", at + 1)
    return reqs, ()


_HASH_KEY = re.compile(
    r"""\s*(?::(?P<sym>[A-Za-z_]\w*[?!]?)\s*=>|"(?P<str>[^"\\]*)"\s*=>|(?P<new>[A-Za-z_]\w*[?!]?):\s)"""
)


def _parse_ruby_hash(text: str) -> tuple[Requirement, ...] | None:
    """Parse a Ruby Hash#inspect (`{:a=>1, :b=>/x/}` or 3.4's `{a: 1, b: /x/}`); None if not."""
    if not (text.startswith("{") and text.endswith("}")):
        return None
    out: list[Requirement] = []
    i = 1
    end = len(text) - 1
    while True:
        while i < end and text[i] == " ":
            i += 1
        if i == end:
            return tuple(out)
        key = _HASH_KEY.match(text, i)
        if key is None:
            return None
        name = key["sym"] or key["str"] or key["new"]
        i = key.end()
        while i < end and text[i] == " ":
            i += 1
        value_end = _scan_value(text, i, end)
        if value_end is None:
            return None
        value = text[i:value_end]
        out.append(Requirement(name, value, value.startswith("/")))
        i = value_end
        while i < end and text[i] == " ":
            i += 1
        if i == end:
            return tuple(out)
        if text[i] != ",":
            return None
        i += 1


def _scan_value(text: str, i: int, end: int) -> int | None:
    """The end of one Ruby inspect value starting at `i`: /regex/flags, "string", or a bare word."""
    if i >= end:
        return None
    opener = text[i]
    if opener in '/"':
        j = i + 1
        in_class = False
        while j < end:
            char = text[j]
            if char == "\\":
                j += 2
                continue
            if opener == "/" and char == "[":
                in_class = True
            elif opener == "/" and char == "]":
                in_class = False
            elif char == opener and not in_class:
                j += 1
                if opener == "/":
                    while j < end and text[j] in "mixounse":
                        j += 1
                return j
            j += 1
        return None
    j = i
    while j < end and text[j] not in ", ":
        j += 1
    return j if j > i else None


# -- turning rows into routes ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Placed:
    """A row placed at its final position: engine rows carry their mount chain."""

    row: _Row
    prefix: str  # mount paths joined, "" for the app's own routes
    mount_names: tuple[str, ...]
    verbs: tuple[str, ...]
    lines: tuple[int, ...]
    rails_name: str | None  # printed or carried from the row above with the same URI


def _join_path(prefix: str, path: str) -> str:
    if not prefix:
        return path
    if path == "/":
        return prefix
    return prefix.rstrip("/") + path


def _place(
    rows: Sequence[_Row], engines: set[str], reader: _Reader
) -> list[tuple[_Row, str, tuple[str, ...]]]:
    """Rows in dispatch order, each engine's rows expanded at every one of its mount lines."""
    by_section: dict[str, list[_Row]] = {}
    for row in rows:
        by_section.setdefault(row.section, []).append(row)
    out: list[tuple[_Row, str, tuple[str, ...]]] = []
    mounted: set[str] = set()

    def expand(section: str, prefix: str, names: tuple[str, ...], stack: tuple[str, ...]) -> None:
        for row in by_section.get(section, []):
            if row.target in engines and _is_app(row.target):
                if row.target in stack:
                    reader.skip(row.line, row.path, f"{row.target} is mounted inside itself")
                    continue
                mounted.add(row.target)
                mount_name = row.rails_name or row.target.split("::")[0].lower()
                expand(
                    row.target,
                    _join_path(prefix, row.path),
                    (*names, mount_name),
                    (*stack, row.target),
                )
            else:
                out.append((row, prefix, names))

    expand(_MAIN, "", (), ())
    for section in engines - mounted:
        for row in by_section.get(section, []):
            reader.skip(row.line, row.path, f"{section} is never mounted in the app's routes")
    return out


def _is_app(target: str) -> bool:
    """A Rack app as Rails prints it: a class name, an object's inspect, or a lambda."""
    return bool(_APP.match(target)) or target.startswith("#<") or target == _INLINE_HANDLER


def _kind(row: _Row) -> RouteKind | None:
    if _ACTION.match(row.target):
        return RouteKind.ACTION
    if row.target.startswith("redirect("):
        return RouteKind.REDIRECT
    if _is_app(row.target):
        # `mount` prints no verb; a lambda cannot be mounted, so it is a plain route.
        is_mount = not row.verb and row.target != _INLINE_HANDLER
        return RouteKind.MOUNT if is_mount else RouteKind.RACK_APP
    return None


def _merge_verbs(placed: list[tuple[_Row, str, tuple[str, ...]]]) -> list[_Placed]:
    """Adjacent rows with the same URI, target and requirements become one multi-verb route."""
    out: list[_Placed] = []
    carried: tuple[str, str] | None = None  # (rails name, full path) of the last named row
    for row, prefix, names in placed:
        path = _join_path(prefix, row.path)
        if row.rails_name is not None:
            carried = (row.rails_name, path)
            rails_name: str | None = row.rails_name
        else:
            rails_name = carried[0] if carried is not None and carried[1] == path else None
        if names and rails_name is not None:
            rails_name = f"{names[-1]}.{rails_name}"
        previous = out[-1] if out else None
        if (
            previous is not None
            and row.verb
            and previous.row.verb
            and previous.prefix == prefix
            and previous.row.path == row.path
            and previous.row.target == row.target
            and previous.row.requirements == row.requirements
            and row.verb not in previous.verbs
        ):
            out[-1] = _Placed(
                previous.row,
                prefix,
                names,
                (*previous.verbs, *row.verb.split("|")),
                (*previous.lines, row.line),
                previous.rails_name,
            )
            continue
        verbs = tuple(row.verb.split("|")) if row.verb else ()
        out.append(_Placed(row, prefix, names, verbs, (row.line,), rails_name))
    return out


def _engine_namespaces(rows: Sequence[_Row]) -> dict[str, str]:
    """An engine's namespace: the first controller path part all its routes share (`blog`)."""
    firsts: dict[str, set[str]] = {}
    for row in rows:
        found = _ACTION.match(row.target)
        if row.section != _MAIN and found is not None:
            first = found["controller"].split("/")[0] if "/" in found["controller"] else ""
            firsts.setdefault(row.section, set()).add(first)
    return {section: next(iter(found)) for section, found in firsts.items() if len(found) == 1}


def _base_name(item: _Placed, kind: RouteKind, namespaces: dict[str, str]) -> str:
    row = item.row
    if kind is RouteKind.ACTION:
        found = _ACTION.match(row.target)
        assert found is not None  # _kind said ACTION
        parts = [*found["controller"].split("/"), found["action"]]
        # An isolated engine's controllers all start with its namespace (blog/posts#index);
        # the mount names say where it is instead, so /blog and /news get blog.* and news.*.
        if item.mount_names and parts[0] == namespaces.get(row.section):
            parts = parts[1:]
    elif kind is RouteKind.REDIRECT:
        parts = ["redirect", *(_slug(row.rails_name, row.path))]
    else:
        parts = list(_slug(row.rails_name, row.path))
    return ".".join([*item.mount_names, *parts])


def _slug(rails_name: str | None, path: str) -> list[str]:
    if rails_name:
        return [rails_name]
    words = [
        re.sub(r"[^A-Za-z0-9_-]", "", part) for part in path.replace("(.:format)", "").split("/")
    ]
    return [word for word in words if word] or ["root"]


def _action_of(item: _Placed, kind: RouteKind) -> str:
    found = _ACTION.match(item.row.target) if kind is RouteKind.ACTION else None
    return (
        found["action"] if found is not None else (item.verbs[0].lower() if item.verbs else "any")
    )


def _choose_names(
    items: Sequence[tuple[_Placed, RouteKind]], namespaces: dict[str, str]
) -> list[str]:
    bases = [_base_name(item, kind, namespaces) for item, kind in items]
    counts: dict[str, int] = {}
    for base in bases:
        counts[base] = counts.get(base, 0) + 1
    # A base no other route shares is that route's name, whatever comes before it.
    taken = {base for base in bases if counts[base] == 1}
    names: list[str] = []
    for (item, kind), base in zip(items, bases, strict=True):
        if counts[base] == 1:
            names.append(base)
            continue
        wanted = base if item.rails_name is None else f"{item.rails_name}.{_action_of(item, kind)}"
        candidate, n = wanted, 1
        while candidate in taken:
            n += 1
            candidate = f"{wanted}.{n}"
        taken.add(candidate)
        names.append(candidate)
    return names


def _hash_text(requirements: Sequence[Requirement]) -> str:
    return "{" + ", ".join(f"{req.key}: {req.value}" for req in requirements) + "}"


def _notes(item: _Placed, kind: RouteKind) -> tuple[str, ...]:
    notes: list[str] = []
    row = item.row
    by_kind = {
        wanted: [req for req in row.requirements if req.kind is wanted]
        for wanted in RequirementKind
    }
    if by_kind[RequirementKind.PATH_CONSTRAINT]:
        notes.append(
            f"constraint {_hash_text(by_kind[RequirementKind.PATH_CONSTRAINT])} not enforced by "
            "the gateway; Rails applies it (check it before stage new)"
        )
    for req in by_kind[RequirementKind.REQUEST_CONSTRAINT]:
        notes.append(
            f"{req.key} constraint {req.value} not enforced: the gateway routes by method and "
            "path, for any host (check it before stage new)"
        )
    if by_kind[RequirementKind.DEFAULT]:
        notes.append(
            f"default {_hash_text(by_kind[RequirementKind.DEFAULT])} is set by Rails, not the "
            "gateway (the new backend must set it too)"
        )
    if kind is RouteKind.REDIRECT:
        notes.append(f"{row.target}: the redirect is answered by Rails")
    elif kind is RouteKind.MOUNT:
        notes.append(f"mounted Rack app {row.target}: matches every path below {row.path}")
    elif kind is RouteKind.RACK_APP:
        notes.append(f"served by the Rack app {row.target}, not a controller")
    return tuple(notes)


def _skip_reason(row: _Row) -> str | None:
    controller = row.target.split("#", 1)[0]
    for prefix in _DEVELOPMENT_ONLY:
        if controller == prefix.rstrip("/") or controller.startswith(prefix):
            return f"development-only Rails route ({row.target})"
    return None


def _hidden_reason(earlier: _Placed, earlier_match: str) -> str:
    constraints = [r for r in earlier.row.requirements if r.kind is not RequirementKind.DEFAULT]
    why = (
        f"Rails kept them apart by its constraint {_hash_text(constraints)}, which the gateway "
        "does not enforce"
        if constraints
        else "Rails keeps them apart only by a constraint `rails routes` does not print (a "
        "lambda, a host regex), if at all"
    )
    return (
        f"{earlier_match!r} (line {earlier.row.line}) comes first and takes all the same "
        f"requests, so this route would never be used ({why})"
    )


def parse_routes(text: str) -> RoutesImport:
    """Read `bin/rails routes` output (either layout) into routes and skipped lines."""
    lines = text.splitlines()
    layout = (
        Layout.EXPANDED
        if any(_EXPANDED_BLOCK.match(line.rstrip()) for line in lines)
        else Layout.TABLE
    )
    reader = _Reader()
    if layout is Layout.EXPANDED:
        _read_expanded(lines, reader)
    else:
        _read_table(lines, reader)

    engines = set(reader.sections)
    placed = _merge_verbs(_place(reader.rows, engines, reader))

    candidates: list[tuple[_Placed, RouteKind, str, RoutePattern]] = []
    for item in placed:
        row = item.row
        kind = _kind(row)
        shown = f"{'|'.join(item.verbs) or 'ANY'} {_join_path(item.prefix, row.path)}"
        if kind is None:
            reader.skip(row.line, shown, f"unrecognised Controller#Action {row.target!r}")
            continue
        reason = _skip_reason(row)
        if reason is not None:
            reader.skip(row.line, shown, reason)
            continue
        path = _join_path(item.prefix, row.path)
        if kind is RouteKind.MOUNT:
            # Rails' mount matches its path and everything below it, and nothing else.
            path = f"/({_MOUNT_GLOB})" if path == "/" else f"{path.rstrip('/')}(/{_MOUNT_GLOB})"
        match = f"{'|'.join(item.verbs) or 'ANY'} {path}"
        try:
            pattern = parse_match(match)
        except PatternError as exc:
            reader.skip(row.line, match, f"the gateway cannot match this pattern: {exc}")
            continue
        candidates.append((item, kind, match, pattern))

    hidden = dict(unreachable([pattern for *_, pattern in candidates]))
    kept: list[tuple[_Placed, RouteKind, str]] = []
    for index, (item, kind, match, _) in enumerate(candidates):
        if index in hidden:
            earlier, _, earlier_match, _ = candidates[hidden[index]]
            reader.skip(item.row.line, match, _hidden_reason(earlier, earlier_match))
        else:
            kept.append((item, kind, match))

    names = _choose_names([(item, kind) for item, kind, _ in kept], _engine_namespaces(reader.rows))
    routes = tuple(
        ImportedRoute(
            name=name,
            match=match,
            kind=kind,
            target=item.row.target,
            rails_name=item.rails_name,
            engine=item.row.section or None,
            requirements=item.row.requirements,
            notes=_notes(item, kind),
            lines=item.lines,
        )
        for (item, kind, match), name in zip(kept, names, strict=True)
    )
    skipped = tuple(sorted(reader.skipped, key=lambda s: s.line))
    return RoutesImport(layout, routes, skipped, rows_read=len(reader.rows))
