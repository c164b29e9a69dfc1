"""A small OCI distribution API client over http.client: TLS or plain HTTP, Basic or
bearer-token auth from the registry's challenge, and retries with backoff on 5xx and
dropped connections. One connection per request, so threads can share a client.

A registry is not trusted. Credentials and tokens go only to the origin (scheme, host,
port) the user named and that challenged, never to one a `Location` names; a password
goes to a token service another host runs only over TLS. Every answer is read up to
MAX_ANSWER bytes, every connection gives up after IDLE_SECONDS of silence, every request
after its deadline (REQUEST_SECONDS plus the time its body takes at MIN_RATE), and every
push after its own (see start_deadline). Text from a registry is printed with control
characters escaped and our secrets blanked out.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from layered_image import __version__
from layered_image.errors import UserError

Headers = dict[str, str] | None
USER_AGENT = f"layered-image/{__version__}"
RETRIES = 5
IDENTITY_TOKEN = "<token>"  # the user name docker's files and helpers give an OAuth2 refresh token
IDLE_SECONDS = 30  # silence on a connection before it is given up
REQUEST_SECONDS = 120  # a whole exchange, plus its body's time at MIN_RATE
PUSH_SECONDS = 600  # a whole push, plus its blobs' time at MIN_RATE
MIN_RATE = 100_000  # bytes a second: slower than this is a stall
MAX_ANSWER = 1 << 20  # bytes of an answer read at most; the rest is never read


class RetryableError(Exception):
    """A 5xx answer or a dropped connection: worth another try."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass
