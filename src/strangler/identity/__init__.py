"""The Rails bridge: who is this request, as the legacy Rails app would say.

Pure cores: `rails_session` reads Rails cookie-store sessions (AES-GCM and legacy AES-CBC,
purpose and expiry metadata, json/marshal/hybrid serializers, secret rotation) and never raises
on a cookie; `ruby_marshal` reads Marshal data of plain values only and refuses every object;
`csrf` checks Rails authenticity tokens and request origins.
"""

from strangler.identity.csrf import (
    AUTHENTICITY_TOKEN_BYTES,
    CsrfVerdict,
    ForwardedProtoRule,
    form_authenticity_token,
    form_field,
    mint_masked_token,
    new_session_token,
    request_base_url,
    session_csrf_token,
    verify_authenticity_token,
    verify_origin,
)
from strangler.identity.rails_session import (
    MAX_COOKIE_VALUE_BYTES,
    AnonymousReason,
    KeyDigest,
    MetadataLayout,
    RailsSessionDecoder,
    RailsSessionEncoder,
    RailsSessionSettings,
    Serializer,
    SessionOutcome,
    SessionSecret,
    find_cookie,
    session_id_hash,
    session_user_id,
)
from strangler.identity.ruby_marshal import MarshalRefused
from strangler.identity.tokens import (
    IdentityMinter,
    KeyRing,
    KeyRingError,
    KeyRingFile,
    KeyRingSource,
    KeyState,
    RotationTooEarly,
    SigningKey,
    jwk_thumbprint,
    rotate_key_ring,
)

__all__ = [
    "AUTHENTICITY_TOKEN_BYTES",
    "MAX_COOKIE_VALUE_BYTES",
    "AnonymousReason",
    "CsrfVerdict",
    "ForwardedProtoRule",
    "IdentityMinter",
    "KeyDigest",
    "KeyRing",
    "KeyRingError",
    "KeyRingFile",
    "KeyRingSource",
    "KeyState",
    "MarshalRefused",
    "MetadataLayout",
    "RailsSessionDecoder",
    "RailsSessionEncoder",
    "RailsSessionSettings",
    "RotationTooEarly",
    "Serializer",
    "SessionOutcome",
    "SessionSecret",
    "SigningKey",
    "find_cookie",
    "form_authenticity_token",
    "form_field",
    "jwk_thumbprint",
    "mint_masked_token",
    "new_session_token",
    "request_base_url",
    "rotate_key_ring",
    "session_csrf_token",
    "session_id_hash",
    "session_user_id",
    "verify_authenticity_token",
    "verify_origin",
]
