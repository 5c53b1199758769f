"""Config errors a user can act on: every problem of the file at once, sorted by line, each
with its key path; the likely slips (a bare port, a URL without a scheme, `{id}`, a misspelt
key, a key given twice) named as such; and a file with no new backend yet accepted."""

from __future__ import annotations

import textwrap

import pytest

from strangler.config import parse_config
from strangler.errors import ConfigError


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), "s.yaml")
    return [(p.line, p.field, p.message) for p in caught.value.problems]


def test_every_problem_is_reported_at_once_sorted_by_line() -> None:
    problems = _problems(
        """\
        routes:
          - name: a
            match: GET /projects/{id}
          - name: b
            match: GET /b
            stage: bogus
        backends:
          legacy: {url: "http://127.0.0.1:3000", conect_timeout_s: 2}
        listen: 8100
        """
    )
    assert [(line, field) for line, field, _ in problems] == [
        (3, "routes[0].match"),
        (6, "routes[1].stage"),
        (8, "backends.legacy.conect_timeout_s"),
        (9, "listen"),
    ]


def test_the_printed_error_has_one_line_per_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(
            "listen: 8100\nbackend: {}\nbackends: {legacy: {url: 'http://x:1'}}\n", "s.yaml"
        )
    assert f"error: {caught.value}".splitlines() == [
        "error: s.yaml:1: listen: expected host:port, not a port alone: `127.0.0.1:8100` "
        "(this machine only) or `0.0.0.0:8100` (every interface)",
        "error: s.yaml:2: backend: unknown key; did you mean `backends`?",
    ]


@pytest.mark.parametrize(
    ("text", "field", "message"),
    [
        pytest.param(
            "backends: {legacy: {url: 'http://x:1'}}\nrouts: []\n",
            "routs",
            "unknown key; did you mean `routes`?",
            id="top-level",
        ),
        pytest.param(
            "backends: {legacy: {url: 'http://x:1', read_timout_s: 3}}\n",
            "backends.legacy.read_timout_s",
            "unknown key; did you mean `read_timeout_s`?",
            id="in-a-dict-value",
        ),
        pytest.param(
            "backends: {legacy: {url: 'http://x:1'}}\n"
            "routes: [{name: a, match: GET /a, shadow: {wirtes: sandbox}}]\n",
            "routes[0].shadow.wirtes",
            "unknown key; did you mean `writes`?",
            id="in-a-list-item",
        ),
        pytest.param(
            "backends: {legacy: {url: 'http://x:1'}}\nadmin: {zzz: 1}\n",
            "admin.zzz",
            "unknown key; the keys here are: listen, users, session_ttl_s, "
            "login_attempts_per_minute, metrics_public",
            id="nothing-close",
        ),
    ],
)
def test_an_unknown_key_names_the_closest_known_one(text: str, field: str, message: str) -> None:
    assert [(f, m) for _, f, m in _problems(text)] == [(field, message)]


@pytest.mark.parametrize(
    ("match", "message"),
    [
        ("GET /projects/{id}", "`{id}` is not a Rails pattern: Rails patterns use `:id`"),
        ("GET /projects/<id>/edit", "`<id>` is not a Rails pattern: Rails patterns use `:id`"),
        ("GET /a{b", "character '{' cannot appear in a path (Rails patterns use `:name`)"),
    ],
)
def test_placeholders_of_other_frameworks_are_refused(match: str, message: str) -> None:
    ((_, field, text),) = _problems(
        f"backends: {{legacy: {{url: 'http://x:1'}}}}\nroutes: [{{name: a, match: '{match}'}}]\n"
    )
    assert field == "routes[0].match"
    assert text.startswith(message)


