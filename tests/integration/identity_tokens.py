"""Reading the identity tokens a gateway minted, as a new backend would: verified against the
gateway's key ring (its published JWKS), never just decoded."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jwt

from strangler.identity.tokens import KeyRingFile


def verified_claims(
    keys_path: Path, token: str, *, issuer: str, audience: str | None
) -> dict[str, Any]:
    """The claims of `token` once its signature (by a key of the ring at `keys_path`), issuer
    and, unless `audience` is None, `aud` are checked."""
    jwks = KeyRingFile(keys_path).current().jwks(time.time())
    keys = {key.key_id: key for key in jwt.PyJWKSet.from_dict(jwks).keys}
    kid = jwt.get_unverified_header(token)["kid"]
    claims: dict[str, Any] = jwt.decode(
        token,
        keys[kid],
        algorithms=["EdDSA"],
        issuer=issuer,
        audience=audience,
        options={"verify_aud": audience is not None},
    )
    return claims
