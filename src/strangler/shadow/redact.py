"""Redaction of difference examples before they are stored or logged.

Rules:
- Pure. Filters work like Rails' `config.filter_parameters`: a key whose name contains a filter
  (case-insensitive, so "passw" covers "password" and "password_confirmation") has its value
  replaced by "[FILTERED]", at any depth of a JSON value. `-` and `_` are the same character
  in keys and filters, so "_key" covers the header name X-Api-Key as it covers api_key.
- A filter written `^name$` matches the whole key only (or a whole part of a bracketed form
  name: `user[code]`): for short names that are also the end of harmless ones ("code" is an
  OAuth authorization code, "status_code" and "postcode" are not secrets).
- The Rails session cookie's name, when the gateway knows it, is such a whole-key filter.
- A difference whose path goes through such a key has both its values filtered. The one
  exception is `header:set-cookie`: the diff engine keeps cookie names only there, never values.
- In text (HTML, form bodies, query strings, header lines), `name=value`, `"name": "value"` and
  `name="..." value="..."` pairs whose name matches are filtered too, so a CSRF token in a form
  or `sessionid=` in a Cookie line never reaches the store.
- Whatever their key, and with or without filters, values that look like credentials are
  filtered in every string: JWTs and other base64 JSON (`eyJ...`, also when cut short), the
  token after `Bearer`, the credentials after `Basic`, and Rails signed or encrypted messages
  (`data--digest`, `data--iv--tag`: the session cookie's own shape).
- Headers never reach examples at all (only the request line and the two values do).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import replace

from strangler.diff import Difference

FILTERED = "[FILTERED]"

_PATH_KEY = re.compile(r"[A-Za-z0-9_\-]+")
# The diff engine compares Set-Cookie by cookie names only (diff/headers.py).
_NAMES_ONLY_PATHS = frozenset({"header:set-cookie"})

# Base64 of `{"`: the start of every JWT, of Rails 5.2+ message envelopes, of most encoded state.
# Eight more characters, and any dot-separated segments after it (a JWT cut at 200 characters
# still leaks its claims).
_JWT = r"(?<![A-Za-z0-9_\-])eyJ[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*)*"
# Rails MessageVerifier (`data--hexdigest`) and MessageEncryptor (`data--iv--tag`), as Rack
# sends them: base64, possibly URL-escaped. Matches start only where a run starts, so a long
# run without `--` costs one pass, not one per character.
_B64_ESCAPED = r"(?:[A-Za-z0-9+/=]|%[0-9A-Fa-f]{2})"
_RAILS_MESSAGE = rf"(?<![A-Za-z0-9+/=%]){_B64_ESCAPED}{{16,}}(?:--{_B64_ESCAPED}{{16,}}){{1,2}}"
_VALUE_SHAPES = re.compile(rf"{_JWT}|{_RAILS_MESSAGE}")
# RFC 9110 §11.1: the scheme is case-insensitive; token68 is the credential's syntax. At least
# eight characters, so "bearer of bad news" in a page stays readable.
_BEARER = re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9\-._~+/]{8,}=*")
_BASIC = re.compile(r"(?i)\b(basic\s+)([A-Za-z0-9+/]{8,}={0,2})")

_KEY_CHARS = r"[\w\-\[\]]"
# The value of a pair whose name is a secret. A match starts only where a name starts, and the
# attributes between name= and value= are bounded: linear in the text, whatever it holds.
_PAIRS = re.compile(
    rf"""(?ix)
    ( name=["'](?P<field>{_KEY_CHARS}+)["'] [^>]{{0,200}}? (?:value|content)=  # <input name=
    | (?<!{_KEY_CHARS}) ["']? (?P<key>{_KEY_CHARS}+) ["']? \s* [:=] \s*   # token=, "token":
    )
    (?P<value>
      "[^"]*"?                              # a quoted value (its end may have been cut off)
    | '[^']*'?
    | (?:(?:bearer|basic|token)\s+)?[^"'\s&<>,;{{}}]+
    )
    """
)


class Redactor:
    """Applies one route's filters, and the credential shapes, to differences.

    `cookie` is the Rails session cookie's name (`rails.cookie`), filtered as a whole key."""

    def __init__(self, filters: Sequence[str], *, cookie: str | None = None) -> None:
        self.filters = tuple(f.lower() for f in filters if f)
        self.cookie = cookie
        names = [*self.filters, *([f"^{cookie.lower()}$"] if cookie else [])]
        self._keys = re.compile("|".join(map(_key_pattern, names)) or r"(?!)")

    def __repr__(self) -> str:
        cookie = f", cookie {self.cookie}" if self.cookie else ""
        return f"<Redactor {len(self.filters)} filters{cookie}>"

    def is_secret(self, key: str) -> bool:
        return self._keys.search(key.lower().replace("-", "_")) is not None

    def value(self, value: object) -> object:
        if isinstance(value, dict):
            return {
                k: FILTERED if self.is_secret(str(k)) else self.value(v) for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def text(self, text: str) -> str:
        text = _VALUE_SHAPES.sub(FILTERED, text)
        text = _BEARER.sub(lambda m: m.group(1) + FILTERED, text)
        text = _BASIC.sub(_basic, text)
        return _PAIRS.sub(self._pair, text)

    def _pair(self, match: re.Match[str]) -> str:
        key = match.group("key") or match.group("field")
        if not self.is_secret(key):
            return match.group(0)
        value = match.group("value")
        quote = value[0] if value[0] in "\"'" else ""
        closing = quote if len(value) > 1 and value.endswith(quote) else ""
        return match.group(0)[: match.start("value") - match.start()] + quote + FILTERED + closing

    def request_line(self, line: str) -> str:
        """`METHOD /path` as examples and logs may show it: a credential in the path (a reset
        link's token, `;jsessionid=`) filtered like any text."""
        return self.text(line)

    def difference(self, difference: Difference) -> Difference:
        if difference.path not in _NAMES_ONLY_PATHS and any(
            self.is_secret(key) for key in _PATH_KEY.findall(difference.path)
        ):
            return replace(difference, primary=FILTERED, shadow=FILTERED, detail="")
        return replace(
            difference,
            primary=self.value(difference.primary),
            shadow=self.value(difference.shadow),
            detail=self.text(difference.detail),
        )


def _key_pattern(name: str) -> str:
    """A filter as a regex on a lowercased key with `-` read as `_`; `^...$` anchor at the ends
    of the key or of a bracketed part of it."""
    start, end = name.startswith("^"), len(name) > 1 and name.endswith("$")
    core = re.escape(name[int(start) : len(name) - int(end)].replace("-", "_"))
    return (r"(?<![^\[\]])" if start else "") + core + (r"(?![^\[\]])" if end else "")


def _basic(match: re.Match[str]) -> str:
    """Basic credentials are base64 of `user:password`; other words after "basic" are kept."""
    encoded = match.group(2)
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        return match.group(0)
    return match.group(1) + FILTERED if b":" in decoded else match.group(0)
