"""Identity tokens: the ring's JWKS verifies what the minter signs, with PyJWT as a new backend
would use it, across rotations, processes and time.

PyJWT checks `exp` against time.time(), so rings and minters here run on clocks near real time;
an expired token is minted with a clock in the past.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import time
from pathlib import Path
from typing import Any

import jwt
import pytest

from strangler.identity.tokens import (
    IdentityMinter,
    KeyRing,
    KeyRingError,
    KeyRingFile,
    KeyState,
    RotationTooEarly,
    jwk_thumbprint,
    rotate_key_ring,
)

ISSUER = "https://gateway.example"
AUDIENCE = "new-backend"
TTL_S = 60.0
GRACE_S = 60.0


class FakeClock:
    """An injected clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def verify(token: str, jwks: dict[str, Any], **options: Any) -> dict[str, Any]:
    """What a new backend does: pick the JWKS key named by the token's kid, then verify."""
    keys = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    try:
        key = keys[kid]
    except KeyError as exc:
        raise jwt.InvalidKeyError(f"no key {kid} in the JWKS") from exc
    claims: dict[str, Any] = jwt.decode(
        token,
        key=key,
        algorithms=["EdDSA"],
        issuer=ISSUER,
        audience=AUDIENCE,
        options={"require": ["iss", "sub", "aud", "iat", "exp", "jti"], **options},
    )
    return claims


def published_kids(ring: KeyRing, now: float) -> list[str]:
    return [key["kid"] for key in ring.jwks(now)["keys"]]


def minter(ring: KeyRing | KeyRingFile, clock: FakeClock) -> IdentityMinter:
    return IdentityMinter(ring, issuer=ISSUER, ttl_s=TTL_S, audience=AUDIENCE, clock=clock)


def test_token_verifies_with_the_jwks_and_carries_the_claims() -> None:
    now = time.time()
    ring = KeyRing.create(now - 1)
    token = minter(ring, FakeClock(now)).mint(sub="user-42", session_id_hash="abc", route="p.show")

    header = jwt.get_unverified_header(token)
    claims = verify(token, ring.jwks(now))

    assert header == {"alg": "EdDSA", "kid": ring.signing_key(now).kid, "typ": "JWT"}
    assert claims["iss"] == ISSUER
    assert claims["aud"] == AUDIENCE
    assert claims["sub"] == "user-42"
    assert claims["sid"] == "abc"
    assert claims["route"] == "p.show"
    assert claims["exp"] - claims["iat"] == TTL_S
    assert len(jwt.utils.base64url_decode(claims["jti"])) == 16
    assert "nbf" not in claims


def test_the_jwks_has_the_advertised_shape_and_kids_are_rfc7638_thumbprints() -> None:
    now = time.time()
    ring = KeyRing.create(now)
    for jwk in ring.jwks(now)["keys"]:
        assert set(jwk) == {"kty", "crv", "x", "kid", "use", "alg"}
        assert (jwk["kty"], jwk["crv"], jwk["use"], jwk["alg"]) == (
            "OKP",
            "Ed25519",
            "sig",
            "EdDSA",
        )
        assert jwk["kid"] == jwk_thumbprint(jwk["x"])
    # RFC 8037 Appendix A.3: the thumbprint of the RFC's example Ed25519 key.
    rfc_x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    assert jwk_thumbprint(rfc_x) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_without_audience_the_token_has_no_aud() -> None:
    now = time.time()
    ring = KeyRing.create(now)
    token = IdentityMinter(ring, issuer=ISSUER, clock=FakeClock(now)).mint(
        sub="u", session_id_hash=None, route="r"
    )
    claims = jwt.decode(token, ring.signing_key(now).private_key.public_key(), ["EdDSA"])
    assert "aud" not in claims
    assert "sid" not in claims


def test_a_next_key_is_published_before_it_signs() -> None:
    now = time.time()
    ring = KeyRing.create(now - 10)
    upcoming = ring.next_key()
    assert upcoming is not None
    assert upcoming.kid in published_kids(ring, now)
    assert ring.signing_key(now).kid != upcoming.kid
    # Too early: JWKS caches may not have seen it yet, so rotation is refused.
    with pytest.raises(RotationTooEarly, match="rotate again in 110 s"):
        ring.rotate(now)
    rotated = ring.rotate(now - 10 + 2 * TTL_S)
    assert rotated.signing_key(now).kid == upcoming.kid


