"""The registry client's HTTP transport: connections kept and reused across a push's
requests, the environment's proxies (HTTPS_PROXY through CONNECT, HTTP_PROXY forwarding,
NO_PROXY), 429 and 408 answers retried after the Retry-After the registry asks for (within
the push's deadline), and redirects of GET and HEAD followed a bounded number of times,
credentials only to the registry's own origin."""

from __future__ import annotations

import base64
import email.utils
import http.client
import http.server
import ipaddress
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_conf
from hostile_registry import (
    BASIC,
    PASSWORD,
    SECRETS,
    USER,
    Answer,
    HostileServer,
    Seen,
)

from layered_image.cli import main
from layered_image.registry import client
from layered_image.registry.push import PARALLEL

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch) -> None:
    """Each test its own blob cache, no proxy but the one it sets, and short backoffs."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setattr(client.Registry, "retry_pause", 0.01)


@pytest.fixture
def tls(trusting_the_test_ca):
    return trusting_the_test_ca


@pytest.fixture
def conf(tmp_path: Path, fake_store: Path) -> Path:
    """Three store paths, each its own layer: four blobs with the config."""
    paths = sorted(str(p) for p in fake_store.iterdir())
    return make_conf(tmp_path, [[path] for path in paths], store_dir=str(fake_store))


Overrides = Callable[[str, str, dict[str, str]], Answer | None]


def registry(accepted: str = "", overrides: Overrides | None = None) -> Callable[..., Answer]:
    """Enough of a registry for a push, asking for Basic credentials when `accepted` is
    set; `overrides(method, path, headers)` may answer first."""

    def route(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if accepted and headers.get("Authorization") != accepted:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b"{}"
        answer = overrides(method, path, headers) if overrides else None
        if answer is not None:
            return answer
        if method == "HEAD":
            return 404, {}, b""
        if method == "POST" and "/blobs/uploads/" in path:
            return 202, {"Location": "/v2/test/image/blobs/uploads/1"}, b""
        if method == "PUT":
            return 201, {}, b""
        return (200, {}, b"{}") if path == "/v2/" else (404, {}, b"")

    return route


def push(conf: Path, host: str, *extra: str) -> int:
    return main(["push", str(conf), f"docker://{host}/test/image:1", *extra])


def push_with_credentials(conf: Path, host: str) -> int:
    return push(conf, host, "--creds", f"{USER}:{PASSWORD}")


def once(answer: Answer, method: str, path_part: str = "") -> Overrides:
    """`answer` for the first request of `method` (whose path holds `path_part`), then the usual."""
    given = threading.Event()

    def overrides(method_: str, path: str, headers: dict[str, str]) -> Answer | None:
        if method_ == method and path_part in path and not given.is_set():
            given.set()
            return answer
        return None

    return overrides


# 429 and 408


@pytest.mark.parametrize("status", [429, 408])
def test_a_busy_registry_is_retried_after_the_time_it_asks_for(conf, servers, capsys, status):
    server = servers(
        "127.0.0.1", registry(overrides=once((status, {"Retry-After": "1"}, b"slow down"), "POST"))
    )
    started = time.monotonic()
    code = push(conf, server.host, "--tls-verify=false")
    seconds = time.monotonic() - started
    error = capsys.readouterr().err
    assert code == 0, error
    assert seconds >= 1.0, "the registry asked for a second"
    assert error.count("retrying") == 1 and f"{status}" in error
    assert sum(seen.method == "PUT" and "/manifests/" in seen.path for seen in servers.log) == 1


@pytest.mark.parametrize(
    ("status", "says"),
    [(404, "does not answer as a registry: GET /v2/ answered 404"), (503, "is down: GET /v2/ answered 503")],
)
def test_a_server_that_is_no_registry_is_one_line_at_once(conf, servers, capsys, status, says):
    """A web server (GET /v2/ is 404) or a registry that is down: no blob is tried."""
    front_page = registry(
        overrides=lambda method, path, headers: (status, {}, b"<html>") if path == "/v2/" else None
    )
    server = servers("127.0.0.1", front_page)
    code = push(conf, server.host, "--tls-verify=false")
    error = capsys.readouterr().err
    assert code == 1 and says in error and error.count("\n") == 1, error
    assert [seen.path for seen in servers.log if seen.path != "/v2/"] == []


def test_not_implemented_is_not_retried(conf, servers, capsys):
    no_uploads = registry(
        overrides=lambda method, path, headers: (501, {}, b"no uploads") if method == "POST" else None
    )
    server = servers("127.0.0.1", no_uploads)
    code = push(conf, server.host, "--tls-verify=false")
    error = capsys.readouterr().err
    assert code == 1 and "retrying" not in error and "501 no uploads" in error.splitlines()[-1], error
    assert sum(seen.method == "POST" for seen in servers.log) <= 4  # each blob once at most, no retries


def test_retry_after_as_an_http_date(conf, servers, capsys):
    when = email.utils.formatdate(time.time() + 2, usegmt=True)  # whole seconds: 1 to 2 s ahead
    server = servers(
        "127.0.0.1", registry(overrides=once((429, {"Retry-After": when}, b""), "PUT", "/manifests/"))
    )
    started = time.monotonic()
    code = push(conf, server.host, "--tls-verify=false")
    error = capsys.readouterr().err
    assert code == 0, error
    assert time.monotonic() - started >= 1.0


def test_a_wait_past_the_push_deadline_is_not_waited(conf, servers, capsys, monkeypatch):
    """An hour asked for (capped at a minute), and the push has seconds left: it stops at once."""
    monkeypatch.setattr(client, "PUSH_SECONDS", 5)
    server = servers("127.0.0.1", registry(overrides=once((429, {"Retry-After": "3600"}, b""), "POST")))
    started = time.monotonic()
    code = push(conf, server.host, "--tls-verify=false")
    error = capsys.readouterr().err
    assert code == 1 and "deadline" in error.strip().splitlines()[-1], error
    assert time.monotonic() - started < 5


def test_a_registry_that_stays_busy_is_given_up(conf, servers, capsys, monkeypatch):
    monkeypatch.setattr(client, "RETRIES", 3)

    def busy(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        return (429, {"Retry-After": "0"}, b"") if method == "POST" else None

    server = servers("127.0.0.1", registry(overrides=busy))
    code = push(conf, server.host, "--tls-verify=false")
    error = capsys.readouterr().err
    assert code == 1 and "gave up after 3 tries" in error and "429" in error, error


# Connections


def count_connections(server: HostileServer) -> Callable[[], int]:
    """How many TCP connections `server` has accepted so far."""
    listening = server.servers[0]
    accepted = [0]
    accept = listening.get_request

    def counting_accept():
        accepted[0] += 1
        return accept()

    listening.get_request = counting_accept
    return lambda: accepted[0]


def test_a_push_reuses_its_connections(conf, servers, tls, capsys):
    server = servers("127.0.0.1", registry(BASIC), tls)
    connections = count_connections(server)
    assert push_with_credentials(conf, server.host) == 0, capsys.readouterr().err
    requests = len(servers.log)
    assert requests == 14  # the handshake (challenged), 4 blobs of 3 requests each, the manifest
    assert connections() <= PARALLEL + 1 < requests  # the push's threads', the handshake's


# Proxies


class LoopbackProxy:
    """An HTTP proxy as a company's would be, to loopback addresses only: CONNECT tunnels
    (https) and forwarding of absolute URIs (http). Logs each request line and its headers."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []  # names in lower case
        self.url = ""

    def start(self) -> LoopbackProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _logged(self) -> None:
                proxy.requests.append(f"{self.command} {self.path}")
                proxy.headers.append({k.lower(): v for k, v in self.headers.items()})

            def do_CONNECT(self) -> None:
                self._logged()
                host, _, port = self.path.rpartition(":")
                if not _loopback(host):
                    self.send_error(403)
                    return
                try:
                    upstream = socket.create_connection((host, int(port)), timeout=30)
                except OSError:
                    self.send_error(502)
                    return
                with upstream:
                    self.send_response(200, "Connection established")
                    self.end_headers()
                    _pipe(self.connection, upstream)
                self.close_connection = True

            def _forward(self) -> None:
                self._logged()
                url = urllib.parse.urlsplit(self.path)
                if url.scheme != "http" or not _loopback(url.hostname or ""):
                    self.send_error(403)
                    return
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hop_by_hop = ("connection", "proxy-connection", "proxy-authorization")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in hop_by_hop}
                upstream = http.client.HTTPConnection(url.netloc, timeout=30)
                target = url.path + (f"?{url.query}" if url.query else "")
                upstream.request(self.command, target, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                upstream.close()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", answer.getheader("Content-Length") or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _pipe(one: socket.socket, other: socket.socket, idle: float = 30) -> None:
    """Copy bytes both ways until either side closes (or all is quiet for `idle` seconds)."""
    while True:
        readable, _, _ = select.select([one, other], [], [], idle)
        if not readable:
            return
        for source in readable:
            data = source.recv(65536)
            if not data:
                return
            (other if source is one else one).sendall(data)


def fresh_blob_cache(tmp_path: Path, monkeypatch) -> None:
    """For a second push in this process: with its layers' digests recorded, it would make
    the layers in the upload threads, which in-process (its planner spawned, not forked)
    trips over the planner's pipe, a matter apart from the transport."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-again"))


@pytest.fixture
def proxy():
    running = LoopbackProxy().start()
    yield running
    running.stop()


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy"])
def test_https_goes_through_the_proxy_the_environment_names(
    tmp_path, conf, servers, tls, proxy, monkeypatch, variable
):
    server = servers("127.0.0.1", registry(BASIC), tls)
    monkeypatch.setenv(variable, proxy.url.replace("://", "://proxy-user:pr%40xy@"))
    assert push_with_credentials(conf, server.host) == 0
    assert proxy.requests and set(proxy.requests) == {f"CONNECT {server.host}"}  # tunnels, nothing else
    assert len(proxy.requests) < len(servers.log)  # (tunnels kept for several requests)
    expected = "Basic " + base64.b64encode(b"proxy-user:pr@xy").decode()
    assert all(headers.get("proxy-authorization") == expected for headers in proxy.headers)
    assert not any(secret in str(headers) for headers in proxy.headers for secret in SECRETS)
    proxy.requests.clear()
    fresh_blob_cache(tmp_path, monkeypatch)
    monkeypatch.setenv(variable.replace("HTTPS", "NO").replace("https", "no"), "127.0.0.1")
    assert push_with_credentials(conf, server.host) == 0
    assert proxy.requests == []  # NO_PROXY: straight to the registry


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_plain_http_is_forwarded_by_the_proxy_the_environment_names(
    tmp_path, conf, servers, proxy, monkeypatch, variable
):
    server = servers("127.0.0.1", registry())
    monkeypatch.setenv(variable, proxy.url)
    assert push(conf, server.host, "--tls-verify=false") == 0
    forwarded = [line for line in proxy.requests if f" http://{server.host}/v2/" in line]
    assert forwarded and len(forwarded) == len(proxy.requests) == len(servers.log)
    assert any(line.startswith("PUT ") and "/manifests/1" in line for line in forwarded)
    proxy.requests.clear()
    fresh_blob_cache(tmp_path, monkeypatch)
    monkeypatch.setenv(variable.replace("HTTP", "NO").replace("http", "no"), "localhost,127.0.0.1")
    assert push(conf, server.host, "--tls-verify=false") == 0
    assert proxy.requests == []


def test_an_unreachable_proxy_is_one_line(conf, servers, monkeypatch, capsys):
    server = servers("127.0.0.1", registry())
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = listener.getsockname()[1]
    listener.close()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(client, "RETRIES", 2)
    assert push(conf, server.host, "--tls-verify=false") == 1
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.count("\n") == 1 and f"127.0.0.1:{port}" in error, error


# Redirects


def secrets_elsewhere(log: list[Seen], origin: str) -> list[Seen]:
    return [seen for seen in log if seen.origin != origin and seen.carries_a_secret()]


def test_a_redirected_head_is_followed_without_credentials_to_another_origin(conf, servers, tls, capsys):
    """As registries whose blobs live in object storage answer: 307 to another host."""

    def storage(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        return (200, {}, b"") if method == "HEAD" and path.startswith("/blob/") else (404, {}, b"")

    other = servers("127.0.0.2", storage, tls)

    def redirect(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        digest = path.rpartition("/")[2]
        return (307, {"Location": f"{other.origin}/blob/{digest}"}, b"") if method == "HEAD" else None

    server = servers("127.0.0.1", registry(BASIC, redirect), tls)
    assert push_with_credentials(conf, server.host) == 0, capsys.readouterr().err
    assert "0 blobs pushed (0 bytes), 4 already there" in capsys.readouterr().err
    assert sum(seen.origin == other.origin for seen in servers.log) == 4
    assert secrets_elsewhere(servers.log, server.origin) == []


def test_a_redirect_on_the_same_origin_keeps_the_credentials(conf, servers, tls, capsys):
    def redirect(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        if method == "HEAD" and "/blobs/sha256:" in path:
            return 308, {"Location": path.replace("/blobs/", "/moved/")}, b""
        if method == "HEAD" and "/moved/" in path:
            return 200, {}, b""
        return None

    server = servers("127.0.0.1", registry(BASIC, redirect), tls)
    assert push_with_credentials(conf, server.host) == 0
    assert "4 already there" in capsys.readouterr().err


def test_redirects_are_followed_only_so_far(conf, servers, tls, capsys):
    def loop(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        return (302, {"Location": path + "x"}, b"") if method == "HEAD" else None

    server = servers("127.0.0.1", registry(BASIC, loop), tls)
    assert push_with_credentials(conf, server.host) == 1
    error = capsys.readouterr().err
    assert "redirects" in error and error.count("\n") == 1, error
    assert len(servers.log) < 100  # a few per blob, not forever


def test_tls_problems_are_still_one_line(conf, servers, tls, monkeypatch, capsys):
    plain = servers("127.0.0.1", registry())
    assert push(conf, plain.host) == 1
    assert "speaks plain HTTP; allow it with --tls-verify=false" in capsys.readouterr().err
    monkeypatch.delenv("SSL_CERT_FILE")  # the test CA unknown: verification fails
    secure = servers("127.0.0.1", registry(), tls)
    assert push(conf, secure.host) == 1
    error = capsys.readouterr().err
    assert "TLS failed (CERTIFICATE_VERIFY_FAILED)" in error and error.count("\n") == 1, error
    assert push(conf, secure.host, "--tls-verify=false") == 0


def test_a_certificate_for_another_name_is_refused(conf, servers, tls, capsys):
    """The test CA's certificate names 127.0.0.1 and 127.0.0.2, not localhost."""
    server = servers("127.0.0.1", registry(), tls)
    assert push(conf, server.host.replace("127.0.0.1", "localhost")) == 1
    error = capsys.readouterr().err
    assert "TLS failed" in error and error.count("\n") == 1, error
    assert servers.log == []
