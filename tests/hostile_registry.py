"""A registry that cannot be trusted, on loopback: it speaks just enough of the distribution
API for a push, logs every request with its headers (per scheme, host and port), and can
send the client anywhere (`Location`), challenge it from anywhere, and answer with endless,
huge, dripping or no bodies. 127.0.0.1 and 127.0.0.2 are two hosts; a test CA signs a
certificate for both, so TLS is verified as a user's would be."""

from __future__ import annotations

import base64
import http.server
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from conftest import need

USER, PASSWORD = "alice", "s3cret-passw0rd"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
TOKEN = "t0ken-for-the-registry-only"
SECRETS = (PASSWORD, BASIC.partition(" ")[2], TOKEN)

Answer = tuple[int, dict[str, str], bytes | Iterable[bytes]]


@dataclass
class Seen:
    origin: str  # scheme://host:port
    method: str
    path: str
    headers: dict[str, str]

    def carries_a_secret(self) -> bool:
        return any(secret in value for value in self.headers.values() for secret in SECRETS)


def make_test_ca(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA (its certificate, for SSL_CERT_FILE) and a server context for 127.0.0.1 and 127.0.0.2."""
    need(subprocess.run(["openssl", "version"], capture_output=True).returncode == 0, "openssl")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, capture_output=True, check=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=layered-image test CA")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")  # fmt: skip
    (folder / "san").write_text("subjectAltName=IP:127.0.0.1,IP:127.0.0.2\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san")  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(folder / "server.pem", folder / "server.key")
    return folder / "ca.pem", context


@dataclass
class HostileServer:
    """One origin. `route(method, path, headers, body)` gives the answer; the body may be
    an iterable of chunks (sent as they come, so it can be endless or slow)."""

    ip: str
    route: Callable[[str, str, dict[str, str], bytes], Answer]
    log: list[Seen]
    tls: ssl.SSLContext | None = None
    origin: str = ""
    servers: list = field(default_factory=list)

    def start(self) -> HostileServer:
        server_side = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = dict(self.headers.items())
                server_side.log.append(Seen(server_side.origin, self.command, self.path, headers))
                status, answer_headers, answer = server_side.route(self.command, self.path, headers, body)
                self.send_response(status)
                for key, value in answer_headers.items():
                    self.send_header(key, value)
                if isinstance(answer, bytes):
                    self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                chunks = [answer] if isinstance(answer, bytes) else answer
                try:
                    for chunk in chunks:
                        if self.command != "HEAD":
                            self.wfile.write(chunk)
                            self.wfile.flush()
                except OSError:  # the client hung up: what a bounded client does
                    self.close_connection = True
                if not isinstance(answer, bytes):
                    self.close_connection = True

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _any

        server = http.server.ThreadingHTTPServer((self.ip, 0), Handler)
        server.daemon_threads = True
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        port = server.server_address[1]
        self.origin = f"{'https' if self.tls else 'http'}://{self.ip}:{port}"
        self.servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    @property
    def host(self) -> str:
        return self.origin.partition("://")[2]

    def stop(self) -> None:
        for server in self.servers:
            server.shutdown()
            server.server_close()


def silent_server(ip: str = "127.0.0.1") -> tuple[socket.socket, str]:
    """Accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind((ip, 0))
    listener.listen(16)
    return listener, f"{ip}:{listener.getsockname()[1]}"


def endless(chunk: bytes = b"x" * 65536) -> Iterable[bytes]:
    while True:
        yield chunk


def drip(every: float) -> Iterable[bytes]:
    while True:
        time.sleep(every)
        yield b"x"