def test_duplicate_keys_anywhere_are_refused_naming_both_lines() -> None:
    problems = _problems(
        """\
        backends:
          legacy: {url: "http://127.0.0.1:3000"}
          legacy: {url: "http://127.0.0.1:3001"}
        routes:
          - name: a
            match: GET /a
            stage: legacy
            stage: legacy
        """
    )
    assert problems == [
        (
            3,
            "backends.legacy",
            "duplicate key: already given on line 2, and YAML would silently keep only this one",
        ),
        (
            8,
            "routes[0].stage",
            "duplicate key: already given on line 7, and YAML would silently keep only this one",
        ),
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:3000", "expected a URL with a scheme, e.g. http://127.0.0.1:3000"),
        ("localhost:3000", "expected a URL with a scheme, e.g. http://localhost:3000"),
        (
            "https://x:3000/a//b",
            "the path prefix '/a//b' may hold only unreserved characters, `%XX` escapes and single "
            "slashes (it is prepended to every forwarded path as written) (got 'https://x:3000/a//b')",
        ),
        (
            "http://x:3000/v2/../admin",
            "the path prefix '/v2/../admin' may hold only unreserved characters, `%XX` escapes and "
            "single slashes (it is prepended to every forwarded path as written) "
            "(got 'http://x:3000/v2/../admin')",
        ),
        ("ftp://x:3000", "expected an http:// or https:// URL, not ftp:// (got 'ftp://x:3000')"),
    ],
)
def test_a_backend_url_says_what_is_wrong_with_it(url: str, message: str) -> None:
    ((_, field, text),) = _problems(f"backends: {{legacy: {{url: '{url}'}}}}\n")
    assert (field, text) == ("backends.legacy.url", message)


@pytest.mark.parametrize("value", ["8100", "'8100'", "':8100'"])
@pytest.mark.parametrize("key", ["listen", "admin.listen"])
def test_a_bare_port_gets_the_address_to_write(key: str, value: str) -> None:
    line = f"listen: {value}" if key == "listen" else f"admin: {{listen: {value}}}"
    ((_, field, text),) = _problems(f"backends: {{legacy: {{url: 'http://x:1'}}}}\n{line}\n")
    assert field == key
    assert "`127.0.0.1:8100` (this machine only) or `0.0.0.0:8100`" in text


def test_every_stage_is_offered_as_a_choice() -> None:
    ((_, _, bogus),) = _problems(
        "backends: {legacy: {url: 'http://x:1'}}\nroutes: [{name: a, match: GET /a, stage: x}]\n"
    )
    assert bogus == "expected one of: legacy, shadow, canary, new, retired (got 'x')"


def test_a_facade_in_front_of_legacy_only_is_a_valid_config() -> None:
    config = parse_config(
        "backends: {legacy: {url: 'http://x:1'}}\nroutes: [{name: a, match: GET /a}]\n", "s.yaml"
    )
    assert config.new_backend is None
    assert config.new_side_backend == ""
    assert config.backend_for(config.routes[0]) == "legacy"
    explicit = parse_config("backends: {legacy: {url: 'http://x:1'}}\nnew_backend: null\n", "s")
    assert explicit.new_backend is None


@pytest.mark.parametrize("stage", ["shadow", "canary", "new"])
def test_a_route_that_needs_the_new_backend_names_itself_when_there_is_none(stage: str) -> None:
    ((line, field, text),) = _problems(
        f"""\
        backends:
          legacy: {{url: "http://x:1"}}
        routes:
          - {{name: a, match: GET /a}}
          - {{name: projects.show, match: GET /b, stage: {stage}}}
        """
    )
    assert (line, field) == (5, "routes[1].stage")
    assert text.startswith(f"stage {stage} sends requests of route 'projects.show' to the new")
    assert "add a backend named `new`" in text


def test_a_new_backend_the_user_named_must_exist() -> None:
    ((_, field, text),) = _problems("backends: {legacy: {url: 'http://x:1'}}\nnew_backend: next\n")
    assert (field, text) == (
        "new_backend",
        "names backend 'next', which is not in backends (legacy)",
    )


def test_legacy_named_as_new_is_never_counted_as_new() -> None:
    # The old workaround for a legacy-only file: its answers are legacy's, not new's.
    config = parse_config("backends: {legacy: {url: 'http://x:1'}}\nnew_backend: legacy\n", "s")
    assert config.new_side_backend == ""


def test_cross_reference_problems_are_all_reported() -> None:
    problems = _problems(
        """\
        backends:
          legacy: {url: "http://x:1"}
          new: {url: "http://x:2"}
        routes:
          - {name: a, match: GET /a, backend: nope}
          - {name: a, match: GET /b, shadow: {backend: gone}}
        """
    )
    assert [(line, field) for line, field, _ in problems] == [
        (5, "routes[0].backend"),
        (6, "routes[1].shadow.backend"),
        (6, "routes[1].name"),
    ]


