"""The TLS keys of the config: what each refuses, with file, line and field; certificate files
that are missing or unusable are refused when the snapshot is built (at start, at check-config,
and by a reload, which then keeps the certificate in force)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from strangler.config import parse_config
from strangler.errors import ConfigError
from strangler.runtime.snapshot_build import load_snapshot


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        parse_config(textwrap.dedent(text), "s.yaml")
    return [(p.line, p.field, p.message) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "listen: null\nbackends: {legacy: {url: 'http://x:1'}}\n",
            (1, "listen", "is null and there is no `tls:` listener: nothing would serve"),
        ),
        (
            "listen: null\ntls: {cert: c.pem, key: k.pem, redirect_plain: true}\n"
            "backends: {legacy: {url: 'http://x:1'}}\n",
            (
                2,
                "tls.redirect_plain",
                "is true but `listen` is null: there is no plain listener to redirect",
            ),
        ),
        (
            "listen: 127.0.0.1:8443\ntls: {listen: 127.0.0.1:8443, cert: c.pem, key: k.pem}\n"
            "backends: {legacy: {url: 'http://x:1'}}\n",
            (
                2,
                "tls.listen",
                "is the same address as `listen` (127.0.0.1:8443); each listener needs a port "
                "of its own",
            ),
        ),
        (
            "tls: {cert: c.pem, key: k.pem, min_version: '1.1'}\n"
            "backends: {legacy: {url: 'http://x:1'}}\n",
            (1, "tls.min_version", "Input should be '1.2' or '1.3' (got '1.1')"),
        ),
        (
            "backends:\n  legacy: {url: 'http://x:1', tls: {ca: ca.pem}}\n",
            (
                2,
                "backends.legacy",
                "`tls:` is only for https:// backends; this url is http:// "
                "(got {'url': 'http://x:1', 'tls': {'ca': 'ca.pem'}})",
            ),
        ),
        (
            "backends:\n  legacy:\n    url: https://x\n    tls: {client_cert: c.pem}\n",
            (
                4,
                "backends.legacy.tls",
                "client_cert and client_key go together: give both or neither "
                "(got {'client_cert': 'c.pem'})",
            ),
        ),
    ],
)
def test_tls_keys_say_what_is_wrong(text: str, problem: tuple[int, str, str]) -> None:
    assert _problems(text) == [problem]


def test_an_https_backend_defaults_to_port_443_and_keeps_its_path_prefix() -> None:
    config = parse_config("backends: {legacy: {url: 'https://api.internal/v2/'}}\n", "s.yaml")
    backend = config.backends["legacy"]
    assert (backend.port, backend.path_prefix, backend.is_https) == (443, "/v2", True)


def test_a_tls_only_gateway_is_accepted() -> None:
    config = parse_config(
        "listen: null\ntls: {cert: c.pem, key: k.pem}\nbackends: {legacy: {url: 'http://x:1'}}\n",
        "s.yaml",
    )
    assert config.listen is None and config.tls is not None


@pytest.mark.parametrize(
    ("text", "line", "field", "message"),
    [
        (
            "tls:\n  cert: missing.pem\n  key: key.pem\n",
            4,
            "tls.cert",
            "file missing.pem not found (looked for {folder}/missing.pem)",
        ),
        (
            "tls:\n  cert: cert.pem\n  key: key.pem\n",
            4,
            "tls.cert",
            "cannot use {folder}/cert.pem with key {folder}/key.pem: ",
        ),
        (
            "backends:\n  legacy: {url: 'http://x:1'}\n"
            "  new: {url: 'https://x', tls: {ca: nowhere.pem}}\n",
            4,
            "backends.new.tls.ca",
            "file nowhere.pem not found (looked for {folder}/nowhere.pem)",
        ),
    ],
)
def test_certificate_files_are_checked_when_the_snapshot_is_built(
    tmp_path: Path, text: str, line: int, field: str, message: str
) -> None:
    (tmp_path / "cert.pem").write_text("not a certificate\n")
    (tmp_path / "key.pem").write_text("not a key\n")
    path = tmp_path / "strangler.yaml"
    backends = "" if "backends:" in text else "backends: {legacy: {url: 'http://x:1'}}\n"
    path.write_text(f"listen: 127.0.0.1:0\n{backends}{text}")
    with pytest.raises(ConfigError) as caught:
        load_snapshot(path)
    error = caught.value
    assert (error.line, error.field) == (line, field)
    assert error.message.startswith(message.format(folder=tmp_path))
