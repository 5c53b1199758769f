"""IdentityBridge's session cache: it saves decoding, and never outlives a session's expiry."""

from __future__ import annotations

from pathlib import Path

from strangler.identity import (
    AnonymousReason,
    KeyDigest,
    RailsSessionDecoder,
    RailsSessionEncoder,
    RailsSessionSettings,
    SessionSecret,
)
from strangler.identity.bridge import IdentityBridge
from strangler.identity.tokens import IdentityMinter, KeyRingFile

SECRET = SessionSecret(b"s" * 64, KeyDigest.SHA1)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _bridge(tmp_path: Path, clock: Clock) -> IdentityBridge:
    decoder = RailsSessionDecoder(RailsSessionSettings("_app_session", (SECRET,)), clock=clock)
    minter = IdentityMinter(KeyRingFile(tmp_path / "keys.json"), issuer="test")
    return IdentityBridge(
        decoder,
        minter,
        cookie_name="_app_session",
        user_id_key="user_id",
        header="Authorization",
        fallback_header="X-Strangler-Identity",
        per_form_csrf_tokens=True,
        origin_check=True,
        clock=clock,
    )


def test_a_cached_session_expires_when_its_cookie_says(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    cookie = RailsSessionEncoder("_app_session", SECRET).encode(
        {"user_id": 7}, expires_at=clock.now + 60
    )
    bridge = _bridge(tmp_path, clock)
    header = f"_app_session={cookie}".encode()
    assert bridge.session(header).session == {"user_id": 7}
    clock.now += 30
    assert bridge.session(header).session == {"user_id": 7}  # from the cache
    clock.now += 31
    outcome = bridge.session(header)
    assert outcome.session is None
    assert outcome.anonymous_reason is AnonymousReason.EXPIRED
    assert bridge.outcomes == {"authenticated": 2, "expired": 1}


def test_garbage_is_not_cached(tmp_path: Path) -> None:
    bridge = _bridge(tmp_path, Clock(1_000_000.0))
    for index in range(100):
        assert bridge.session(f"_app_session=junk{index}".encode()).session is None
    assert "0 sessions cached" in repr(bridge)
