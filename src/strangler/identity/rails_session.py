"""Read (and, for the demo and tests, write) Rails cookie-store sessions.

Pure. No sockets, no config reads, no global state: time comes from the injected clock, and the
PBKDF2 keys are derived once, when the decoder is built, never per cookie. `decode` never raises:
every cookie it cannot vouch for becomes an anonymous outcome with a reason.

Rules, from Rails' own code (actionpack ActionDispatch::Cookies and activesupport
MessageEncryptor, MessageVerifier, KeyGenerator, Messages::Metadata, Messages::Rotator, at
v5.2.8, v6.0.6, v6.1.7, v7.0.10, v7.1.6, v7.2.3 and v8.0.5; files cited where each rule is used):

- Keys: PBKDF2-HMAC over secret_key_base (its bytes as written, not hex-decoded), 1000
  iterations (railties Application#key_generator), SHA1 before Rails 7.0 and SHA256 from 7.0's
  defaults (`key_generator_hash_digest_class`). Salts are Rails' defaults (actionpack
  lib/action_dispatch/railtie.rb): "authenticated encrypted cookie" gives the 32-byte AES-256-GCM
  key; "encrypted cookie" (32 bytes) and "signed encrypted cookie" (64 bytes, KeyGenerator's
  default size) give the legacy AES-256-CBC key and its HMAC-SHA1 key.
- Formats (the cookie value is first URL-decoded the way Rack's parse_cookies_header does):
  GCM is `b64(ciphertext)--b64(iv)--b64(tag)`, a 12-byte IV, a 16-byte tag, empty auth data;
  CBC is `b64(b64(ciphertext)--b64(iv))--hex(HMAC-SHA1(sign_key, first part))`, compared in
  constant time. Base64 is Ruby's strict_encode64: padded, no newlines, no stray bits. A GCM
  app also reads CBC cookies (EncryptedKeyRotatingCookieJar, upgrade_legacy_hmac_aes_cbc_cookies?,
  5.2+), and a CBC app GCM ones (prepare_upgrade_legacy_hmac_aes_cbc_cookies?, 6.1+), so we
  accept both and pick by shape, not by setting.
- Metadata: cookie jars wrap the serialized session as
  `{"_rails":{"message":b64(payload),"exp":iso8601|null,"pur":"cookie.<name>"}}` in every Rails
  from 6.0 to 8.0. Rails 7.1's Messages::Metadata can also write `{"_rails":{"data":<value>,...}}`
  (the message serializer itself carries the envelope), but only for serializers listed in
  ENVELOPE_SERIALIZERS, and cookie jars always hand MessageEncryptor the NullSerializer
  (cookies.rb SerializedCookieJars::SERIALIZER) and serialize the session themselves, so no Rails
  cookie carries it. We read it anyway, as 7.1's deserialize_with_metadata would.
  A cookie without an envelope (Rails < 6.0, or `use_cookies_with_metadata = false`) is read as
  the bare serialized session.
- Purpose: Rails reads a cookie first expecting "cookie.<name>", then expecting none
  (AbstractCookieJar#[]), so an envelope passes when its `pur` is that purpose, null or "";
  any other purpose (a cookie copied from another name) is WRONG_PURPOSE. An `exp` at or before
  the clock's now is EXPIRED. Purpose is judged before expiry.
- Serializers: `json` reads JSON only and refuses Marshal payloads (Rails 7.1
  SerializerWithFallback :json raises "Unsupported serialization format"); `marshal` and
  `hybrid` read Marshal when the payload starts with 04 08 and JSON otherwise, as Rails 6.1's
  MarshalWithJsonFallback and `:hybrid` JsonSerializer, and 7.1's :marshal and
  :json_allow_marshal all do. Marshal goes through our own decoder (ruby_marshal), which refuses
  every object, so a session holding a Time or a HashWithIndifferentAccess is REFUSED_PAYLOAD.
- Rotation: secrets are tried newest first; the outcome says which one matched.
- Limits: a raw cookie value over 8 KiB is refused before any decoding (browsers keep 4 KiB per
  cookie and Rails refuses to write more, cookies.rb MAX_COOKIE_SIZE; the margin covers URL
  escaping). The session must be a JSON object / Ruby Hash with string keys.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, assert_never
from urllib.parse import quote, unquote_to_bytes

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from strangler.identity.ruby_marshal import MarshalRefused
from strangler.identity.ruby_marshal import loads as marshal_loads

__all__ = [
    "MAX_COOKIE_VALUE_BYTES",
    "AnonymousReason",
    "KeyDigest",
    "MetadataLayout",
    "RailsSessionDecoder",
    "RailsSessionEncoder",
    "RailsSessionSettings",
    "Serializer",
    "SessionOutcome",
    "SessionSecret",
    "find_cookie",
    "session_id_hash",
    "session_user_id",
    "strict_decode64",
    "urlsafe_decode64",
]

MAX_COOKIE_VALUE_BYTES: Final = 8192
# railties Application#key_generator: "number of iterations selected based on consultation with
# the google security team", unchanged from 4.0 to 8.0.
_PBKDF2_ITERATIONS: Final = 1000
_GCM_SALT: Final = b"authenticated encrypted cookie"
_CBC_SALT: Final = b"encrypted cookie"
_CBC_SIGN_SALT: Final = b"signed encrypted cookie"
_AES_256_KEY_BYTES: Final = 32
# KeyGenerator#generate_key(salt, key_size = 64): the HMAC key is asked for without a size.
_CBC_SIGN_KEY_BYTES: Final = 64
_GCM_IV_BYTES: Final = 12
_GCM_TAG_BYTES: Final = 16
_CBC_IV_BYTES: Final = 16
_SEPARATOR: Final = "--"
_MARSHAL_HEADER: Final = b"\x04\x08"
# Both Rails 6.x's ActiveSupport::JSON.encode and 7.1's legacy envelope begin exactly so.
_ENVELOPE_PREFIX: Final = b'{"_rails":{'
_BAD_PERCENT: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_MAX_USER_ID_CHARS: Final = 256
# RFC 6265 §4.1.1: a cookie-name is an RFC 2616 token.
_COOKIE_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


class KeyDigest(enum.StrEnum):
    """The PBKDF2 hash: SHA1 before Rails 7.0, SHA256 with 7.0+ defaults."""

    SHA1 = "sha1"
    SHA256 = "sha256"


class Serializer(enum.StrEnum):
    """`config.action_dispatch.cookies_serializer`."""

    JSON = "json"
    MARSHAL = "marshal"
    HYBRID = "hybrid"


class AnonymousReason(enum.StrEnum):
    """Why a request is treated as anonymous; bounded, so usable as a metric label."""

    MISSING = "missing"  # no cookie of that name, or an empty value
    OVERSIZE = "oversize"  # raw value over MAX_COOKIE_VALUE_BYTES, refused unread
    MALFORMED = "malformed"  # not the shape of any Rails format (separators, base64, IV, tag)
    TAMPERED = "tampered"  # no configured secret authenticates it: forged, edited, foreign
    EXPIRED = "expired"
    WRONG_PURPOSE = "wrong_purpose"  # authentic, but made for another cookie name
    REFUSED_PAYLOAD = "refused_payload"  # authentic, but not plain data we will read


class MetadataLayout(enum.StrEnum):
    """The envelope RailsSessionEncoder writes."""

    MESSAGE = "6.1"  # {"_rails":{"message":b64,...}}: what every cookie jar 6.0-8.0 writes
    DATA = "7.1"  # {"_rails":{"data":...}}: 7.1 Messages::Metadata for JSON message serializers
    NONE = "none"  # bare payload: Rails < 6.0 or use_cookies_with_metadata = false


@dataclass(frozen=True, slots=True)
class SessionSecret:
    """One secret_key_base and the digest its app's KeyGenerator used; repr hides the secret."""

    secret_key_base: bytes = field(repr=False)
    key_digest: KeyDigest = KeyDigest.SHA1


