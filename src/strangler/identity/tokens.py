"""Identity tokens for the new backend: an Ed25519 key ring in one file, and a JWT minter.

When the gateway sends a logged-in Rails user's request to the new backend, it attaches a short
lived JWT (EdDSA, RFC 8037) that any standard JWT library verifies against the ring's JWKS.

Rules:

- Keys are Ed25519; a key's `kid` is its RFC 7638 JWK thumbprint, so the same key always has the
  same kid and a verifier can check the kid it was given.
- A key goes `next` -> `active` -> `retired` -> removed. Exactly one key is `active` (it signs).
  A `next` key is published in the JWKS at least `publish_ahead_s` (default 2 x the token ttl)
  before it may sign, so verifiers' JWKS caches have seen it before any token names it (serve
  the JWKS with a cache lifetime, e.g. `Cache-Control: max-age`, well below that). A
  `retired` key stays published `max_token_ttl_s + grace_s` after it stopped signing, so every
  token it signed expires before verifiers lose the key; `grace_s` covers workers that have not
  yet re-read the file (see `KeyRingFile.current`) and clock skew.
- The ring is one JSON file shared by every worker process and restart: created and rewritten
  atomically (temp file, fsync, os.replace) with mode 0600, under an exclusive flock on a
  sidecar `.lock` file, so workers starting together create exactly one ring and two rotations
  never lose a key. Readers need no lock: they only ever see a whole file.
- Private keys live only in that file and in memory. They are never logged, and `repr()`/`str()`
  of every object here shows kids only.
- `KeyRing` is a frozen value; `rotate` returns a new ring. Nothing here reads a clock except
  the defaults of `KeyRingFile` and `IdentityMinter`, which accept injected clocks.
"""

from __future__ import annotations

import base64
import enum
import fcntl
import hashlib
import json
import logging
import math
import os
import secrets
import stat
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from strangler.errors import StranglerError

logger = logging.getLogger(__name__)

FILE_FORMAT_VERSION = 1
DEFAULT_TOKEN_TTL_S = 60.0
DEFAULT_GRACE_S = 60.0
# How often KeyRingFile.current() looks at the file (one stat call); must stay well under grace_s.
DEFAULT_CHECK_INTERVAL_S = 1.0
DEFAULT_CACHE_MAX_ENTRIES = 10_000

Clock = Callable[[], float]


class KeyRingError(StranglerError):
    """A key ring file that cannot be used, or a ring without an active key."""


class RotationTooEarly(KeyRingError):
    """`rotate` was asked to activate a `next` key that has not been published long enough."""

    def __init__(self, kid: str, can_sign_at: float, now: float) -> None:
        self.kid = kid
        self.can_sign_at = can_sign_at
        self.now = now
        super().__init__(
            f"key {kid} was published too recently to sign: verifiers' JWKS caches may not have "
            f"it yet; rotate again in {math.ceil(can_sign_at - now)} s"
        )


class KeyState(enum.Enum):
    """Where a key is in its life; REMOVED keys are no longer published."""

    NEXT = "next"
    ACTIVE = "active"
    RETIRED = "retired"
    REMOVED = "removed"


_PUBLISHED_STATES = frozenset({KeyState.NEXT, KeyState.ACTIVE, KeyState.RETIRED})


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_thumbprint(x: str) -> str:
    """RFC 7638 thumbprint of an Ed25519 public key given as its base64url `x`.

    RFC 8037 §2: the required members of an OKP key are crv, kty and x; RFC 7638 §3 hashes them
    in lexicographic order with no whitespace.
    """
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"), sort_keys=True
    )
    return _b64url(hashlib.sha256(canonical.encode("ascii")).digest())


