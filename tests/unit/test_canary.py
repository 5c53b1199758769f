"""Stage `canary`, the pure part: sticky buckets, weights, segments, the override header, and
how the config compiles into one plan per rollout group."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest

from strangler.errors import ConfigError
from strangler.routing import (
    CanaryFacts,
    CanaryPlan,
    ChoiceReason,
    DecisionReason,
    OverrideRefusal,
    RouteSpec,
    RouteTable,
    RouteTableError,
    Side,
    Stage,
    bucket,
    choose,
)
from strangler.routing.canary import (
    OverridePolicy,
    Segment,
    StickinessKind,
    StickinessSource,
    StickyCookie,
    client_address,
    cookie_values,
    query_values,
    set_cookie_header,
    sign_override,
    sticky_key,
)
from strangler.runtime.snapshot_build import load_snapshot

HEADER = StickinessSource(StickinessKind.HEADER, "x-user-id")
SECRET = b"0123456789abcdef-test-secret"
NOW = 1_750_000_000.0
STICKY = "0123456789abcdef0123456789abcdef"


def plan(
    weight: float,
    *,
    group: str = "projects",
    stickiness: tuple[StickinessSource, ...] = (HEADER,),
    segments: tuple[Segment, ...] = (),
    override: OverridePolicy | None = None,
) -> CanaryPlan:
    return CanaryPlan(
        group=group,
        weight_bp=round(weight * 100),
        stickiness=stickiness,
        segments=segments,
        override=override or OverridePolicy(),
    )


def user(key: str) -> CanaryFacts:
    return CanaryFacts(headers={"x-user-id": key})


def _keys(count: int) -> list[str]:
    rng = random.Random(20240501)
    return [f"{rng.getrandbits(64):016x}" for _ in range(count)]


# -- buckets and weights ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("group", "key", "expected"),
    [
        # MurmurHash3 x86_32, seed 0, of "group:key", modulo 10,000 (computed with mmh3 4.1).
        ("projects", "user-1", 6525),
        ("projects", "42", 6606),
        ("checkout", "42", 5384),
        ("projects.show", "10.0.0.1", 596),
    ],
)
def test_bucket_regression_vectors(group: str, key: str, expected: int) -> None:
    assert bucket(group, key) == expected


@pytest.mark.parametrize("weight", [1, 5, 25, 50])
def test_the_share_on_new_is_within_half_a_point_of_the_weight(weight: float) -> None:
    compiled = plan(weight)
    keys = _keys(100_000)
    on_new = sum(choose(compiled, user(key)).side is Side.NEW for key in keys)
    assert abs(on_new / len(keys) * 100 - weight) <= 0.5, on_new


def test_the_same_key_always_lands_on_the_same_side() -> None:
    keys = _keys(2_000)
    first = [choose(plan(50), user(key)).side for key in keys]
    # A plan compiled again (another worker, another gateway process) agrees.
    again = [choose(plan(50), user(key)).side for key in keys]
    assert first == again
    assert {Side.NEW, Side.LEGACY} == set(first)
    # The key, not where it came from, decides: the same value in a cookie lands the same way.
    by_cookie = plan(50, stickiness=(StickinessSource(StickinessKind.COOKIE, "uid"),))
    assert [choose(by_cookie, CanaryFacts(cookies={"uid": key})).side for key in keys] == first


def test_raising_the_weight_only_adds_users() -> None:
    keys = _keys(20_000)
    previous: set[str] = set()
    for weight in (0, 0.01, 1, 5, 25, 50, 99.99, 100):
        on_new = {k for k in keys if choose(plan(weight), user(k)).side is Side.NEW}
        assert previous <= on_new, weight
        previous = on_new
    assert previous == set(keys)


def test_groups_bucket_independently() -> None:
    keys = _keys(5_000)
    projects = {k for k in keys if choose(plan(50), user(k)).side is Side.NEW}
    checkout = {k for k in keys if choose(plan(50, group="checkout"), user(k)).side is Side.NEW}
    assert projects != checkout


@pytest.mark.parametrize(("weight", "side"), [(0, Side.LEGACY), (100, Side.NEW)])
def test_weights_0_and_100_need_no_key_and_set_no_cookie(weight: float, side: Side) -> None:
    compiled = plan(weight, stickiness=(StickinessSource(StickinessKind.STICKY_COOKIE),))
    choice = choose(compiled, CanaryFacts(fresh_sticky_value=STICKY))
    assert (choice.side, choice.reason, choice.sets_sticky_cookie) == (
        side,
        ChoiceReason.WEIGHT,
        False,
    )


def test_no_key_goes_to_legacy() -> None:
    choice = choose(plan(50), CanaryFacts())
    assert (choice.side, choice.reason) == (Side.LEGACY, ChoiceReason.NO_KEY)


# -- stickiness ---------------------------------------------------------------------------------

ALL_SOURCES = (
    StickinessSource(StickinessKind.IDENTITY),
    StickinessSource(StickinessKind.HEADER, "x-user-id"),
    StickinessSource(StickinessKind.COOKIE, "uid"),
    StickinessSource(StickinessKind.STICKY_COOKIE),
    StickinessSource(StickinessKind.CLIENT_IP),
)


@pytest.mark.parametrize(
    ("facts", "key", "sets_cookie"),
    [
        (
            CanaryFacts(
                user_id="7",
                headers={"x-user-id": "h"},
                cookies={"uid": "c"},
                client_ip="10.0.0.1",
            ),
            "7",
            False,
        ),
        (CanaryFacts(headers={"x-user-id": "h"}, cookies={"uid": "c"}), "h", False),
        # An empty header is not a key.
        (CanaryFacts(headers={"x-user-id": ""}, cookies={"uid": "c"}), "c", False),
        (CanaryFacts(cookies={"strangler_sticky": STICKY}, client_ip="10.0.0.1"), STICKY, False),
        # No sticky cookie yet: the fresh id is the key, and the answer sets it.
        (CanaryFacts(client_ip="10.0.0.1", fresh_sticky_value="f" * 32), "f" * 32, True),
        # One the gateway never issued is replaced.
        (
            CanaryFacts(cookies={"strangler_sticky": "chosen"}, fresh_sticky_value="e" * 32),
            "e" * 32,
            True,
        ),
    ],
)
def test_the_first_present_source_is_the_key(
    facts: CanaryFacts, key: str, sets_cookie: bool
) -> None:
    assert sticky_key(plan(50, stickiness=ALL_SOURCES), facts) == (key, sets_cookie)


def test_client_ip_is_the_last_resort() -> None:
    sources = (HEADER, StickinessSource(StickinessKind.CLIENT_IP))
    assert sticky_key(plan(50, stickiness=sources), CanaryFacts(client_ip="10.0.0.1")) == (
        "10.0.0.1",
        False,
    )


def test_a_new_sticky_cookie_is_issued_with_the_side_it_keys() -> None:
    compiled = plan(50, stickiness=(StickinessSource(StickinessKind.STICKY_COOKIE),))
    for value in _keys(200):
        fresh = (value * 2)[:32]
        first = choose(compiled, CanaryFacts(fresh_sticky_value=fresh))
        assert first.sets_sticky_cookie and first.sticky_value == fresh
        later = choose(compiled, CanaryFacts(cookies={"strangler_sticky": fresh}))
        assert (later.side, later.sets_sticky_cookie) == (first.side, False)


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("identity", StickinessSource(StickinessKind.IDENTITY)),
        ("header:X-User-Id", StickinessSource(StickinessKind.HEADER, "x-user-id")),
        ("cookie:uid", StickinessSource(StickinessKind.COOKIE, "uid")),
        ("sticky_cookie", StickinessSource(StickinessKind.STICKY_COOKIE)),
        ("client_ip", StickinessSource(StickinessKind.CLIENT_IP)),
    ],
)
def test_stickiness_sources_parse(text: str, source: StickinessSource) -> None:
    assert StickinessSource.parse(text) == source


@pytest.mark.parametrize(
    "text", ["user", "header:", "header:X Y", "cookie:a;b", "ip:x", "header:Host", "header:Cookie"]
)
def test_bad_stickiness_sources_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        StickinessSource.parse(text)


# -- segments -----------------------------------------------------------------------------------

STAFF = Segment("staff", 10_000, headers=(("x-role", frozenset({"staff", "admin"})),))
BETA = Segment("beta", 10_000, cookies=(("beta", frozenset({"1"})),))
PREVIEW = Segment("preview", 10_000, query=(("preview", frozenset({"on please"})),))
TESTERS = Segment("testers", 10_000, user_ids=frozenset({"7", "8"}))
OFFICE = Segment("office", 0, networks=(ipaddress.ip_network("10.0.0.0/8"),))
BOTH = Segment(
    "staff-in-office",
    10_000,
    headers=(("x-role", frozenset({"staff"})),),
    networks=(ipaddress.ip_network("192.168.0.0/16"),),
)
HALF = Segment("half", 5_000, headers=(("x-half", frozenset({"1"})),))
SEGMENTS = (BOTH, STAFF, BETA, PREVIEW, TESTERS, OFFICE, HALF)


@pytest.mark.parametrize(
    ("facts", "side", "segment"),
    [
        (CanaryFacts(headers={"x-role": "staff"}), Side.NEW, "staff"),
        (CanaryFacts(headers={"x-role": "admin"}), Side.NEW, "staff"),
        (CanaryFacts(headers={"x-role": "Staff"}), Side.LEGACY, None),
        (CanaryFacts(cookies={"beta": "1"}), Side.NEW, "beta"),
        (CanaryFacts(query={"preview": "on please"}), Side.NEW, "preview"),
        (CanaryFacts(user_id="7"), Side.NEW, "testers"),
        (CanaryFacts(user_id="9"), Side.LEGACY, None),
        # Weight 0 in a segment forces legacy, whatever the group weight says.
        (CanaryFacts(client_ip="10.2.3.4"), Side.LEGACY, "office"),
        (CanaryFacts(client_ip="::ffff:10.2.3.4"), Side.LEGACY, "office"),
        # All conditions must hold; the first matching segment wins.
        (
            CanaryFacts(headers={"x-role": "staff"}, client_ip="192.168.1.1"),
            Side.NEW,
            "staff-in-office",
        ),
        (CanaryFacts(headers={"x-role": "staff"}, client_ip="10.0.0.1"), Side.NEW, "staff"),
    ],
)
def test_segments_come_before_the_weight(
    facts: CanaryFacts, side: Side, segment: str | None
) -> None:
    choice = choose(plan(0, segments=SEGMENTS), facts)
    assert (choice.side, choice.segment) == (side, segment)
    assert choice.reason is (ChoiceReason.SEGMENT if segment else ChoiceReason.WEIGHT)


def test_a_segment_percentage_splits_on_the_same_sticky_bucket() -> None:
    keys = _keys(20_000)
    compiled = plan(0, segments=SEGMENTS)
    on_new = {
        key
        for key in keys
        if choose(compiled, CanaryFacts(headers={"x-half": "1", "x-user-id": key})).side is Side.NEW
    }
    assert abs(len(on_new) / len(keys) - 0.5) < 0.02
    assert on_new == {key for key in keys if bucket("projects", key) < 5_000}


# -- the override header ------------------------------------------------------------------------

POLICY = OverridePolicy(
    networks=(ipaddress.ip_network("10.9.0.0/16"),), secret=SECRET, max_ttl_s=3600
)
EXPIRY = int(NOW) + 600


def _override(
    value: str,
    signature: str | None = None,
    *,
    client_ip: str = "203.0.113.5",
    path: str = "/api/projects/1",
) -> CanaryFacts:
    return CanaryFacts(
        path=path,
        headers={"x-user-id": "someone"},
        client_ip=client_ip,
        override=value,
        signature=signature,
        now=NOW,
    )


GOOD = sign_override(SECRET, "new", "/api/projects/1", EXPIRY)


@pytest.mark.parametrize(
    ("facts", "side", "reason", "ignored"),
    [
        (_override("new", client_ip="10.9.1.1"), Side.NEW, ChoiceReason.OVERRIDE_NETWORK, None),
        (_override(" Legacy ", client_ip="10.9.1.1"), Side.LEGACY, "override_network", None),
        (_override("new", GOOD), Side.NEW, ChoiceReason.OVERRIDE_SIGNATURE, None),
        (_override("new", GOOD.upper()), Side.NEW, ChoiceReason.OVERRIDE_SIGNATURE, None),
        (
            _override("legacy", sign_override(SECRET, "legacy", "/api/projects/1", EXPIRY)),
            Side.LEGACY,
            ChoiceReason.OVERRIDE_SIGNATURE,
            None,
        ),
        # Everything below is ignored, counted, and the weight (0 here) decides.
        (_override("new"), Side.LEGACY, ChoiceReason.WEIGHT, OverrideRefusal.UNTRUSTED_CLIENT),
        (
            _override("new", client_ip="10.8.1.1"),
            Side.LEGACY,
            ChoiceReason.WEIGHT,
            OverrideRefusal.UNTRUSTED_CLIENT,
        ),
        (_override("both", GOOD), Side.LEGACY, "weight", OverrideRefusal.BAD_VALUE),
        (
            _override("new", f"{EXPIRY}:" + "0" * 64),
            Side.LEGACY,
            "weight",
            OverrideRefusal.BAD_SIGNATURE,
        ),
        (_override("new", "garbage"), Side.LEGACY, "weight", OverrideRefusal.BAD_SIGNATURE),
        # Signed for new, used for legacy; signed for another path; another secret.
        (_override("legacy", GOOD), Side.LEGACY, "weight", OverrideRefusal.BAD_SIGNATURE),
        (
            _override("new", GOOD, path="/api/projects/2"),
            Side.LEGACY,
            "weight",
            OverrideRefusal.BAD_SIGNATURE,
        ),
        (
            _override("new", sign_override(b"another secret!!", "new", "/api/projects/1", EXPIRY)),
            Side.LEGACY,
            "weight",
            OverrideRefusal.BAD_SIGNATURE,
        ),
        # A later expiry in the header than the one signed.
        (
            _override("new", f"{EXPIRY + 1}:{GOOD.split(':')[1]}"),
            Side.LEGACY,
            "weight",
            OverrideRefusal.BAD_SIGNATURE,
        ),
        (
            _override("new", sign_override(SECRET, "new", "/api/projects/1", int(NOW) - 1)),
            Side.LEGACY,
            "weight",
            OverrideRefusal.EXPIRED_SIGNATURE,
        ),
        (
            _override("new", sign_override(SECRET, "new", "/api/projects/1", int(NOW) + 7200)),
            Side.LEGACY,
            "weight",
            OverrideRefusal.SIGNATURE_TTL_TOO_LONG,
        ),
    ],
)
def test_the_override_header(
    facts: CanaryFacts, side: Side, reason: str, ignored: OverrideRefusal | None
) -> None:
    choice = choose(plan(0, override=POLICY), facts)
    assert (choice.side, choice.reason, choice.ignored_override) == (side, reason, ignored)


def test_an_override_is_never_honoured_without_networks_or_a_secret() -> None:
    closed = plan(0, override=OverridePolicy())
    for facts in (_override("new", GOOD), _override("new", client_ip="10.9.1.1")):
        choice = choose(closed, facts)
        assert (choice.side, choice.ignored_override) == (
            Side.LEGACY,
            OverrideRefusal.UNTRUSTED_CLIENT,
        )


def test_an_honoured_override_beats_segments() -> None:
    compiled = plan(0, segments=(STAFF,), override=POLICY)
    facts = CanaryFacts(
        headers={"x-role": "staff"}, client_ip="10.9.0.1", override="legacy", now=NOW
    )
    assert choose(compiled, facts).side is Side.LEGACY


# -- extracting facts ---------------------------------------------------------------------------

TRUSTED = (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded_for", "client"),
    [
        ("203.0.113.9", None, "203.0.113.9"),
        # An untrusted peer's X-Forwarded-For is whatever it says: ignored.
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),
        ("10.0.0.1", "198.51.100.1", "198.51.100.1"),
        # The right-most entry that isn't a trusted proxy; what the client prepended is ignored.
        ("10.0.0.1", "1.1.1.1, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
        ("10.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"),
        ("10.0.0.1", "junk, 198.51.100.1", "198.51.100.1"),
        ("10.0.0.1", "junk", "10.0.0.1"),
        ("fd00::1", "2001:db8::1", "2001:db8::1"),
        ("10.0.0.1", "::ffff:198.51.100.7", "198.51.100.7"),
    ],
)
def test_client_address(peer: str, forwarded_for: str | None, client: str) -> None:
    assert client_address(peer, forwarded_for, TRUSTED) == client


def test_cookie_and_query_values_take_the_first_of_the_names_asked() -> None:
    header = "uid=1; theme=dark;uid=2; beta=; novalue"
    assert cookie_values(header, {"uid", "beta", "novalue", "absent"}) == {"uid": "1", "beta": ""}
    assert query_values("a=1&b=x+y%21&a=2&c", {"a", "b", "c"}) == {"a": "1", "b": "x y!", "c": ""}


@pytest.mark.parametrize(("is_tls", "secure"), [(False, False), (True, True)])
def test_the_sticky_cookie_header(is_tls: bool, secure: bool) -> None:
    value = set_cookie_header(StickyCookie("sid", 3600), STICKY, is_tls=is_tls)
    assert value.startswith(f"sid={STICKY}; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax")
    assert value.endswith("; Secure") is secure


# -- config: one plan per rollout group ---------------------------------------------------------

BASE = """\
backends:
  legacy: {url: "http://127.0.0.1:3000"}
  new: {url: "http://127.0.0.1:8080"}
  new2: {url: "http://127.0.0.1:8081"}