class Registry:
    host: str
    repository: str
    credentials: tuple[str, str] | None = None
    tls_verify: bool = True
    scheme: str = "https"
    authorization: str | None = None
    retry_pause: float = 0.5
    pull_scopes: list[str] = field(default_factory=list)  # other repositories a token should read
    log: Callable[[str], None] = field(default=lambda line: None)
    connected: bool = False  # an index pushes several images over one handshake
    deadline: float | None = None  # time.monotonic() by which the push must be done

    def connect(self) -> None:
        """Find out how to talk to the registry (https, else plain http when allowed) and log in."""
        if self.connected:
            return
        try:
            try:
                self._authorize(self._send("GET", "/v2/"))
            except ssl.SSLError as err:
                if self.tls_verify and "WRONG_VERSION_NUMBER" not in str(err):
                    raise UserError(
                        f"{self.host}: TLS failed ({err.reason}); --tls-verify=false skips it"
                    ) from None
                if self.tls_verify:
                    raise UserError(
                        f"{self.host} speaks plain HTTP; allow it with --tls-verify=false"
                    ) from None
                self.scheme = "http"
                self._authorize(self._send("GET", "/v2/"))
        except (OSError, http.client.HTTPException) as err:
            raise UserError(f"cannot reach registry {self.host}: {self.shown(str(err))}") from None
        self.connected = True

    def request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        refusal_ok: bool = False,
    ) -> Response:
        """One request, with credentials; 5xx and dropped connections raise RetryableError,
        a 401 after logging in again is the user's error unless `refusal_ok`."""
        headers = dict(headers or {})
        try:
            response = self._send(method, url, body, headers)
            if response.status == 401 and self._is_origin(url):  # another host's challenge: not answered
                self._authorize(response)
                response = self._send(method, url, body, headers)
        except (ConnectionError, http.client.HTTPException, TimeoutError) as err:
            raise RetryableError(f"{method} {self.shown(url)}: {err or type(err).__name__}") from None
        if response.status == 401 and not refusal_ok and not self._is_origin(url):
            other = self.shown(urllib.parse.urlsplit(url).netloc)
            raise UserError(
                f"{other}, where {self.host} sent us, asks for credentials; they go only to {self.host}"
            )
        if response.status == 401 and not refusal_ok:
            raise UserError(f"{self.host} refused the credentials for {self.repository} (401 on {method})")
        if response.status >= 500:  # the body is shown once, if this is the last try (see refused)
            raise RetryableError(f"{method} {self.shown(url)}: {response.status}")
        return response

    def with_retries(self, what: str, attempt: Callable[[], object]) -> object:
        """Run `attempt` again after a retryable failure, waiting longer each time."""
        for number in range(1, RETRIES + 1):
            try:
                return attempt()
            except RetryableError as err:
                if number == RETRIES:
                    raise UserError(f"{what}: gave up after {RETRIES} tries ({err})") from None
                self.log(f"retrying {what} ({err})")
                self.check_deadline()
                time.sleep(self.retry_pause * 2 ** (number - 1))
        raise AssertionError("unreachable")

    def url(self, path: str) -> str:
        return f"/v2/{self.repository}/{path}"

    @property
    def _identity_token(self) -> bool:
        """The credentials are an OAuth2 refresh token (the secret), not a user's password."""
        return self.credentials is not None and self.credentials[0] == IDENTITY_TOKEN

    def location(self, answer: Response) -> str:
        """Where an upload goes on: the answer's Location, made absolute."""
        location = answer.header("Location")
        if not location:
            raise UserError(f"{self.host}: an upload answer without a Location header")
        try:
            return urllib.parse.urljoin(f"{self.scheme}://{self.host}/", location)
        except ValueError:
            raise UserError(
                f"{self.host}: an upload Location that is no URL: {self.shown(location)}"
            ) from None

    def expect(self, answer: Response, status: int, what: str) -> None:
        if answer.status != status:
            self.refused(answer, what)

    def refused(self, answer: Response, what: str) -> NoReturn:
        detail = self.shown(answer.body[:300].decode(errors="replace").strip())
        raise UserError(f"{self.host} refused {what}: {answer.status} {detail}")

    def shown(self, text: str) -> str:
        """Registry text made safe to print: our secrets blanked, control characters escaped."""
        for secret in self._secrets():
            text = text.replace(secret, "<redacted>")
        return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)

    def _secrets(self) -> list[str]:
        secrets = [self.authorization or ""]
        if self.authorization:
            secrets.append(self.authorization.partition(" ")[2])
        if self.credentials:
            secrets += [self.credentials[1], _basic(self.credentials).partition(" ")[2]]
        return sorted((s for s in secrets if len(s) >= 4), key=len, reverse=True)

    def start_deadline(self, total_bytes: int) -> None:
        """A push must be done by PUSH_SECONDS plus its bytes' time at MIN_RATE."""
        self.deadline = time.monotonic() + PUSH_SECONDS + total_bytes / MIN_RATE

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise UserError(f"{self.host}: the push is past its deadline; the registry is too slow or stalls")

    def _is_origin(self, url: str) -> bool:
        return _origin(url, self.scheme, self.host) == _origin("", self.scheme, self.host)

    def _send(
        self, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        self.check_deadline()
        try:
            parsed = urllib.parse.urlsplit(url)
        except ValueError:
            raise UserError(f"{self.host} sent us to an address that is no URL: {self.shown(url)}") from None
        host = parsed.netloc or self.host
        target = urllib.parse.urlunsplit(("", "", parsed.path, parsed.query, ""))
        connection = self._connection(host, parsed.scheme or self.scheme)
        all_headers = {"Content-Length": str(len(body)), "User-Agent": USER_AGENT, **(headers or {})}
        if self.authorization and self._is_origin(url):  # never to a host a Location names
            all_headers["Authorization"] = self.authorization
        seconds = REQUEST_SECONDS + len(body) / MIN_RATE
        if self.deadline is not None:
            seconds = max(1.0, min(seconds, self.deadline - time.monotonic()))
        with _Watchdog(connection, seconds) as watchdog:
            try:
                connection.request(method, target, body=body, headers=all_headers)
                answer = connection.getresponse()
                data = answer.read(MAX_ANSWER) if method != "HEAD" else b""
            except (OSError, http.client.HTTPException):
                watchdog.raise_if_fired()
                raise
            finally:
                connection.close()
            watchdog.raise_if_fired()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)

    def _connection(self, host: str, scheme: str) -> http.client.HTTPConnection:
        if scheme == "http":
            return http.client.HTTPConnection(host, timeout=IDLE_SECONDS)
        context = ssl.create_default_context()
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, timeout=IDLE_SECONDS, context=context)

    def _authorize(self, response: Response) -> None:
        """Answer a 401's challenge: Basic with the credentials, or fetch a bearer token."""
        if response.status != 401:
            return
        challenge = response.header("WWW-Authenticate")
        scheme, _, params = challenge.partition(" ")
        if scheme.lower() == "basic":
            if self._identity_token:
                raise UserError(
                    f"{self.host} wants a password, not an identity token: give --creds USER:PASSWORD"
                )
            if self.credentials is None:
                raise UserError(
                    f"{self.host} needs credentials: give --creds USER:PASSWORD or --authfile FILE"
                )
            self.authorization = _basic(self.credentials)
        elif scheme.lower() == "bearer":
            self.authorization = "Bearer " + self._token(dict(re.findall(r'(\w+)="([^"]*)"', params)))
        else:
            raise UserError(
                f"{self.host} asks for {scheme or 'unknown'} authentication, which is not supported"
            )

    def _token(self, challenge: dict[str, str]) -> str:
        realm = challenge.get("realm")
        if not realm:
            raise UserError(f"{self.host}: bearer challenge without a realm")
        scopes = [f"repository:{self.repository}:pull,push"]
        scopes += [f"repository:{source}:pull" for source in self.pull_scopes]
        service = challenge.get("service", "")
        realm_origin = _origin(realm, self.scheme, self.host)
        if (
            self.credentials
            and realm_origin[0] != "https"
            and realm_origin != _origin("", self.scheme, self.host)
        ):
            raise UserError(
                f"{self.host}: the token service {self.shown(realm)} is plain HTTP on another host;"
                " credentials are sent to another host only over TLS"
            )
        saved, self.authorization = self.authorization, None
        try:
            if self._identity_token:
                answer = self._send(*_refresh_grant(realm, service, scopes, self.credentials[1]))
            else:
                query = urllib.parse.urlencode([("service", service), *(("scope", s) for s in scopes)])
                headers = {"Authorization": _basic(self.credentials)} if self.credentials else {}
                answer = self._send("GET", f"{realm}?{query}", headers=headers)
        finally:
            self.authorization = saved
        if answer.status != 200:
            raise UserError(
                f"{self.host}: the token service {self.shown(realm)} refused us ({answer.status})"
            )
        try:
            token = json.loads(answer.body)
            return str(token.get("token") or token["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise UserError(f"{self.host}: the token service {self.shown(realm)} gave no token") from None


class _Watchdog:
    """Closes the connection's socket when an exchange outlives its deadline, so that a
    registry sending a byte every few seconds cannot hold a push forever."""

    def __init__(self, connection: http.client.HTTPConnection, seconds: float) -> None:
        self.connection, self.seconds, self.fired = connection, seconds, False
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.cancel()

    def _fire(self) -> None:
        self.fired = True
        sock = self.connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing to stop
                sock.shutdown(socket.SHUT_RDWR)

    def raise_if_fired(self) -> None:
        if self.fired:
            raise TimeoutError(f"no complete answer within {self.seconds:.0f} s")


def _origin(url: str, default_scheme: str, default_host: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `url`, relative URLs on the registry's own origin."""
    try:
        parsed = urllib.parse.urlsplit(url)
        scheme = (parsed.scheme or default_scheme).lower()
        split = urllib.parse.urlsplit(f"//{parsed.netloc or default_host}")
        port = split.port
    except ValueError:
        return "", "", -1  # no URL: equal to no real origin
    return scheme, (split.hostname or "").lower(), port or {"https": 443, "http": 80}.get(scheme, 0)


def _refresh_grant(
    realm: str, service: str, scopes: list[str], refresh_token: str
) -> tuple[str, str, bytes, dict[str, str]]:
    """An identity token is an OAuth2 refresh token: POSTed to the realm for an access token."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "service": service,
            "scope": " ".join(scopes), "client_id": USER_AGENT.partition("/")[0]}  # fmt: skip
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return "POST", realm, urllib.parse.urlencode(form).encode(), headers


def _basic(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()
