"""The TLS keys of the config: what each refuses, with file, line and field; certificate files
that are missing or unusable are refused when the snapshot is built (at start, at check-config,
and by a reload, which then keeps the certificate in force)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from strangler.config import load_config, parse_config
from strangler.errors import ConfigError
from strangler.proxy.headers import with_path_prefix
from strangler.runtime.snapshot_build import build_snapshot, load_snapshot
from tests.integration.pki import make_pki


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


@pytest.mark.parametrize(
    ("head", "prefixed"),
    [
        (b"GET /a?b=c HTTP/1.1\r\n", b"GET /v2/a?b=c HTTP/1.1\r\n"),
        (b"GET / HTTP/1.1\r\n", b"GET /v2/ HTTP/1.1\r\n"),
        # The asterisk-form names no path.
        (b"OPTIONS * HTTP/1.1\r\n", b"OPTIONS * HTTP/1.1\r\n"),
    ],
)
def test_the_path_prefix_goes_before_the_path(head: bytes, prefixed: bytes) -> None:
    assert with_path_prefix(head, b"/v2") == prefixed


def test_a_state_change_reuses_the_certificates_and_a_reload_reads_them_again(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path / "pki")
    path = tmp_path / "strangler.yaml"
    path.write_text(
        f"tls: {{listen: 127.0.0.1:0, cert: {pki.server.cert}, key: {pki.server.key}}}\n"
        "backends:\n"
        "  legacy: {url: 'http://x:1'}\n"
        f"  new: {{url: 'https://x/v2', tls: {{ca: {pki.ca}}}}}\n"
    )
    first = load_snapshot(path)
    pki.server.cert.unlink()
    pki.ca.unlink()
    again = build_snapshot(load_config(path), source=str(path), tls_from=first)
    assert again.server_tls is first.server_tls
    assert again.backends["new"].ssl_context is first.backends["new"].ssl_context
    with pytest.raises(ConfigError) as caught:
        build_snapshot(load_config(path), source=str(path))
    assert caught.value.field == "backends.new.tls.ca"