"""


def _load(tmp_path: Path, routes: str, extra: str = "") -> object:
    path = tmp_path / "strangler.yaml"
    path.write_text(BASE + "routes:\n" + routes + extra)
    return load_snapshot(path)


def _error(tmp_path: Path, routes: str, extra: str = "") -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, routes, extra)
    return caught.value


GROUPED = """\
  - name: projects.show
    match: "GET /api/projects/:id"
    stage: canary
    canary:
      weight: 5
      group: projects
      stickiness: ["header:X-User-Id", sticky_cookie]
      segments: [{name: staff, header: {X-Role: [staff]}, weight: 100}]
  - name: projects.index
    match: "GET /api/projects"
    stage: canary
    backend: new
    canary: {group: projects, backend: new2}
  - name: alone
    match: "GET /alone"
    stage: canary
"""


def test_routes_of_a_group_share_one_plan(tmp_path: Path) -> None:
    snapshot = _load(tmp_path, GROUPED)
    table = snapshot.table  # type: ignore[attr-defined]
    show = table.decide("GET", "/api/projects/1")
    index = table.decide("GET", "/api/projects")
    alone = table.decide("GET", "/alone")
    assert show.canary is not None and index.canary is not None and alone.canary is not None
    assert show.canary.plan is index.canary.plan
    assert (show.canary.plan.group, show.canary.plan.weight) == ("projects", 5)
    assert [str(s) for s in index.canary.plan.stickiness] == ["header:x-user-id", "sticky_cookie"]
    # The group defaults to the route name; weight 0 until someone raises it.
    assert (alone.canary.plan.group, alone.canary.plan.weight_bp) == ("alone", 0)
    assert [str(s) for s in alone.canary.plan.stickiness] == ["sticky_cookie", "client_ip"]
    # Each side is an ordinary Decision; `backend` names the legacy side, `canary.backend` new.
    assert (show.stage, show.backend, show.reason) == (
        Stage.CANARY,
        "legacy",
        DecisionReason.STAGE_CANARY,
    )
    assert (show.canary.side(Side.NEW).backend, show.canary.side(Side.LEGACY).backend) == (
        "new",
        "legacy",
    )
    assert (index.canary.new.backend, index.canary.legacy.backend) == ("new2", "new")
    assert index.canary.new.reason is DecisionReason.CANARY_NEW
    assert index.canary.new.canary is None and index.canary.new.route == "projects.index"


def test_a_canary_route_without_its_settings_is_refused_by_the_table() -> None:
    spec = RouteSpec("r", "GET /r", Stage.CANARY, "legacy", DecisionReason.STAGE_CANARY)
    with pytest.raises(RouteTableError) as caught:
        RouteTable.build([spec], default_backend="legacy")
    assert (caught.value.index, caught.value.field) == (0, "canary")


def test_conflicting_weights_in_a_group_name_the_line(tmp_path: Path) -> None:
    routes = GROUPED.replace("canary: {group: projects,", "canary: {weight: 6, group: projects,")
    error = _error(tmp_path, routes)
    assert (error.line, error.field) == (18, "routes[1].canary.weight")
    assert "rollout group 'projects' already has weight 5 from routes[0] (projects.show)" in (
        error.message
    )


def test_a_group_setting_given_twice_must_agree(tmp_path: Path) -> None:
    same = GROUPED.replace("canary: {group: projects,", "canary: {weight: 5, group: projects,")
    _load(tmp_path, same)
    other = GROUPED.replace(
        "canary: {group: projects,", "canary: {stickiness: [client_ip], group: projects,"
    )
    assert _error(tmp_path, other).field == "routes[1].canary.stickiness"


@pytest.mark.parametrize(
    ("canary", "field", "message"),
    [
        ("{stickiness: [identity]}", "routes[0].canary.stickiness", "identity needs `rails:`"),
        (
            "{segments: [{name: t, user_ids: [1], weight: 100}]}",
            "routes[0].canary.segments[0].user_ids",
            "user_ids need `rails:`",
        ),
        ("{weight: 100.5}", "routes[0].canary.weight", "less than or equal to 100"),
        ("{weight: 0.001}", "routes[0].canary.weight", "in steps of 0.01"),
        ("{stickiness: [client_ip, client_ip]}", "routes[0].canary.stickiness", "listed twice"),
        ("{backend: nope}", "routes[0].canary.backend", "names backend 'nope'"),
        ("{segments: [{name: s, weight: 100}]}", "routes[0].canary.segments[0]", "at least one"),
        (
            "{segments: [{name: s, client_cidrs: [nope], weight: 1}]}",
            "routes[0].canary.segments[0].client_cidrs",
            "not an IP address",
        ),
        ("{plan: {steps: [5, 1]}}", "routes[0].canary.plan.steps", "grow strictly"),
        ("{plan: {steps: [0, 1]}}", "routes[0].canary.plan.steps", "start above 0"),
        ("{plan: {min_requests: 0}}", "routes[0].canary.plan.min_requests", "greater than"),
    ],
)
def test_bad_canary_settings_name_the_field(
    tmp_path: Path, canary: str, field: str, message: str
) -> None:
    routes = f'  - name: r\n    match: "GET /r"\n    stage: canary\n    canary: {canary}\n'
    error = _error(tmp_path, routes)
    assert (error.line, error.field) == (9, field)
    assert message in error.message


OVERRIDE = """\
canary:
  override:
    networks: [10.9.0.0/16]
    secret_env: STRANGLER_TEST_OVERRIDE_SECRET
    max_ttl_s: 600
  sticky_cookie: {name: sid, max_age_s: 3600}
"""


def test_the_override_secret_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = '  - name: r\n    match: "GET /r"\n    stage: canary\n'
    monkeypatch.delenv("STRANGLER_TEST_OVERRIDE_SECRET", raising=False)
    error = _error(tmp_path, routes, OVERRIDE)
    assert (error.line, error.field) == (12, "canary.override.secret_env")
    assert "STRANGLER_TEST_OVERRIDE_SECRET is not set" in error.message
    monkeypatch.setenv("STRANGLER_TEST_OVERRIDE_SECRET", "short")
    assert "shorter than 16 bytes" in _error(tmp_path, routes, OVERRIDE).message
    monkeypatch.setenv("STRANGLER_TEST_OVERRIDE_SECRET", SECRET.decode())
    snapshot = _load(tmp_path, routes, OVERRIDE)
    compiled = snapshot.table.decide("GET", "/r").canary.plan  # type: ignore[attr-defined]
    assert compiled.override.secret == SECRET
    assert SECRET.decode() not in repr(compiled)
    assert (compiled.override.max_ttl_s, compiled.sticky_cookie) == (600, StickyCookie("sid", 3600))