@dataclass(frozen=True, slots=True, eq=False)
class SigningKey:
    """One Ed25519 key of the ring and when it was published, activated and retired (Unix s)."""

    kid: str
    x: str
    published_at: float
    activated_at: float | None
    retired_at: float | None
    private_key: Ed25519PrivateKey = field(repr=False)

    @classmethod
    def generate(cls, published_at: float) -> SigningKey:
        return cls.from_private_key(Ed25519PrivateKey.generate(), published_at, None, None)

    @classmethod
    def from_private_key(
        cls,
        private_key: Ed25519PrivateKey,
        published_at: float,
        activated_at: float | None,
        retired_at: float | None,
    ) -> SigningKey:
        raw_public = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        x = _b64url(raw_public)
        return cls(jwk_thumbprint(x), x, published_at, activated_at, retired_at, private_key)

    @property
    def stored_state(self) -> KeyState:
        """The state the file records; `state_at` adds removal, which only time brings."""
        if self.retired_at is not None:
            return KeyState.RETIRED
        if self.activated_at is not None:
            return KeyState.ACTIVE
        return KeyState.NEXT

    def public_jwk(self) -> dict[str, str]:
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": self.x,
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }

    def __repr__(self) -> str:
        return f"<SigningKey {self.kid} {self.stored_state.value}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SigningKey):
            return NotImplemented
        return (self.kid, self.published_at, self.activated_at, self.retired_at) == (
            other.kid,
            other.published_at,
            other.activated_at,
            other.retired_at,
        )

    def __hash__(self) -> int:
        return hash(self.kid)


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The keys, oldest first, and the timing policy they were published under.

    Build a new ring with `KeyRing.create`; change one with `rotate`, which returns a new ring.
    """

    keys: tuple[SigningKey, ...]
    max_token_ttl_s: float = DEFAULT_TOKEN_TTL_S
    publish_ahead_s: float = 2 * DEFAULT_TOKEN_TTL_S
    grace_s: float = DEFAULT_GRACE_S

    @classmethod
    def create(
        cls,
        now: float,
        *,
        max_token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
        publish_ahead_s: float | None = None,
        grace_s: float = DEFAULT_GRACE_S,
    ) -> KeyRing:
        """A first ring: one active key and one `next` key.

        The first key signs at once: no verifier can have cached a JWKS without it, and a
        verifier that sees an unknown kid fetches the JWKS (every standard JWKS client does).
        """
        if max_token_ttl_s <= 0 or grace_s < 0:
            raise ValueError("max_token_ttl_s must be > 0 and grace_s >= 0")
        ahead_s = 2 * max_token_ttl_s if publish_ahead_s is None else publish_ahead_s
        if ahead_s < 0:
            raise ValueError("publish_ahead_s must be >= 0")
        first = SigningKey.generate(now)
        first = replace(first, activated_at=now)
        return cls((first, SigningKey.generate(now)), max_token_ttl_s, ahead_s, grace_s)

    def removal_time(self, key: SigningKey) -> float | None:
        """When a retired key stops being published: its last token has expired by then."""
        if key.retired_at is None:
            return None
        return key.retired_at + self.max_token_ttl_s + self.grace_s

    def state_at(self, key: SigningKey, now: float) -> KeyState:
        removal = self.removal_time(key)
        if removal is not None and now >= removal:
            return KeyState.REMOVED
        return key.stored_state

    def signing_key(self, now: float) -> SigningKey:
        """The active key. Only `rotate` changes it, so it is the same at every `now`."""
        for key in self.keys:
            if self.state_at(key, now) is KeyState.ACTIVE:
                return key
        raise KeyRingError(f"the key ring has no active key ({self!r})")

    def next_key(self) -> SigningKey | None:
        for key in self.keys:
            if key.stored_state is KeyState.NEXT:
                return key
        return None

    def jwks(self, now: float) -> dict[str, list[dict[str, str]]]:
        """The JWK Set to serve to verifiers: next, active and not-yet-removed retired keys."""
        return {
            "keys": [
                key.public_jwk()
                for key in self.keys
                if self.state_at(key, now) in _PUBLISHED_STATES
            ]
        }

    def rotate(self, now: float) -> KeyRing:
        """Activate the `next` key, retire the active one, drop removed keys, publish a new next.

        Raises RotationTooEarly if the next key has been published less than `publish_ahead_s`;
        nothing changes then.
        """
        candidate = self.next_key()
        if candidate is None:
            raise KeyRingError(f"the key ring has no next key to activate ({self!r})")
        can_sign_at = candidate.published_at + self.publish_ahead_s
        if now < can_sign_at:
            raise RotationTooEarly(candidate.kid, can_sign_at, now)
        kept: list[SigningKey] = []
        for key in self.keys:
            state = self.state_at(key, now)
            if state is KeyState.REMOVED:
                continue
            if key is candidate:
                kept.append(replace(key, activated_at=now))
            elif state is KeyState.ACTIVE:
                kept.append(replace(key, retired_at=now))
            else:
                kept.append(key)
        kept.append(SigningKey.generate(now))
        return replace(self, keys=tuple(kept))

    def current(self) -> KeyRing:
        """A ring is its own KeyRingSource (for tests and single-process use)."""
        return self

    def __repr__(self) -> str:
        by_state: dict[KeyState, list[str]] = {state: [] for state in KeyState}
        for key in self.keys:
            by_state[key.stored_state].append(key.kid)
        active = ",".join(by_state[KeyState.ACTIVE]) or "-"
        upcoming = ",".join(by_state[KeyState.NEXT]) or "-"
        retired = ",".join(by_state[KeyState.RETIRED])
        return f"<KeyRing active={active} next={upcoming} retired=[{retired}]>"

    # -- the file format ---------------------------------------------------------------------

    def to_json(self) -> str:
        """The file's content. Holds the private keys: write it only through KeyRingFile."""
        document = {
            "version": FILE_FORMAT_VERSION,
            "max_token_ttl_s": self.max_token_ttl_s,
            "publish_ahead_s": self.publish_ahead_s,
            "grace_s": self.grace_s,
            "keys": [
                {
                    "kid": key.kid,
                    "private_key": _b64url(
                        key.private_key.private_bytes(
                            serialization.Encoding.Raw,
                            serialization.PrivateFormat.Raw,
                            serialization.NoEncryption(),
                        )
                    ),
                    "published_at": key.published_at,
                    "activated_at": key.activated_at,
                    "retired_at": key.retired_at,
                }
                for key in self.keys
            ],
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> KeyRing:
        """Parse a ring file; raises KeyRingError naming `source` and never quoting key bytes."""
        try:
            document = json.loads(text)
            if not isinstance(document, dict) or document.get("version") != FILE_FORMAT_VERSION:
                raise ValueError(f"expected a JSON object with version {FILE_FORMAT_VERSION}")
            keys = tuple(_key_from_dict(item) for item in document["keys"])
            ring = cls(
                keys,
                float(document["max_token_ttl_s"]),
                float(document["publish_ahead_s"]),
                float(document["grace_s"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            # The message names the problem, never the content: the file holds private keys.
            raise KeyRingError(f"{source}: not a usable key ring ({type(exc).__name__})") from None
        # The invariant every ring this module writes keeps: one key signs, one waits to.
        for state in (KeyState.ACTIVE, KeyState.NEXT):
            count = sum(1 for key in keys if key.stored_state is state)
            if count != 1:
                raise KeyRingError(
                    f"{source}: expected exactly one {state.value} key, found {count}"
                )
        return ring


def _key_from_dict(item: dict[str, Any]) -> SigningKey:
    raw = _b64url_decode(str(item["private_key"]))
    key = SigningKey.from_private_key(
        Ed25519PrivateKey.from_private_bytes(raw),
        float(item["published_at"]),
        None if item["activated_at"] is None else float(item["activated_at"]),
        None if item["retired_at"] is None else float(item["retired_at"]),
    )
    if key.kid != item["kid"]:
        raise ValueError("a kid does not match its key's thumbprint")
    return key


class KeyRingSource(Protocol):
    """Where a minter gets the ring; called once per minted token, so it must be cheap."""

    def current(self) -> KeyRing: ...


# -- the shared file ---------------------------------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on `path.lock`, held by one process at a time (released on exit)."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _write_atomically(path: Path, text: str) -> None:
    # mkstemp creates the file with mode 0600, so the keys are never readable by others, not
    # even for an instant; os.replace makes readers see the old file or the new one, whole.
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)


def _read(path: Path) -> tuple[KeyRing, tuple[int, int, int]]:
    """The ring and the (inode, mtime_ns, size) it was read from."""
    with path.open("rb") as handle:
        info = os.fstat(handle.fileno())
        # Like ssh with its private keys: a ring others can read is refused, not silently used.
        if stat.S_IMODE(info.st_mode) & 0o077:
            raise KeyRingError(
                f"{path}: key ring is readable by other users "
                f"(mode {stat.S_IMODE(info.st_mode):o}); run chmod 600 {path}"
            )
        data = handle.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyRingError(f"{path}: not a usable key ring (not UTF-8)") from None
    return KeyRing.from_json(text, str(path)), (info.st_ino, info.st_mtime_ns, info.st_size)


class KeyRingFile:
    """The ring shared by every worker: loaded from `path`, or created there if it is missing.

    `current()` is the KeyRingSource a minter calls per token: it returns the ring in memory and
    looks at the file (one stat) at most every `check_interval_s`, so a rotation made by another
    process is picked up within that time. `created` tells whether this object made the file.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        now: float | None = None,
        max_token_ttl_s: float = DEFAULT_TOKEN_TTL_S,
        publish_ahead_s: float | None = None,
        grace_s: float = DEFAULT_GRACE_S,
        check_interval_s: float = DEFAULT_CHECK_INTERVAL_S,
        monotonic: Clock = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.check_interval_s = check_interval_s
        self._monotonic = monotonic
        self.created = False
        try:
            ring, signature = self._load_or_create(
                time.time() if now is None else now, max_token_ttl_s, publish_ahead_s, grace_s
            )
        except OSError as exc:
            raise KeyRingError(f"{self.path}: cannot load or create the key ring: {exc}") from exc
        self._ring = ring
        self._signature = signature
        self._next_check = monotonic() + check_interval_s

    def _load_or_create(
        self, now: float, max_token_ttl_s: float, publish_ahead_s: float | None, grace_s: float
    ) -> tuple[KeyRing, tuple[int, int, int]]:
        try:
            return _read(self.path)
        except FileNotFoundError:
            pass
        with _locked(self.path):
            # Another worker may have created it while we waited for the lock.
            try:
                return _read(self.path)
            except FileNotFoundError:
                pass
            ring = KeyRing.create(
                now,
                max_token_ttl_s=max_token_ttl_s,
                publish_ahead_s=publish_ahead_s,
                grace_s=grace_s,
            )
            _write_atomically(self.path, ring.to_json())
            self.created = True
            logger.info("created key ring %s: %r", self.path, ring)
            return _read(self.path)

    @property
    def ring(self) -> KeyRing:
        return self._ring

    def current(self) -> KeyRing:
        now = self._monotonic()
        if now >= self._next_check:
            self._next_check = now + self.check_interval_s
            self.reload_if_changed()
        return self._ring

    def reload_if_changed(self) -> bool:
        """Re-read the file if its inode, mtime or size changed; True if the ring was replaced.

        A file that became unreadable or invalid is logged and the ring in memory is kept:
        signing with a key verifiers know beats failing every request.
        """
        try:
            info = self.path.stat()
        except OSError as exc:
            logger.error("key ring %s cannot be read (%s); keeping %r", self.path, exc, self._ring)
            return False
        # os.replace gives the file a new inode, so a rewrite is seen even within one mtime tick.
        if (info.st_ino, info.st_mtime_ns, info.st_size) == self._signature:
            return False
        try:
            ring, signature = _read(self.path)
        except (OSError, KeyRingError) as exc:
            logger.error("key ring %s cannot be used (%s); keeping %r", self.path, exc, self._ring)
            return False
        self._ring, self._signature = ring, signature
        logger.info("reloaded key ring %s: %r", self.path, ring)
        return True

    def rotate(self, now: float) -> KeyRing:
        """Rotate the ring in the file (under the lock, from the file's latest content)."""
        with _locked(self.path):
            ring, _ = _read(self.path)
            rotated = ring.rotate(now)
            _write_atomically(self.path, rotated.to_json())
            self._ring, self._signature = _read(self.path)
        logger.info("rotated key ring %s: %r", self.path, self._ring)
        return self._ring

    def __repr__(self) -> str:
        return f"<KeyRingFile {self.path}: {self._ring!r}>"


def rotate_key_ring(path: str | Path, now: float) -> KeyRing:
    """Rotate the ring at `path` (creating it first if missing): for `strangler keys rotate`.

    Raises RotationTooEarly (with the seconds to wait) if the next key is not yet publishable,
    KeyRingError if the file is unusable. Running workers pick the change up by themselves.
    """
    return KeyRingFile(path, now=now).rotate(now)


# -- minting -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CachedToken:
    token: str = field(repr=False)
    kid: str
    iat: int
    reuse_until: float


class IdentityMinter:
    """Mints the JWT that tells the new backend who the Rails user is.

    Claims: iss, sub, aud (if configured), iat, exp = iat + ttl, jti (128 random bits), sid (the
    hash of the Rails session id, when there is one) and route (the gateway's route name).

    Minting is on the proxy's hot path, so tokens are cached per (sub, sid, route, aud) in a bounded
    LRU and reused while more than half their ttl is left and their key still signs. `jti` is
    therefore per token, not per request: the token is a bearer credential for a short window,
    not a nonce, and the new backend must not use jti for replay detection (a request replayed
    inside the window carries a valid token whatever its jti). Not thread-safe: one minter per
    worker event loop.
    """

    def __init__(
        self,
        key_ring_source: KeyRingSource,
        *,
        issuer: str,
        ttl_s: float = DEFAULT_TOKEN_TTL_S,
        audience: str | None = None,
        clock: Clock = time.time,
        cache_max_entries: int = DEFAULT_CACHE_MAX_ENTRIES,
    ) -> None:
        ring_ttl_s = key_ring_source.current().max_token_ttl_s
        if not 1 <= ttl_s <= ring_ttl_s:
            # A token outliving the ring's ttl could outlive its key's publication.
            raise ValueError(f"ttl_s must be between 1 and the key ring's {ring_ttl_s} s")
        if cache_max_entries < 0:
            raise ValueError("cache_max_entries must be >= 0")
        self._source = key_ring_source
        self.issuer = issuer
        self.ttl_s = ttl_s
        self.audience = audience
        self._clock = clock
        self.cache_max_entries = cache_max_entries
        self._cache: OrderedDict[tuple[str, str | None, str, str | None], _CachedToken] = (
            OrderedDict()
        )
        self.cache_hits = 0
        self.cache_misses = 0

    def mint(
        self, *, sub: str, session_id_hash: str | None, route: str, audience: str | None = None
    ) -> str:
        """A token for `sub` on `route`; `audience` (the backend it is for) is used when the
        minter has no audience of its own."""
        now = self._clock()
        key = self._source.current().signing_key(now)
        audience = self.audience if self.audience is not None else audience
        cache_key = (sub, session_id_hash, route, audience)
        cached = self._cache.get(cache_key)
        # A clock that went back (now < iat) would hand out a token from the future: re-mint.
        if cached is not None and cached.kid == key.kid and cached.iat <= now < cached.reuse_until:
            self._cache.move_to_end(cache_key)
            self.cache_hits += 1
            return cached.token
        self.cache_misses += 1
        iat = int(now)
        # Whole seconds: RFC 7519 allows fractions, but integer NumericDates are what every
        # verifier accepts.
        claims: dict[str, Any] = {"iss": self.issuer, "sub": sub}
        if audience is not None:
            claims["aud"] = audience
        claims["iat"] = iat
        claims["exp"] = iat + int(self.ttl_s)
        claims["jti"] = secrets.token_urlsafe(16)
        if session_id_hash is not None:
            claims["sid"] = session_id_hash
        claims["route"] = route
        token = jwt.encode(
            claims, key.private_key, algorithm="EdDSA", headers={"kid": key.kid, "typ": "JWT"}
        )
        if self.cache_max_entries:
            reuse_until = claims["exp"] - self.ttl_s / 2
            self._cache[cache_key] = _CachedToken(token, key.kid, iat, reuse_until)
            self._cache.move_to_end(cache_key)
            while len(self._cache) > self.cache_max_entries:
                self._cache.popitem(last=False)
        return token

    @property
    def cache_size(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return (
            f"<IdentityMinter iss={self.issuer!r} ttl={self.ttl_s:g}s: "
            f"{len(self._cache)} cached, {self.cache_hits} hits, {self.cache_misses} misses>"
        )