def test_a_route_an_earlier_one_takes_whole_is_refused_naming_both() -> None:
    problems = _problems(
        """\
        backends:
          legacy: {url: "http://x:1"}
        routes:
          - {name: projects.show, match: "GET /projects/:id"}
          - {name: projects.new, match: "GET /projects/new"}
          - {name: projects.edit, match: "GET /projects/:id/edit"}
          - {name: everything, match: "ANY /*path"}
          - {name: late, match: "POST /x"}
        """
    )
    assert problems == [
        (
            5,
            "routes[1].match",
            "can never match: routes[0] (projects.show, 'GET /projects/:id') comes first and "
            "takes every request of route 'projects.new'; move this route above it, or narrow "
            "that one",
        ),
        (
            8,
            "routes[4].match",
            "can never match: routes[3] (everything, 'ANY /*path') comes first and takes every "
            "request of route 'late'; move this route above it, or narrow that one",
        ),
    ]


def test_routes_that_only_share_some_requests_are_fine() -> None:
    config = parse_config(
        textwrap.dedent(
            """\
            backends: {legacy: {url: "http://x:1"}}
            routes:
              - {name: projects.new, match: "GET /projects/new"}
              - {name: projects.show, match: "GET /projects/:id(.:format)"}
              - {name: writes, match: "POST|PATCH /projects/:id"}
              - {name: rest, match: "ANY /*path"}
            """
        ),
        "s.yaml",
    )
    assert [route.name for route in config.routes] == [
        "projects.new", "projects.show", "writes", "rest"]  # fmt: skip


@pytest.mark.parametrize(
    ("gate", "field", "message"),
    [
        ("{url: 'ftp://x/confirm'}", "url", "expected an http:// or https:// URL"),
        ("{url: 'x/confirm'}", "url", "expected an http:// or https:// URL"),
        ("{url: 'http://x/confirm', timeout_s: 0}", "timeout_s", "greater than 0"),
        ("{url: 'http://x/confirm', secret: s}", "secret", "secret_env"),
    ],
)
def test_a_confirm_gate_says_what_is_wrong_with_it(gate: str, field: str, message: str) -> None:
    text = f"""\
        backends: {{legacy: {{url: 'http://x:1'}}, new: {{url: 'http://x:2'}}}}
        routes:
          - name: api
            match: "GET /api"
            stage: canary
            canary: {{plan: {{gates: [{gate}]}}}}
        """
    ((line, where, problem),) = _problems(text)
    assert (line, where) == (6, f"routes[0].canary.plan.gates[0].{field}")
    assert message in problem


def test_a_plan_has_no_gates_unless_given() -> None:
    config = parse_config(
        "backends: {legacy: {url: 'http://x:1'}, new: {url: 'http://x:2'}}\n"
        "routes: [{name: api, match: 'GET /api', stage: canary,"
        " canary: {plan: {gates: [{url: 'https://ci.example/confirm'}]}}},"
        " {name: home, match: 'GET /', stage: canary, canary: {plan: {}}}]\n",
        "s.yaml",
    )
    [gate] = config.routes[0].canary.plan.gates
    assert (gate.url, gate.timeout_s, gate.secret_env) == ("https://ci.example/confirm", 5.0, None)
    assert config.routes[1].canary.plan.gates == []


@pytest.mark.parametrize(
    ("faults", "field", "message"),
    [
        ("{side: new}", "routes[0].faults", "names no fault: give `abort`, `delay` or both"),
        ("{abort: {percent: 101}}", "routes[0].faults.abort.percent", "less than or equal to 100"),
        ("{abort: {percent: 5, status: 302}}", "routes[0].faults.abort.status", "greater than"),
        ("{delay: {percent: 5, ms: 0}}", "routes[0].faults.delay.ms", "greater than or equal"),
        ("{abort: {percent: 5}, side: old}", "routes[0].faults.side", "'new', 'legacy' or 'both'"),
        (
            "{abort: {percent: 5}, only_when_header: X-Strangler-Fault}",
            "routes[0].faults.only_when_header",
            "would never be honoured: nobody is trusted to ask for a fault",
        ),
    ],
)
def test_a_bad_fault_names_its_field(faults: str, field: str, message: str) -> None:
    problems = _problems(
        "backends: {legacy: {url: 'http://x:1'}, new: {url: 'http://y:1'}}\n"
        f"routes: [{{name: a, match: GET /a, stage: new, faults: {faults}}}]\n"
    )
    assert [(found, message in text) for _, found, text in problems] == [(field, True)], problems


def test_a_retired_route_can_not_name_the_legacy_backend() -> None:
    ((_, field, message),) = _problems(
        "backends: {legacy: {url: 'http://x:1'}, new: {url: 'http://y:1'}}\n"
        "routes: [{name: a, match: GET /a, stage: retired, backend: legacy}]\n"
    )
    assert field == "routes[0].backend"
    assert "stage retired means legacy no longer answers this route" in message