@dataclass(frozen=True, slots=True)
class RailsSessionSettings:
    """How the legacy app writes its session cookie; `secrets` are newest first."""

    cookie_name: str
    secrets: tuple[SessionSecret, ...]
    serializer: Serializer = Serializer.JSON

    def __post_init__(self) -> None:
        if not self.secrets:
            raise ValueError("RailsSessionSettings needs at least one secret")
        if not self.cookie_name or not _COOKIE_NAME.fullmatch(self.cookie_name):
            raise ValueError(f"not a cookie name: {self.cookie_name!r}")


@dataclass(frozen=True, slots=True)
class SessionOutcome:
    """A session we vouch for, or why there is none.

    Exactly one of `session` and `anonymous_reason` is set. `secret_index` is the position in
    settings.secrets of the secret that authenticated the cookie (0 is the newest), so a rotation
    can be watched until old cookies stop coming; `detail` is a short text for logs.
    """

    session: Mapping[str, object] | None
    anonymous_reason: AnonymousReason | None
    secret_index: int | None = None
    detail: str = ""
    # When an authenticated session's metadata says it expires (unix seconds), else None.
    expires_at: float | None = None

    @property
    def is_authenticated(self) -> bool:
        return self.session is not None


def _anonymous(reason: AnonymousReason, detail: str = "") -> SessionOutcome:
    return SessionOutcome(session=None, anonymous_reason=reason, detail=detail)