def test_old_key_tokens_verify_while_retired_and_fail_once_the_key_is_removed() -> None:
    now = time.time()
    ring = KeyRing.create(now - 300)
    old_kid = ring.signing_key(now).kid
    token = minter(ring, FakeClock(now - 5)).mint(sub="u", session_id_hash="s", route="r")

    rotated = ring.rotate(now - 1)

    assert rotated.signing_key(now).kid != old_kid
    old_key = next(key for key in rotated.keys if key.kid == old_kid)
    assert rotated.state_at(old_key, now) is KeyState.RETIRED
    assert verify(token, rotated.jwks(now))["sub"] == "u"

    removed_at = now - 1 + TTL_S + GRACE_S
    assert old_kid in published_kids(rotated, removed_at - 0.001)
    assert old_kid not in published_kids(rotated, removed_at)
    # Expiry checks off: the failure is the missing key, not the token's age.
    with pytest.raises(jwt.InvalidKeyError, match=old_kid):
        verify(token, rotated.jwks(removed_at), verify_exp=False)
    # The next rotation drops the removed key from the ring itself.
    later = rotated.rotate(removed_at + 2 * TTL_S)
    assert old_kid not in [key.kid for key in later.keys]
    assert [key.stored_state for key in later.keys] == [
        KeyState.RETIRED,
        KeyState.ACTIVE,
        KeyState.NEXT,
    ]


def test_tampered_token_fails() -> None:
    now = time.time()
    ring = KeyRing.create(now)
    token = minter(ring, FakeClock(now)).mint(sub="user-1", session_id_hash=None, route="r")
    header, payload, signature = token.split(".")
    claims = json.loads(jwt.utils.base64url_decode(payload))
    claims["sub"] = "admin"
    forged_payload = jwt.utils.base64url_encode(json.dumps(claims).encode()).decode()
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{forged_payload}.{signature}", ring.jwks(now))
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    with pytest.raises(jwt.InvalidSignatureError):
        verify(f"{header}.{payload}.{flipped}", ring.jwks(now))


def test_a_token_signed_by_another_ring_fails() -> None:
    now = time.time()
    ours, theirs = KeyRing.create(now), KeyRing.create(now)
    token = minter(theirs, FakeClock(now)).mint(sub="u", session_id_hash=None, route="r")
    with pytest.raises(jwt.InvalidKeyError):
        verify(token, ours.jwks(now))


def test_expired_token_fails() -> None:
    now = time.time()
    ring = KeyRing.create(now - 200)
    token = minter(ring, FakeClock(now - TTL_S - 1)).mint(sub="u", session_id_hash=None, route="r")
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(token, ring.jwks(now))


def test_cache_reuses_a_token_within_half_its_ttl_then_mints_a_new_one() -> None:
    start = float(int(time.time()))
    ring = KeyRing.create(start)
    clock = FakeClock(start)
    identity = minter(ring, clock)

    first = identity.mint(sub="u", session_id_hash="s", route="r")
    clock.now = start + TTL_S / 2 - 0.5
    assert identity.mint(sub="u", session_id_hash="s", route="r") == first
    assert (identity.cache_hits, identity.cache_misses) == (1, 1)

    # Another route, session or user is another token.
    assert identity.mint(sub="u", session_id_hash="s", route="other") != first
    assert identity.mint(sub="u", session_id_hash="t", route="r") != first
    assert identity.mint(sub="v", session_id_hash="s", route="r") != first
    assert (identity.cache_hits, identity.cache_misses) == (1, 4)

    clock.now = start + TTL_S / 2
    second = identity.mint(sub="u", session_id_hash="s", route="r")
    assert second != first
    assert jwt.decode(second, options={"verify_signature": False})["iat"] == start + TTL_S / 2
    assert (identity.cache_hits, identity.cache_misses) == (1, 5)


def test_cache_is_bounded_lru() -> None:
    now = time.time()
    identity = IdentityMinter(
        KeyRing.create(now), issuer=ISSUER, clock=FakeClock(now), cache_max_entries=2
    )
    a = identity.mint(sub="a", session_id_hash=None, route="r")
    identity.mint(sub="b", session_id_hash=None, route="r")
    assert identity.mint(sub="a", session_id_hash=None, route="r") == a  # a is now the newest
    identity.mint(sub="c", session_id_hash=None, route="r")  # evicts b, the least recent
    assert identity.cache_size == 2
    assert identity.mint(sub="a", session_id_hash=None, route="r") == a
    misses = identity.cache_misses
    identity.mint(sub="b", session_id_hash=None, route="r")
    assert identity.cache_misses == misses + 1


