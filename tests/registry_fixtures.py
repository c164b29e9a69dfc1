"""A real registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1, and a
fault-injecting reverse proxy to put in front of it."""

from __future__ import annotations

import http.client
import http.server
import json
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from conftest import need


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningRegistry:
    host: str
    log: Path
    process: subprocess.Popen

    def requests(self, method: str, kind: str = "") -> int:
        """How many `method` requests whose path holds `kind` the registry's access log shows."""
        pattern = re.compile(rf'"{method} /v2/[^ ]*{re.escape(kind)}')
        return len(pattern.findall(self.log.read_text()))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def start_registry(directory: Path, htpasswd: Path | None = None) -> RunningRegistry:
    binary = shutil.which("docker-registry")
    need(binary is not None, "docker-registry (apt-get install docker-registry)")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    auth = f"auth:\n  htpasswd:\n    realm: test\n    path: {htpasswd}\n" if htpasswd else ""
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {directory / 'data'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n{auth}"
    )
    log = directory / "registry.log"
    with open(log, "w") as output:
        process = subprocess.Popen(
            [str(binary), "serve", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    registry = RunningRegistry(f"127.0.0.1:{port}", log, process)
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://{registry.host}/v2/", timeout=1)
            return registry
        except urllib.error.HTTPError:  # 401: up, and wanting credentials
            return registry
        except OSError:
            time.sleep(0.1)
    registry.stop()
    raise RuntimeError(f"docker-registry did not start: {log.read_text()}")


@dataclass
class FaultyProxy:
    """Forwards to `upstream`; the first request matching each (method, path part) of
    `faults` (or the nth, given as a fourth item) gets the fault instead: "500" (an error
    answer), "reset" (the connection dropped without an answer, after reading the
    request) or "lost-answer" (the request forwarded, then the connection dropped)."""

    upstream: str
    faults: list[tuple] = field(default_factory=list)
    matched: Counter = field(default_factory=Counter)
    host: str = ""
    bearer_token: str | None = None  # set: act as a token-auth front (challenge, /token, check)
    token_requests: list[str] = field(default_factory=list)  # the scopes asked for
    scoped_tokens: bool = False  # each token reads only the repositories it asked for (mounts)
    token_scopes: dict[str, set[str]] = field(default_factory=dict)
    body_bytes: int = 0  # request body bytes received, all requests together
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FaultyProxy:
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except ConnectionError:
                    self.close_connection = True

            def _reply(self, status: int, data: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _bearer_gate(self, body: bytes) -> bool:
                """True when the request was answered here (the token, or a challenge). A
                POST for the token is OAuth2's (a form; recorded after the path)."""
                if self.path.startswith("/token"):
                    form = f" POST {body.decode()}" if self.command == "POST" else ""
                    proxy.token_requests.append(self.path + form)
                    key = "access_token" if form else "token"
                    token = proxy.bearer_token
                    if proxy.scoped_tokens:
                        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                        token = f"{proxy.bearer_token}-{len(proxy.token_scopes)}"
                        proxy.token_scopes[token] = set(query.get("scope", []))
                    self._reply(200, json.dumps({key: token}).encode())
                    return True
                given = self.headers.get("Authorization", "").removeprefix("Bearer ")
                known = given in proxy.token_scopes if proxy.scoped_tokens else given == proxy.bearer_token
                if not known or not self._token_reads_the_mount_source(given):
                    realm = f'Bearer realm="http://{proxy.host}/token",service="test-registry"'
                    self._reply(401, b"{}", {"WWW-Authenticate": realm})
                    return True
                del self.headers["Authorization"]
                return False

            def _token_reads_the_mount_source(self, token: str) -> bool:
                """A mount (POST ...?mount=D&from=R) needs a token that may read R."""
                source = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("from")
                if not proxy.scoped_tokens or self.command != "POST" or not source:
                    return True
                return f"repository:{source[0]}:pull" in proxy.token_scopes.get(token, set())

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with proxy.lock:
                    proxy.body_bytes += len(body)
                if proxy.bearer_token and self._bearer_gate(body):
                    return
                fault = proxy._take_fault(self.command, self.path)
                if fault == "500":
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fault == "reset":
                    self._drop()
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                if fault == "lost-answer":
                    self._drop()
                    return
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding"):
                        self.send_header(key, value)
                if answer.getheader("Content-Length") is None:
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            def _drop(self) -> None:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server = server
        self.host = f"127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def _take_fault(self, method: str, path: str) -> str | None:
        """The first unspent fault matching this request; one with a fourth item, n, only
        for the nth request matching its (method, path part)."""
        hits = [fault for fault in self.faults if fault[0] == method and fault[1] in path]
        for key in {fault[:2] for fault in hits}:
            self.matched[key] += 1
        for fault in hits:
            if len(fault) < 4 or self.matched[fault[:2]] == fault[3]:
                self.faults.remove(fault)
                return fault[2]
        return None

    def stop(self) -> None:
        self.server.shutdown()