_MISSING: Final = _anonymous(AnonymousReason.MISSING)


# -- base64 as Ruby does it ---------------------------------------------------------------------


def strict_decode64(text: str | bytes) -> bytes | None:
    """Ruby's Base64.strict_decode64, or None where Ruby raises ArgumentError.

    Ruby rejects anything but the canonical encoding: missing padding, characters outside the
    alphabet, newlines, and non-zero bits left over in the last character ("QR==").
    binascii's strict mode checks all but the last, so the result is re-encoded and compared.
    """
    raw = text.encode("ascii", "replace") if isinstance(text, str) else text
    try:
        decoded = binascii.a2b_base64(raw, strict_mode=True)
    except binascii.Error:
        return None
    return decoded if base64.b64encode(decoded) == raw else None


def urlsafe_decode64(text: str) -> bytes | None:
    """Ruby's Base64.urlsafe_decode64, or None where Ruby raises ArgumentError.

    Ruby pads an unpadded value, maps "-_" to "+/" and strict-decodes, so the standard alphabet
    and padded values are accepted too.
    """
    if not text.endswith("=") and len(text) % 4:
        text = text.ljust(len(text) + (-len(text) % 4), "=")
    return strict_decode64(text.replace("-", "+").replace("_", "/"))


# -- the Cookie header --------------------------------------------------------------------------


def find_cookie(cookie_header: bytes | str | None, name: str) -> str | None:
    """The raw (still URL-encoded) value of the first cookie called `name`, or None.

    Splits as Rack's parse_cookies_header does (Rack 2.2 and 3.x lib/rack/utils.rb): pairs are
    separated by ";" and any spaces, the name runs to the first "=", and the first pair with a
    name wins even when it has no "=" (then the cookie reads as absent). Browsers send the
    most specific path first (RFC 6265 §5.4 step 2), and Rails reads the first, so do we.
    """
    if not cookie_header:
        return None
    header = cookie_header.decode("latin-1") if isinstance(cookie_header, bytes) else cookie_header
    for pair in header.split(";"):
        key, has_value, value = pair.lstrip(" \t").partition("=")
        if key == name:
            return value if has_value else None
    return None


def _rack_unescape(value: str) -> bytes:
    """Rack::Utils.unescape (URI.decode_www_form_component): "+" is a space, %XX a byte.

    Ruby raises on a malformed %-sequence and Rack then keeps the raw value; so do we.
    """
    if _BAD_PERCENT.search(value):
        return value.encode("latin-1")
    return unquote_to_bytes(value.replace("+", " "))