def test_cache_does_not_reuse_tokens_of_a_key_that_no_longer_signs(tmp_path: Path) -> None:
    now = time.time()
    ring_file = KeyRingFile(tmp_path / "keys.json", now=now - 300, check_interval_s=0)
    identity = minter(ring_file, FakeClock(now))
    before = identity.mint(sub="u", session_id_hash=None, route="r")
    rotated = rotate_key_ring(tmp_path / "keys.json", now)
    after = identity.mint(sub="u", session_id_hash=None, route="r")
    assert after != before
    assert jwt.get_unverified_header(after)["kid"] == rotated.signing_key(now).kid
    assert (identity.cache_hits, identity.cache_misses) == (0, 2)


def test_private_key_never_appears_in_repr_or_str(tmp_path: Path) -> None:
    now = time.time()
    ring_file = KeyRingFile(tmp_path / "keys.json", now=now)
    stored = json.loads((tmp_path / "keys.json").read_text())
    secrets_ = [key["private_key"] for key in stored["keys"]]
    identity = minter(ring_file, FakeClock(now))
    identity.mint(sub="u", session_id_hash=None, route="r")
    ring = ring_file.ring
    texts = [repr(ring), str(ring), repr(ring_file), str(ring_file), repr(identity)]
    texts += [repr(key) for key in ring.keys] + [str(key) for key in ring.keys]
    for text in texts:
        for secret in secrets_:
            assert secret not in text
    upcoming = ring.next_key()
    assert upcoming is not None
    assert (
        repr(ring) == f"<KeyRing active={ring.signing_key(now).kid} next={upcoming.kid} retired=[]>"
    )


def test_ring_file_is_private_and_reloads_a_rotation_made_elsewhere(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    start = time.time() - 300
    worker = KeyRingFile(path, now=start, check_interval_s=0)
    assert worker.created
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not KeyRingFile(path).created
    old_kid = worker.ring.signing_key(start).kid
    assert not worker.reload_if_changed()

    rotated = rotate_key_ring(path, time.time())  # as `strangler keys rotate` would, elsewhere

    assert worker.current().signing_key(time.time()).kid == rotated.signing_key(time.time()).kid
    assert worker.ring.signing_key(time.time()).kid != old_kid
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_current_looks_at_the_file_at_most_every_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    monotonic = FakeClock(0.0)
    worker = KeyRingFile(path, now=time.time() - 300, check_interval_s=1.0, monotonic=monotonic)
    before = worker.current()
    rotate_key_ring(path, time.time())
    assert worker.current() is before
    monotonic.now = 1.0
    assert worker.current() is not before


def test_a_ring_file_others_can_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    KeyRingFile(path)
    path.chmod(0o644)
    with pytest.raises(KeyRingError, match="chmod 600"):
        KeyRingFile(path)


def test_a_corrupt_ring_file_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    KeyRingFile(path)
    text = path.read_text()
    secret = json.loads(text)["keys"][0]["private_key"]
    path.write_text(text.replace(secret, secret[::-1]))
    with pytest.raises(KeyRingError) as caught:
        KeyRingFile(path)
    assert secret not in str(caught.value)
    assert secret[::-1] not in str(caught.value)


def test_a_worker_keeps_its_ring_when_the_file_turns_bad(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    worker = KeyRingFile(path)
    before = worker.ring
    path.write_text("{not json")
    assert not worker.reload_if_changed()
    assert worker.ring is before


def _open_ring(path: str, barrier: Any, results: Any) -> None:
    barrier.wait()
    ring_file = KeyRingFile(path)
    results.put((ring_file.created, [key.kid for key in ring_file.ring.keys]))


def test_processes_starting_together_create_exactly_one_ring(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    context = multiprocessing.get_context("spawn")
    count = 4
    barrier = context.Barrier(count)
    results = context.Queue()
    processes = [
        context.Process(target=_open_ring, args=(str(path), barrier, results)) for _ in range(count)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in range(count)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    assert sum(created for created, _ in outcomes) == 1
    assert len({tuple(kids) for _, kids in outcomes}) == 1
    assert [key.kid for key in KeyRingFile(path).ring.keys] == outcomes[0][1]
    assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []
