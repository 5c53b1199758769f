"""TLS on both sides of the real gateway: the HTTPS listener (ALPN, X-Forwarded-Proto, Secure
cookies, the Rails Origin check, the 308 redirect, certificate reload on SIGHUP) and https
backends (verification with SNI, mTLS, and a 502 naming why a handshake failed), with
certificates made for the module."""

from __future__ import annotations

import base64
import shutil
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from strangler.identity import (
    KeyDigest,
    RailsSessionEncoder,
    SessionSecret,
    mint_masked_token,
    new_session_token,
)
from tests.integration.abuse import read_head_bytes
from tests.integration.gateway_process import GatewayProcess, run_gateway
from tests.integration.pki import Pki, make_pki
from tests.integration.probes import wait_until
from tests.integration.upstreams import EchoUpstream


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def client_tls(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=pki.ca)


def _https_upstream(name: str, cert: Path, key: Path, **options: object) -> EchoUpstream:
    return EchoUpstream(name, ssl_certfile=str(cert), ssl_keyfile=str(key), **options).start()


@pytest.fixture(scope="module")
def upstreams(pki: Pki) -> Iterator[dict[str, EchoUpstream]]:
    started = {
        "legacy": EchoUpstream("legacy").start(),
        "secure": _https_upstream("secure", pki.server.cert, pki.server.key),
        "secure2": _https_upstream("secure2", pki.server.cert, pki.server.key),
        "expired": _https_upstream("expired", pki.expired.cert, pki.expired.key),
        "wrong": _https_upstream("wrong", pki.wrong_name.cert, pki.wrong_name.key),
        "mtls": _https_upstream(
            "mtls",
            pki.server.cert,
            pki.server.key,
            ssl_ca_certs=str(pki.ca),
            ssl_cert_reqs=ssl.CERT_REQUIRED,
        ),
    }
    yield started
    for upstream in started.values():
        upstream.stop()


class ClosingTlsServer:
    """An https server that answers one request per connection, then closes, and records for
    each handshake whether it resumed a session (the server's own view)."""

    def __init__(self, pki: Pki) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki.server.cert, pki.server.key)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.resumed: list[bool] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    read_head_bytes(conn)
                    self.resumed.append(conn.session_reused)
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )
            except OSError:
                continue

    def stop(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def closing_server(pki: Pki) -> Iterator[ClosingTlsServer]:
    server = ClosingTlsServer(pki)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def gateway(
    pki: Pki,
    upstreams: dict[str, EchoUpstream],
    closing_server: ClosingTlsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    folder = tmp_path_factory.mktemp("gw")
    # The listener's files are copies: the reload test rotates them in place.
    shutil.copy(pki.server.cert, folder / "live.pem")
    shutil.copy(pki.server.key, folder / "live-key.pem")
    port = {name: upstream.port for name, upstream in upstreams.items()}
    path = folder / "strangler.yaml"
    path.write_text(
        f"""\
listen: 127.0.0.1:0
tls:
  listen: 127.0.0.1:0
  cert: live.pem
  key: {folder / "live-key.pem"}
backends:
  legacy: {{url: "http://127.0.0.1:{port["legacy"]}/base"}}
  new:
    url: "https://127.0.0.1:{port["secure"]}/v2"
    tls: {{ca: {pki.ca}, server_name: upstream.test}}
  expired: {{url: "https://127.0.0.1:{port["expired"]}", tls: {{ca: {pki.ca}}}}}
  wrong_name:
    url: "https://127.0.0.1:{port["wrong"]}"
    tls: {{ca: {pki.ca}, server_name: upstream.test}}
  unknown_ca: {{url: "https://127.0.0.1:{port["secure"]}"}}
  mtls:
    url: "https://127.0.0.1:{port["mtls"]}"
    tls: {{ca: {pki.ca}, client_cert: {pki.client.cert}, client_key: {pki.client.key}}}
  mtls_without_cert: {{url: "https://127.0.0.1:{port["mtls"]}", tls: {{ca: {pki.ca}}}}}
  closing:
    url: "https://127.0.0.1:{closing_server.port}"
    tls: {{ca: {pki.ca}, server_name: upstream.test}}
  balanced:
    urls:
      - "https://127.0.0.1:{port["secure"]}"
      - "https://127.0.0.1:{port["secure2"]}"
      - "https://127.0.0.1:{port["wrong"]}"
    balance: round_robin
    tls: {{ca: {pki.ca}, server_name: upstream.test}}
    outlier: {{consecutive_failures: 1, eject_s: 60, max_ejected_percent: 50}}
default: legacy
routes:
  - {{name: secure, match: "ANY /secure/*rest", stage: new}}
  - {{name: expired, match: "GET /expired", backend: expired}}
  - {{name: wrong_name, match: "GET /wrong-name", backend: wrong_name}}
  - {{name: unknown_ca, match: "GET /unknown-ca", backend: unknown_ca}}
  - {{name: mtls, match: "GET /mtls", backend: mtls}}
  - {{name: mtls_without_cert, match: "GET /mtls-without-cert", backend: mtls_without_cert}}
  - {{name: balanced, match: "GET /balanced", backend: balanced}}
  - {{name: closing, match: "GET /closing", backend: closing}}
  - name: shadowed
    match: "GET /shadowed/*rest"
    stage: shadow
    shadow: {{noise_sample_rate: 0}}
  - name: fallback
    match: "GET /fallback"
    stage: canary
    canary: {{weight: 100, backend: expired, retry_on_legacy: true}}
  - name: cookie
    match: "GET /c/*rest"
    stage: canary
    canary: {{weight: 50, stickiness: [sticky_cookie]}}
admin: {{listen: "127.0.0.1:0"}}
"""
    )
    yield from run_gateway(path)


def _seen(answer: httpx.Response) -> dict[str, str]:
    assert answer.status_code == 200, answer.text
    return {name.lower(): value for name, value in answer.json()["headers"]}


def test_the_https_listener_serves_the_same_routes_and_says_https_upstream(
    gateway: GatewayProcess, client_tls: ssl.SSLContext
) -> None:
    assert gateway.tls_url is not None
    with httpx.Client(verify=client_tls) as client:
        secure = client.get(gateway.tls_url + "/hello?x=1")
        plain = client.get(gateway.url + "/hello?x=1")
    assert secure.json()["name"] == plain.json()["name"] == "legacy"
    # The backend URL's path prefix goes before every forwarded path, http backends too.
    assert secure.json()["path"] == "/base/hello"
    assert secure.json()["query"] == "x=1"
    assert _seen(secure)["x-forwarded-proto"] == "https"
    assert _seen(plain)["x-forwarded-proto"] == "http"


def test_alpn_picks_http_1_1(gateway: GatewayProcess, pki: Pki) -> None:
    assert gateway.tls_url is not None
    context = ssl.create_default_context(cafile=pki.ca)
    context.set_alpn_protocols(["h2", "http/1.1"])
    host, port = gateway.tls_url.removeprefix("https://").rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="gateway.test") as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_the_sticky_cookie_is_secure_over_tls_only(
    gateway: GatewayProcess, client_tls: ssl.SSLContext
) -> None:
    assert gateway.tls_url is not None
    with httpx.Client(verify=client_tls) as client:
        secure = client.get(gateway.tls_url + "/c/page").headers["set-cookie"]
        plain = client.get(gateway.url + "/c/page").headers["set-cookie"]
    assert secure.startswith("strangler_sticky=") and secure.endswith("; Secure")
    assert plain.startswith("strangler_sticky=") and "Secure" not in plain


def test_an_https_backend_is_verified_with_its_server_name(
    gateway: GatewayProcess, upstreams: dict[str, EchoUpstream]
) -> None:
    answer = httpx.post(gateway.url + "/secure/things?a=b", content=b"payload")
    assert answer.json()["name"] == "secure"
    assert answer.json()["path"] == "/v2/secure/things"
    assert answer.json()["body_bytes"] == len(b"payload")
    # Pooled: the next request reuses the TLS connection.
    again = httpx.get(gateway.url + "/secure/again")
    assert again.json()["path"] == "/v2/secure/again"


def test_a_balanced_https_backend_retries_and_ejects_the_server_that_fails_verification(
    gateway: GatewayProcess, upstreams: dict[str, EchoUpstream]
) -> None:
    wrong = f"127.0.0.1:{upstreams['wrong'].port}"
    answers = [httpx.get(gateway.url + "/balanced") for _ in range(6)]
    # The third server's certificate names another host: a GET that met it is sent on to the
    # next server, and the failure ejects it.
    assert [a.status_code for a in answers] == [200] * 6
    assert {a.json()["name"] for a in answers} == {"secure", "secure2"}
    line = gateway.wait_for_log(f"server {wrong}: ejected for 60 s after 1 failures in a row")
    assert "(last: tls_failed)" in line


def test_a_new_connection_to_an_https_backend_resumes_the_tls_session(
    gateway: GatewayProcess, closing_server: ClosingTlsServer
) -> None:
    # The server closes after every answer: each request pays a handshake, and every one after
    # the first resumes the session the first one left.
    answers = [httpx.get(gateway.url + "/closing") for _ in range(4)]
    assert [(a.status_code, a.text) for a in answers] == [(200, "ok")] * 4
    assert closing_server.resumed == [False, True, True, True]
    assert gateway.admin_url is not None
    admin = gateway.admin_url
    counted = (
        'strangler_upstream_tls_handshakes_total{backend="closing",resumed="false"} 1',
        'strangler_upstream_tls_handshakes_total{backend="closing",resumed="true"} 3',
    )

    def scraped() -> bool:
        metrics = httpx.get(admin + "/metrics").text
        return all(line in metrics for line in counted)

    wait_until(scraped, "the handshakes in /metrics")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_shadow_copy_reaches_an_https_backend_under_its_path_prefix(
    gateway: GatewayProcess, upstreams: dict[str, EchoUpstream], method: str
) -> None:
    # GET copies are pipelined on the shadow channel, HEAD copies go through the shadow pool.
    path = f"/shadowed/{method.lower()}"
    answer = httpx.request(method, gateway.url + path)
    assert (answer.status_code, answer.headers["x-upstream"]) == (200, "legacy")
    secure = upstreams["secure"]
    wait_until(lambda: "/v2" + path in secure.hits, f"the shadow copy of {method} {path}")


@pytest.mark.parametrize(
    ("path", "backend", "why"),
    [
        ("/expired", "expired", "certificate has expired"),
        # SNI and the name check both use server_name, not the URL's 127.0.0.1.
        (
            "/wrong-name",
            "wrong_name",
            "Hostname mismatch, certificate is not valid for 'upstream.test'",
        ),
        # No `ca`: the system store, which never heard of the test CA.
        ("/unknown-ca", "unknown_ca", "unable to get local issuer certificate"),
    ],
)
def test_a_certificate_that_does_not_verify_is_a_502_naming_why(
    gateway: GatewayProcess, path: str, backend: str, why: str
) -> None:
    answer = httpx.get(gateway.url + path)
    assert answer.status_code == 502
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert (problem["reason"], problem["backend"]) == ("tls_failed", backend)
    assert problem["title"] == "Upstream TLS handshake failed"
    assert why in problem["detail"]
    line = gateway.wait_for_log(f"route {backend}: answered 502 tls_failed")
    assert why in line
    assert gateway.admin_url is not None
    metrics = httpx.get(gateway.admin_url + "/metrics").text
    assert f'strangler_upstream_failures_total{{backend="{backend}",kind="tls_failed"}}' in metrics


def test_a_canary_whose_handshake_fails_falls_back_to_legacy(gateway: GatewayProcess) -> None:
    # No byte of the request reached the new side, so retry_on_legacy may send it to legacy.
    answer = httpx.get(gateway.url + "/fallback")
    assert (answer.status_code, answer.json()["name"]) == (200, "legacy")


def test_mtls_works_with_the_client_certificate_and_fails_without(
    gateway: GatewayProcess,
) -> None:
    answer = httpx.get(gateway.url + "/mtls")
    assert (answer.status_code, answer.json()["name"]) == (200, "mtls")
    refused = httpx.get(gateway.url + "/mtls-without-cert")
    assert refused.status_code == 502
    assert refused.headers["content-type"] == "application/problem+json"
    # TLS 1.3 (RFC 8446 §4.4.2): the backend refuses the missing certificate after the gateway
    # finished its side of the handshake; uvloop reports the alert as a plain close.
    assert refused.json()["reason"] == "upstream_reset"


def _handshake(url: str, context: ssl.SSLContext) -> tuple[int, str | None]:
    """A fresh connection's certificate serial number and TLS version."""
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="gateway.test") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
        version = tls.version()
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number, version


def _serial(url: str, context: ssl.SSLContext) -> int:
    return _handshake(url, context)[0]


def test_sighup_serves_a_new_certificate_and_keeps_open_connections(
    gateway: GatewayProcess, pki: Pki, client_tls: ssl.SSLContext
) -> None:
    assert gateway.tls_url is not None

    def serial_of(path: Path) -> int:
        return x509.load_pem_x509_certificate(path.read_bytes()).serial_number

    live = gateway.config_path.parent
    with httpx.Client(verify=client_tls) as open_client:
        before = open_client.get(gateway.tls_url + "/before")
        assert before.status_code == 200
        assert _serial(gateway.tls_url, client_tls) == serial_of(pki.server.cert)
        shutil.copy(pki.rotated.cert, live / "live.pem")
        shutil.copy(pki.rotated.key, live / "live-key.pem")
        gateway.signal(signal.SIGHUP)
        gateway.wait_for_log("tls.cert: serving")
        assert _serial(gateway.tls_url, client_tls) == serial_of(pki.rotated.cert)
        # The keep-alive connection opened before the reload answers on.
        after = open_client.get(gateway.tls_url + "/after")
        assert after.status_code == 200
        assert _client_address(after) == _client_address(before)
    # A rotation caught half-written is refused, and the certificate in force stays.
    (live / "live.pem").write_text("-----BEGIN CERTIFICATE-----\ntruncated\n")
    gateway.signal(signal.SIGHUP)
    gateway.wait_for_log("config reload refused")
    assert _serial(gateway.tls_url, client_tls) == serial_of(pki.rotated.cert)


def _client_address(answer: httpx.Response) -> object:
    """The client side's address of the connection that carried `answer`: the same address is
    the same connection."""
    return answer.extensions["network_stream"].get_extra_info("client_addr")


def test_redirect_plain_answers_308_to_https(
    pki: Pki, upstreams: dict[str, EchoUpstream], tmp_path: Path, client_tls: ssl.SSLContext
) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(
        "listen: 127.0.0.1:0\n"
        f"tls: {{listen: 127.0.0.1:0, cert: {pki.server.cert}, key: {pki.server.key}, "
        "redirect_plain: true}\n"
        f'backends: {{legacy: {{url: "{upstreams["legacy"].url}"}}}}\n'
        "admin: {listen: null}\n"
    )
    for gateway in run_gateway(path):
        assert gateway.tls_url is not None
        https_port = gateway.tls_url.rsplit(":", 1)[1]
        answer = httpx.post(
            gateway.url + "/orders?id=7", content=b"x", headers={"Host": "shop.test:8000"}
        )
        assert answer.status_code == 308
        assert answer.headers["location"] == f"https://shop.test:{https_port}/orders?id=7"
        assert "/orders" not in upstreams["legacy"].hits
        # Nothing but a host (and port) goes into the Location header.
        with socket.create_connection((gateway.host, gateway.port), timeout=5) as raw:
            raw.sendall(b'GET /x HTTP/1.1\r\nHost: a"b.test\r\n\r\n')
            assert raw.recv(65536).startswith(b"HTTP/1.1 400 Bad Request\r\n")
        with httpx.Client(verify=client_tls) as client:
            followed = client.get(gateway.url + "/page", follow_redirects=True)
        assert followed.status_code == 200
        assert followed.url.scheme == "https"


def test_a_tls_only_gateway_with_two_workers(
    pki: Pki, upstreams: dict[str, EchoUpstream], tmp_path: Path, client_tls: ssl.SSLContext
) -> None:
    path = tmp_path / "strangler.yaml"
    path.write_text(
        "listen: null\n"
        f"tls: {{listen: 127.0.0.1:0, cert: {pki.server.cert}, key: {pki.server.key}, "
        "min_version: '1.3'}\n"
        f'backends: {{legacy: {{url: "{upstreams["legacy"].url}"}}}}\n'
        "admin: {listen: null}\n"
    )
    for gateway in run_gateway(path, workers=2):
        assert gateway.tls_url is not None
        with httpx.Client(verify=client_tls) as client:
            answer = client.get(gateway.tls_url + "/only-tls")
        assert (answer.status_code, answer.json()["path"]) == (200, "/only-tls")
        assert _handshake(gateway.tls_url, client_tls)[1] == "TLSv1.3"
        too_old = ssl.create_default_context(cafile=pki.ca)
        too_old.maximum_version = ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            _handshake(gateway.tls_url, too_old)


def test_the_rails_origin_check_knows_the_request_came_over_https(
    pki: Pki, upstreams: dict[str, EchoUpstream], tmp_path: Path, client_tls: ssl.SSLContext
) -> None:
    secret = "f" * 32 + "0123456789abcdef" * 6
    path = tmp_path / "strangler.yaml"
    legacy = upstreams["legacy"].url
    path.write_text(
        "listen: 127.0.0.1:0\n"
        f"tls: {{listen: 127.0.0.1:0, cert: {pki.server.cert}, key: {pki.server.key}}}\n"
        f'backends: {{legacy: {{url: "{legacy}"}}, new: {{url: "{legacy}"}}}}\n'
        'routes: [{name: echo.new, match: "ANY /echo/*rest", stage: new}]\n'
        "rails: {cookie: _app_session, secret_key_base_env: STRANGLER_TEST_SECRET_KEY_BASE}\n"
        f"identity: {{keys_path: {tmp_path / 'keys.json'}, issuer: strangler-test}}\n"
        "admin: {listen: null}\n"
    )
    csrf = new_session_token()
    encoder = RailsSessionEncoder("_app_session", SessionSecret(secret.encode(), KeyDigest.SHA1))
    cookie = encoder.encode({"session_id": "s-1", "user_id": 1, "_csrf_token": csrf})
    raw = base64.urlsafe_b64decode(csrf + "=" * (-len(csrf) % 4))
    headers = {"Cookie": f"_app_session={cookie}", "X-CSRF-Token": mint_masked_token(raw)}
    env = {"STRANGLER_TEST_SECRET_KEY_BASE": secret}
    for gateway in run_gateway(path, env=env):
        assert gateway.tls_url is not None
        https_origin = gateway.tls_url
        http_origin = gateway.tls_url.replace("https://", "http://")
        with httpx.Client(verify=client_tls) as client:
            same = client.post(
                gateway.tls_url + "/echo/s", headers={**headers, "Origin": https_origin}
            )
            downgraded = client.post(
                gateway.tls_url + "/echo/s", headers={**headers, "Origin": http_origin}
            )
        assert same.status_code == 200, same.text
        assert downgraded.status_code == 403
        assert "bad_origin" in downgraded.json()["detail"]