# -- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CookieKeys:
    gcm_key: AESGCM
    cbc_key: bytes = field(repr=False)
    cbc_sign_key: bytes = field(repr=False)


def _derive_keys(secret: SessionSecret) -> _CookieKeys:
    def derive(salt: bytes, size: int) -> bytes:
        return hashlib.pbkdf2_hmac(
            secret.key_digest.value, secret.secret_key_base, salt, _PBKDF2_ITERATIONS, size
        )

    return _CookieKeys(
        gcm_key=AESGCM(derive(_GCM_SALT, _AES_256_KEY_BYTES)),
        cbc_key=derive(_CBC_SALT, _AES_256_KEY_BYTES),
        cbc_sign_key=derive(_CBC_SIGN_SALT, _CBC_SIGN_KEY_BYTES),
    )


# -- reading -------------------------------------------------------------------------------------


class _Rejected(Exception):
    """Internal: stops decoding with an anonymous reason. Never leaves this module."""

    def __init__(self, reason: AnonymousReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(detail)


class RailsSessionDecoder:
    """Turns a Rails session cookie into the session hash, or an anonymous reason.

    Built once per settings (key derivation runs here); `decode` is then cheap, thread-safe and
    never raises.
    """

    __slots__ = ("_clock", "_keys", "_purpose", "_settings")

    def __init__(self, settings: RailsSessionSettings, clock: Callable[[], float]) -> None:
        self._settings = settings
        self._clock = clock
        self._purpose = f"cookie.{settings.cookie_name}"
        self._keys = tuple(_derive_keys(secret) for secret in settings.secrets)

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"<RailsSessionDecoder {s.cookie_name}: {len(s.secrets)} secrets, "
            f"{s.serializer.value} serializer>"
        )

    def from_cookie_header(self, cookie_header: bytes | None) -> SessionOutcome:
        """Decode the session cookie found in a raw Cookie header; absent means MISSING.

        A request with several Cookie fields (HTTP/2 splits them) is read with the fields joined
        by "; " first, as RFC 9113 §8.2.3 prescribes.
        """
        value = find_cookie(cookie_header, self._settings.cookie_name)
        if value is None:
            return _MISSING
        return self.decode(value)

    def decode(self, cookie_value: str) -> SessionOutcome:
        """Decode one raw cookie value, as it appears in the Cookie header (URL-encoded)."""
        if not cookie_value:
            return _MISSING
        if len(cookie_value) > MAX_COOKIE_VALUE_BYTES:
            return _anonymous(AnonymousReason.OVERSIZE, f"{len(cookie_value)} characters")
        if not cookie_value.isascii():
            return _anonymous(AnonymousReason.MALFORMED, "non-ASCII cookie value")
        try:
            index, plaintext = self._authenticate(_rack_unescape(cookie_value))
            session, expires_at = self._unwrap(plaintext)
        except _Rejected as rejected:
            return _anonymous(rejected.reason, rejected.detail)
        return SessionOutcome(
            session=session, anonymous_reason=None, secret_index=index, expires_at=expires_at
        )

    # Authentication: which secret, which format.

    def _authenticate(self, value: bytes) -> tuple[int, bytes]:
        if not value.isascii():
            raise _Rejected(AnonymousReason.MALFORMED, "non-ASCII after URL-decoding")
        parts = value.decode("ascii").split(_SEPARATOR)
        if len(parts) == 3:
            return self._open_gcm(parts)
        if len(parts) == 2:
            return self._open_cbc(parts)
        raise _Rejected(AnonymousReason.MALFORMED, f"{len(parts)} parts")

    def _open_gcm(self, parts: Sequence[str]) -> tuple[int, bytes]:
        # activesupport message_encryptor.rb _decrypt (6.1) / decrypt (7.1+).
        ciphertext, iv, tag = (strict_decode64(part) for part in parts)
        if ciphertext is None or iv is None or tag is None:
            raise _Rejected(AnonymousReason.MALFORMED, "GCM part is not strict base64")
        if len(iv) != _GCM_IV_BYTES or len(tag) != _GCM_TAG_BYTES:
            raise _Rejected(AnonymousReason.MALFORMED, "GCM IV or tag of the wrong size")
        sealed = ciphertext + tag
        for index, keys in enumerate(self._keys):
            try:
                return index, keys.gcm_key.decrypt(iv, sealed, None)
            except InvalidTag:
                continue
        raise _Rejected(AnonymousReason.TAMPERED, "no secret authenticates the GCM cookie")

    def _open_cbc(self, parts: Sequence[str]) -> tuple[int, bytes]:
        # activesupport message_verifier.rb valid_message? then message_encryptor.rb _decrypt.
        signed, digest = parts
        if not signed or not digest:
            raise _Rejected(AnonymousReason.MALFORMED, "empty CBC part")
        signed_bytes = signed.encode("ascii")
        for index, keys in enumerate(self._keys):
            expected = hmac.new(keys.cbc_sign_key, signed_bytes, hashlib.sha1).hexdigest()
            if hmac.compare_digest(expected, digest):
                return index, self._decrypt_cbc(keys, signed_bytes)
        raise _Rejected(AnonymousReason.TAMPERED, "no secret authenticates the CBC cookie")

    @staticmethod
    def _decrypt_cbc(keys: _CookieKeys, signed: bytes) -> bytes:
        inner = strict_decode64(signed)
        halves = inner.split(b"--") if inner is not None else []
        if len(halves) != 2:
            raise _Rejected(AnonymousReason.MALFORMED, "signed CBC data is not data--iv")
        ciphertext, iv = (strict_decode64(half) for half in halves)
        if ciphertext is None or iv is None or len(iv) != _CBC_IV_BYTES:
            raise _Rejected(AnonymousReason.MALFORMED, "CBC data or IV")
        if not ciphertext or len(ciphertext) % 16:
            raise _Rejected(AnonymousReason.MALFORMED, "CBC data not whole blocks")
        decryptor = Cipher(algorithms.AES(keys.cbc_key), modes.CBC(iv)).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        try:
            padded = decryptor.update(ciphertext) + decryptor.finalize()
            return unpadder.update(padded) + unpadder.finalize()
        except ValueError as exc:
            raise _Rejected(AnonymousReason.MALFORMED, "bad CBC padding") from exc

    # Metadata and serialization.

    def _unwrap(self, plaintext: bytes) -> tuple[Mapping[str, object], float | None]:
        if plaintext.startswith(_ENVELOPE_PREFIX):
            envelope = _json_loads(plaintext, "metadata envelope")
            rails = envelope.get("_rails") if isinstance(envelope, dict) else None
            if isinstance(rails, dict):
                return self._open_envelope(rails)
        return self._deserialize(plaintext), None

    def _open_envelope(
        self, rails: Mapping[str, object]
    ) -> tuple[Mapping[str, object], float | None]:
        # activesupport messages/metadata.rb: Metadata#verify (6.1), extract_from_metadata_envelope
        # (7.1+).
        purpose = rails.get("pur")
        if purpose not in (None, "", self._purpose):
            shown = str(purpose)[:80]
            raise _Rejected(AnonymousReason.WRONG_PURPOSE, f"purpose {shown!r}")
        expires = rails.get("exp")
        expires_at: float | None = None
        if expires is not None:
            expires_at = _parse_expiry(expires)
            if self._clock() >= expires_at:
                raise _Rejected(AnonymousReason.EXPIRED, f"expired at {expires}")
        if "message" in rails:
            message = rails["message"]
            payload = strict_decode64(message) if isinstance(message, str) else None
            if payload is None:
                raise _Rejected(AnonymousReason.MALFORMED, "envelope message is not base64")
            return self._deserialize(payload), expires_at
        if "data" in rails:
            return _as_session(rails["data"]), expires_at
        raise _Rejected(AnonymousReason.MALFORMED, "envelope without message or data")

    def _deserialize(self, payload: bytes) -> Mapping[str, object]:
        if payload.startswith(_MARSHAL_HEADER):
            if self._settings.serializer is Serializer.JSON:
                raise _Rejected(AnonymousReason.REFUSED_PAYLOAD, "Marshal payload, json serializer")
            try:
                return _as_session(marshal_loads(payload))
            except MarshalRefused as exc:
                raise _Rejected(AnonymousReason.REFUSED_PAYLOAD, exc.reason) from exc
        return _as_session(_json_loads(payload, "JSON session"))


def _json_loads(payload: bytes, what: str) -> object:
    # Ruby's JSON.parse refuses NaN and Infinity (allow_nan: false); Python would accept them.
    try:
        return json.loads(payload, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise _Rejected(AnonymousReason.REFUSED_PAYLOAD, f"{what} is not JSON") from exc


def _refuse_constant(name: str) -> object:
    raise ValueError(f"JSON constant {name}")


def _parse_expiry(expires: object) -> float:
    # Rails writes Time#iso8601(3) in UTC ("2024-01-02T03:04:05.000Z"); Time.iso8601 reads it.
    if isinstance(expires, str):
        try:
            moment = datetime.fromisoformat(expires)
        except ValueError:
            moment = None
        if moment is not None and moment.tzinfo is not None:
            return moment.timestamp()
    raise _Rejected(AnonymousReason.MALFORMED, "envelope exp is not an ISO 8601 time with zone")


def _as_session(value: object) -> Mapping[str, object]:
    """The session must be a Hash; Rails stringifies its keys (CookieStore#unpacked_cookie_data)."""
    if not isinstance(value, dict):
        raise _Rejected(AnonymousReason.REFUSED_PAYLOAD, f"session is a {type(value).__name__}")
    if all(isinstance(key, str) for key in value):
        return value
    session: dict[str, object] = {}
    for key, item in value.items():
        text = str(key)
        if text in session:
            raise _Rejected(AnonymousReason.REFUSED_PAYLOAD, f"session key {text[:40]!r} twice")
        session[text] = item
    return session


# -- writing -------------------------------------------------------------------------------------


class RailsSessionEncoder:
    """Writes session cookies the way a Rails 6.0+ app with GCM and the json serializer does.

    For the bundled demo's legacy app and for tests. `encode` returns the value as it goes on
    the wire (Rack escapes it with URI.encode_www_form_component), so it can be put straight
    into a Set-Cookie or Cookie header. `random_bytes` draws the IV (os.urandom unless a test
    needs repeatable output).
    """

    __slots__ = ("_cookie_name", "_key", "_layout", "_random_bytes")

    def __init__(
        self,
        cookie_name: str,
        secret: SessionSecret,
        layout: MetadataLayout | str = MetadataLayout.MESSAGE,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self._cookie_name = cookie_name
        self._layout = MetadataLayout(layout)
        self._key = _derive_keys(secret).gcm_key
        self._random_bytes = random_bytes

    def __repr__(self) -> str:
        return f"<RailsSessionEncoder {self._cookie_name}: layout {self._layout.value}>"

    def encode(self, session: Mapping[str, object], *, expires_at: float | None = None) -> str:
        """Encrypt `session`; `expires_at` (unix seconds) becomes the envelope's exp.

        Raises TypeError or ValueError for a session JSON cannot hold, as Rails would fail.
        """
        plaintext = self._wrap(session, expires_at)
        iv = self._random_bytes(_GCM_IV_BYTES)
        sealed = self._key.encrypt(iv, plaintext, None)
        parts = (sealed[:-_GCM_TAG_BYTES], iv, sealed[-_GCM_TAG_BYTES:])
        value = _SEPARATOR.join(base64.b64encode(part).decode("ascii") for part in parts)
        return quote(value, safe="")

    def _wrap(self, session: Mapping[str, object], expires_at: float | None) -> bytes:
        expiry = _iso8601_ms(expires_at) if expires_at is not None else None
        purpose = f"cookie.{self._cookie_name}"
        match self._layout:
            case MetadataLayout.MESSAGE:
                # messages/metadata.rb (6.1) Metadata.wrap; 7.1 wrap_in_metadata_legacy_envelope.
                message = base64.b64encode(_rails_json(session)).decode("ascii")
                return _rails_json({"_rails": {"message": message, "exp": expiry, "pur": purpose}})
            case MetadataLayout.DATA:
                # 7.1 wrap_in_metadata_envelope: the data inline, exp only when set.
                inner: dict[str, object] = {"data": dict(session)}
                if expiry is not None:
                    inner["exp"] = expiry
                inner["pur"] = purpose
                return _rails_json({"_rails": inner})
            case MetadataLayout.NONE:
                if expiry is None:
                    return _rails_json(session)
                # 6.1 Metadata.wrap still wraps when only an expiry is given, with a null purpose.
                message = base64.b64encode(_rails_json(session)).decode("ascii")
                return _rails_json({"_rails": {"message": message, "exp": expiry, "pur": None}})
            case _:
                assert_never(self._layout)


def _rails_json(value: object) -> bytes:
    """ActiveSupport::JSON.encode: compact, UTF-8, with <, >, & and U+2028/9 escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    for char, escaped in _JSON_ESCAPES:
        text = text.replace(char, escaped)
    return text.encode("utf-8")


# activesupport json/encoding.rb ESCAPED_CHARS with escape_html_entities_in_json (the default).
# These characters only ever occur inside JSON strings, so replacing them in the text is safe.
_JSON_ESCAPES: Final = (
    ("<", "\\u003c"),
    (">", "\\u003e"),
    ("&", "\\u0026"),
    ("\u2028", "\\u2028"),
    ("\u2029", "\\u2029"),
)


def _iso8601_ms(moment: float) -> str:
    """Time#utc.iso8601(3): "2024-01-02T03:04:05.000Z"."""
    stamp = datetime.fromtimestamp(moment, UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


# -- what the gateway reads out of a session ----------------------------------------------------


def session_user_id(session: Mapping[str, object], key: str) -> str | None:
    """The signed-in user's id under `key`, as a string, or None.

    `key` is looked up as is first ("user_id", Devise's "warden.user.user.key"), then as a
    dotted path through nested hashes ("auth.user.id"). Warden's value `[[id], salt]`
    (Devise's serialize_into_session: record.to_key, authenticatable_salt) and the older
    `["User", [id], salt]` give the id. Ids are ints or non-empty strings up to 256 characters.
    """
    value = session[key] if key in session else _walk(session, key.split("."))
    return _user_id_text(_warden_id(value))


_ABSENT: Final = object()


def _walk(node: object, path: Sequence[str]) -> object:
    for step in path:
        if not isinstance(node, Mapping) or step not in node:
            return _ABSENT
        node = node[step]
    return node


def _warden_id(value: object) -> object:
    if isinstance(value, list):
        if len(value) == 2 and isinstance(value[0], list) and len(value[0]) == 1:
            return value[0][0]
        if len(value) == 3 and isinstance(value[1], list) and len(value[1]) == 1:
            return value[1][0]
    return value


def _user_id_text(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and 0 < len(value) <= _MAX_USER_ID_CHARS:
        return value
    return None


def session_id_hash(session: Mapping[str, object]) -> str | None:
    """SHA-256 hex of session["session_id"], never the id itself; None when there is none.

    It equals the hash in Rack's private session id (Rack::Session::SessionId#private_id is
    "2::" + SHA256(public_id)), so it joins with logs of server-side stores without exposing
    a replayable value.
    """
    session_id = session.get("session_id")
    if not isinstance(session_id, str) or not session_id:
        return None
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()
