"""A small OCI distribution API client: Basic or bearer-token auth from the registry's
challenge, and retries with backoff on 5xx, 408, 429 (after the Retry-After a registry
asks for) and dropped connections. The HTTP is urllib3's: connections kept per origin and
shared by a push's threads, TLS, and the environment's proxies (HTTPS_PROXY through
CONNECT, HTTP_PROXY, NO_PROXY, either case, as Python and curl read them). urllib3 never
retries or follows a redirect by itself: the one retry loop and the redirects are here,
where it is known which origin may see the credentials.

A registry is not trusted. Credentials and tokens go only to the origin (scheme, host,
port) the user named and that challenged, never to one a `Location` names; a password
goes to a token service another host runs only over TLS. A redirect of a GET or HEAD is
followed (registries send blob reads to object storage), at most MAX_REDIRECTS times,
without any credentials once it leaves the origin they were meant for; one of a request
with a body is an answer like any other (the API never redirects those). Every answer is
read up to MAX_ANSWER bytes, every connection gives up after IDLE_SECONDS of silence,
every request after its deadline (REQUEST_SECONDS plus the time its body takes at
MIN_RATE), and every push after its own (see start_deadline), which no Retry-After
stretches. Text from a registry is printed with control characters escaped and our
secrets blanked out.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import email.utils
import http.client
import json
import re
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import urllib3
from urllib3.util.ssl_match_hostname import CertificateError

from layered_image import __version__
from layered_image.errors import UserError

USER_AGENT = f"layered-image/{__version__}"
RETRIES = 5
IDENTITY_TOKEN = "<token>"  # the user name docker's files and helpers give an OAuth2 refresh token
IDLE_SECONDS = 30  # silence on a connection before it is given up
REQUEST_SECONDS = 120  # a whole exchange, plus its body's time at MIN_RATE
PUSH_SECONDS = 600  # a whole push, plus its blobs' time at MIN_RATE
MIN_RATE = 100_000  # bytes a second: slower than this is a stall
MAX_ANSWER = 1 << 20  # bytes of an answer read at most; the rest is never read
MAX_RETRY_AFTER = 60  # seconds: a longer Retry-After is cut to this
MAX_REDIRECTS = 5
POOL_SIZE = 8  # connections kept per origin: one for each of a push's threads, and spares
REDIRECTS = frozenset({301, 302, 303, 307, 308})
NEVER_BETTER = frozenset({501, 505})  # not implemented, HTTP version: a retry gets the same
BUSY = frozenset({408, 429})  # request timeout, too many requests: worth another try, later

# What a broken or hostile connection raises (urllib3's own errors, and http.client's and the
# socket's, which urllib3 passes on from a response being read).
TRANSPORT_ERRORS = (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError)


class RetryableError(Exception):
    """A 5xx, 408 or 429 answer or a dropped connection: worth another try, after `wait`
    seconds when the registry said how long (Retry-After)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    url: str = ""  # where the answer came from, after any redirects

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
    transport: Transport = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.transport = Transport(self.tls_verify)

    def connect(self) -> None:
        """Find out how to talk to the registry (https, else plain http when allowed) and log in."""
        if self.connected:
            return
        try:
            answer = self._handshake_over_tls()
            if answer is None:
                self.scheme = "http"
                answer = self._send("GET", "/v2/")
            self._check_registry(answer)
            self._authorize(answer)
        except TRANSPORT_ERRORS as err:
            through = _shown_proxy(_proxy_for(f"{self.scheme}://{self.host}/"))
            tls = _tls_failure(err)  # (a token service's)
            reason = f"TLS failed ({_tls_reason(tls)})" if tls else _reason(err)
            raise UserError(f"cannot reach registry {self.host}{through}: {self.shown(reason)}") from None
        self.connected = True

    def _check_registry(self, answer: Response) -> None:
        """A registry answers GET /v2/ with 200, or 401 to ask for credentials (the
        distribution spec); anything else is no registry, or one that is down."""
        if answer.status in (200, 401):
            return
        if answer.status >= 500:
            raise UserError(f"registry {self.host} is down: GET /v2/ answered {answer.status}; try later")
        raise UserError(
            f"{self.host} does not answer as a registry: GET /v2/ answered {answer.status}"
            " (a registry answers 200, or 401 for credentials); check the host and port"
        )

    def _handshake_over_tls(self) -> Response | None:
        """The registry's answer to its first request over TLS; None when it speaks plain HTTP
        and the user allows that."""
        try:
            return self._send("GET", "/v2/")
        except TRANSPORT_ERRORS as err:
            tls = _tls_failure(err)
            if tls is None:
                raise
            if self.tls_verify and "WRONG_VERSION_NUMBER" not in str(tls):
                raise UserError(
                    f"{self.host}: TLS failed ({_tls_reason(tls)}); --tls-verify=false skips it"
                ) from None
            if self.tls_verify:
                raise UserError(f"{self.host} speaks plain HTTP; allow it with --tls-verify=false") from None
            return None

    def request(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        refusal_ok: bool = False,
    ) -> Response:
        """One request, with credentials; 5xx, 408, 429 and dropped connections raise
        RetryableError, a 401 after logging in again is the user's error unless `refusal_ok`."""
        headers = dict(headers or {})
        try:
            response = self._send(method, url, body, headers)
            if response.status == 401 and self._is_origin(response.url):  # another host's: not answered
                self._authorize(response)
                response = self._send(method, url, body, headers)
        except TRANSPORT_ERRORS as err:
            tls = _tls_failure(err)
            if isinstance(tls, ssl.SSLCertVerificationError | CertificateError):  # no retry mends it
                where = self.shown(urllib.parse.urlsplit(url).netloc or self.host)
                raise UserError(f"{where}: TLS failed ({_tls_reason(tls)})") from None
            raise RetryableError(f"{method} {self.shown(url)}: {self.shown(_reason(err))}") from None
        if response.status == 401 and not refusal_ok and not self._is_origin(response.url):
            other = self.shown(urllib.parse.urlsplit(response.url).netloc)
            raise UserError(
                f"{other}, where {self.host} sent us, asks for credentials; they go only to {self.host}"
            )
        if response.status == 401 and not refusal_ok:
            raise UserError(f"{self.host} refused the credentials for {self.repository} (401 on {method})")
        if (response.status >= 500 and response.status not in NEVER_BETTER) or response.status in BUSY:
            wait = _retry_after(response.header("Retry-After"))
            raise RetryableError(f"{method} {self.shown(url)}: {response.status}", wait)
        return response

    def with_retries(self, what: str, attempt: Callable[[], object]) -> object:
        """Run `attempt` again after a retryable failure: after the time the registry asked
        for, else waiting longer each time."""
        for number in range(1, RETRIES + 1):
            try:
                return attempt()
            except RetryableError as err:
                if number == RETRIES:
                    raise UserError(f"{what}: gave up after {RETRIES} tries ({err})") from None
                if err.wait is None:
                    pause, asked = self.retry_pause * 2 ** (number - 1), ""
                else:
                    pause, asked = err.wait, f"; waiting {err.wait:.0f} s as asked"
                    self._check_wait(pause)
                self.log(f"retrying {what} ({err}{asked})")
                self.check_deadline()
                time.sleep(pause)
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

    def start_deadline(self) -> None:
        """A push must be done by PUSH_SECONDS plus its blobs' time at MIN_RATE (each blob's
        added as it is handed on: they are made during the push)."""
        self.deadline = time.monotonic() + PUSH_SECONDS

    def extend_deadline(self, blob_bytes: int) -> None:
        if self.deadline is not None:
            self.deadline += blob_bytes / MIN_RATE

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise UserError(f"{self.host}: the push is past its deadline; the registry is too slow or stalls")

    def _check_wait(self, seconds: float) -> None:
        """Waiting as the registry asks must leave the push within its deadline."""
        if self.deadline is not None and time.monotonic() + seconds > self.deadline:
            raise UserError(
                f"{self.host} asks us to wait {seconds:.0f} s, which would take the push past its deadline"
            )

    def _is_origin(self, url: str) -> bool:
        return _origin(url, self.scheme, self.host) == _origin("", self.scheme, self.host)

    def _send(
        self,
        method: str,
        url: str,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        our_credentials: bool = True,
    ) -> Response:
        """One request, and the redirects of a GET or HEAD. Our credentials go only to the
        registry's origin, the caller's `headers`' only to the origin they were meant for."""
        url = self._absolute(url)
        headers = dict(headers or {})
        for _ in range(MAX_REDIRECTS + 1):
            response = self._exchange(method, url, body, headers, our_credentials)
            location = response.header("Location")
            if method not in ("GET", "HEAD") or response.status not in REDIRECTS or not location:
                return response
            target = self._absolute(location, base=url)
            if _origin(target, "", "") != _origin(url, "", ""):
                headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
            url = target
        raise UserError(f"{self.host}: more than {MAX_REDIRECTS} redirects for {method} {self.shown(url)}")

    def _exchange(
        self, method: str, url: str, body: bytes, headers: dict[str, str], our_credentials: bool
    ) -> Response:
        self.check_deadline()
        all_headers = {"Content-Length": str(len(body)), "User-Agent": USER_AGENT, **headers}
        # never to a host a Location or a redirect names
        if our_credentials and self.authorization and self._is_origin(url):
            all_headers["Authorization"] = self.authorization
        seconds = REQUEST_SECONDS + len(body) / MIN_RATE
        if self.deadline is not None:
            seconds = max(1.0, min(seconds, self.deadline - time.monotonic()))
        try:
            return self.transport.exchange(method, url, body, all_headers, seconds)
        except urllib3.exceptions.LocationValueError:
            raise UserError(f"{self.host} sent us to an address that is no URL: {self.shown(url)}") from None

    def _absolute(self, url: str, base: str = "") -> str:
        """`url` made absolute, against `base` or the registry; refused unless http(s)."""
        try:
            absolute = urllib.parse.urljoin(base or f"{self.scheme}://{self.host}/", url)
            parsed = urllib.parse.urlsplit(absolute)
            parsed.port  # noqa: B018 - raises ValueError for a port that is no port
        except ValueError:
            raise UserError(f"{self.host} sent us to an address that is no URL: {self.shown(url)}") from None
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise UserError(f"{self.host} sent us to {self.shown(url)}, which is no http(s) address")
        return absolute

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
        if self._identity_token:
            method, url, body, headers = _refresh_grant(realm, service, scopes, self.credentials[1])
        else:
            query = urllib.parse.urlencode([("service", service), *(("scope", s) for s in scopes)])
            method, url, body = "GET", f"{realm}?{query}", b""
            headers = {"Authorization": _basic(self.credentials)} if self.credentials else {}
        answer = self._send(method, url, body, headers, our_credentials=False)  # no old token there
        if answer.status != 200:
            raise UserError(
                f"{self.host}: the token service {self.shown(realm)} refused us ({answer.status})"
            )
        try:
            token = json.loads(answer.body)
            return str(token.get("token") or token["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise UserError(f"{self.host}: the token service {self.shown(realm)} gave no token") from None


class Transport:
    """urllib3's pools, shared by a push's threads: one manager for each proxy used (or
    none), each keeping up to POOL_SIZE connections per origin. It sends what it is given
    where it is told: which headers go where is the Registry's business."""

    def __init__(self, tls_verify: bool) -> None:
        self.tls_verify = tls_verify
        self.managers: dict[str, urllib3.PoolManager] = {}
        self.lock = threading.Lock()

    def exchange(
        self, method: str, url: str, body: bytes, headers: dict[str, str], seconds: float
    ) -> Response:
        """One request and at most MAX_ANSWER bytes of its answer, within `seconds`."""
        manager = self._manager(_proxy_for(url))
        timeout = urllib3.Timeout(connect=IDLE_SECONDS, read=IDLE_SECONDS)
        with _Watchdog(seconds) as watchdog:
            try:
                answer = manager.urlopen(
                    method, url, body=body, headers=headers, timeout=timeout,
                    retries=False, redirect=False,  # both the Registry's: it knows where credentials go
                    preload_content=False, decode_content=False,  # bounded reads; no gzip bomb
                )  # fmt: skip
                data, complete = _read_bounded(answer)
            except TRANSPORT_ERRORS:
                watchdog.raise_if_fired()
                raise
        _give_back(answer, complete and not watchdog.fired)  # (the watchdog no longer watches it)
        watchdog.raise_if_fired()
        return Response(answer.status, {k.lower(): v for k, v in answer.headers.iteritems()}, data, url)

    def _manager(self, proxy: str) -> urllib3.PoolManager:
        with self.lock:
            if proxy not in self.managers:
                self.managers[proxy] = _new_manager(proxy, self.tls_verify)
            return self.managers[proxy]


def _new_manager(proxy: str, tls_verify: bool) -> urllib3.PoolManager:
    """A pool manager whose connections a _Watchdog can cut; through `proxy` when one is given
    (https through a CONNECT tunnel, which the proxy cannot look into)."""
    options: dict[str, Any] = {"maxsize": POOL_SIZE, "block": False, **_tls_options(tls_verify)}
    if not proxy:
        manager = urllib3.PoolManager(**options)
    else:
        parsed = urllib.parse.urlsplit(proxy)
        if parsed.scheme not in ("http", "https"):
            raise UserError(f"the proxy {_proxy_address(proxy)} is not http(s), which is all we speak")
        headers = {}
        if parsed.username is not None:  # http://USER:PASSWORD@HOST:PORT
            user, password = (urllib.parse.unquote(part or "") for part in (parsed.username, parsed.password))
            headers = urllib3.util.make_headers(proxy_basic_auth=f"{user}:{password}")
        address = f"{parsed.scheme}://{_proxy_address(proxy)}"
        manager = urllib3.ProxyManager(address, proxy_headers=headers, **options)
    manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
    return manager


def _proxy_for(url: str) -> str:
    """The proxy the environment names for `url`'s scheme, or "" for none (NO_PROXY)."""
    parsed = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies_environment().get(parsed.scheme, "")
    if not proxy or urllib.request.proxy_bypass_environment(parsed.netloc):
        return ""
    return proxy if "://" in proxy else f"http://{proxy}"


def _shown_proxy(proxy: str) -> str:
    """' through the proxy HOST:PORT', or '' for none."""
    return f" through the proxy {_proxy_address(proxy)}" if proxy else ""


def _proxy_address(proxy: str) -> str:
    """HOST:PORT of a proxy's URL, without the login it may hold."""
    return urllib.parse.urlsplit(proxy).netloc.rpartition("@")[2]


def _tls_options(verify: bool) -> dict[str, Any]:
    """Certificates checked against the system's CAs and the host name, by urllib3's own TLS
    set-up (which knows how each of its versions checks a name or an IP address); or, when
    the user says so, no checks."""
    if verify:
        # No CA file: OpenSSL's defaults, SSL_CERT_FILE and SSL_CERT_DIR included, as before
        # urllib3 (Debian's would otherwise use its bundle whatever the environment says).
        return {"cert_reqs": "CERT_REQUIRED", "ca_certs": None}
    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # asked for: no line per request
    return {"cert_reqs": "CERT_NONE"}  # (and so no name check either)


def _read_bounded(answer: urllib3.HTTPResponse) -> tuple[bytes, bool]:
    """At most MAX_ANSWER bytes of the answer's body, and whether that was all of it."""
    parts: list[bytes] = []
    size = 0
    while size < MAX_ANSWER:
        part = answer.read(min(1 << 16, MAX_ANSWER - size), decode_content=False)
        if not part:
            return b"".join(parts), True
        parts.append(part)
        size += len(part)
    return b"".join(parts), False


def _give_back(answer: urllib3.HTTPResponse, reusable: bool) -> None:
    """Return the answer's connection to its pool; closed first when it is of no more use
    (the rest of an answer unread, or cut by the watchdog)."""
    connection = answer.connection
    if connection is not None and not reusable:
        connection.close()
    answer.release_conn()


_current = threading.local()  # .watchdog: the _Watchdog of the exchange this thread is in


class _Watchdog:
    """Shuts the socket of an exchange that outlives its deadline, so that a registry sending
    a byte every few seconds (each read within IDLE_SECONDS) cannot hold a push forever.
    urllib3 picks the connection from its pool, so the connection reports itself (_Watched)."""

    def __init__(self, seconds: float) -> None:
        self.seconds, self.fired, self.done = seconds, False, False
        self.connection: _Watched | None = None
        self.lock = threading.Lock()
        self.timer = threading.Timer(seconds, self._fire)
        self.timer.daemon = True

    def __enter__(self) -> _Watchdog:
        _current.watchdog = self
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self.lock:  # from here on `fired` is final, and the connection no longer ours
            self.timer.cancel()
            self.connection, self.done = None, True
        _current.watchdog = None

    def watch(self, connection: _Watched) -> None:
        with self.lock:
            self.connection = connection
            if self.fired:
                _shut(connection)

    def _fire(self) -> None:
        with self.lock:
            if self.done:  # (the timer ran out just as the exchange ended)
                return
            self.fired = True
            # (a connection back in the pool and taken by another exchange is that one's)
            if self.connection is not None and self.connection.watchdog is self:
                _shut(self.connection)

    def raise_if_fired(self) -> None:
        if self.fired:
            raise _DeadlineError(f"no complete answer within {self.seconds:.0f} s")


class _DeadlineError(TimeoutError):
    """An exchange cut by its _Watchdog."""


class _Watched:
    """A connection that reports itself to the watchdog of the exchange using it."""

    watchdog: _Watchdog | None = None

    # The socket, kept: for an answer without Content-Length http.client hands the socket
    # to the response and sets `sock` to None, and the watchdog must still reach it.
    watched_sock: socket.socket | None = None

    def connect(self) -> None:
        self._report()
        super().connect()  # type: ignore[misc]
        self.watched_sock = self.sock  # type: ignore[attr-defined]

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self._report()
        self.watched_sock = getattr(self, "sock", None)  # (a kept connection; a new one: connect's)
        return super().request(*args, **kwargs)  # type: ignore[misc]

    def _report(self) -> None:
        self.watchdog = getattr(_current, "watchdog", None)
        if self.watchdog is not None:
            self.watchdog.watch(self)


class _WatchedHTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


def _shut(connection: object) -> None:
    sock = getattr(connection, "watched_sock", None) or getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed: nothing to stop
            sock.shutdown(socket.SHUT_RDWR)


def _retry_after(value: str) -> float | None:
    """The seconds a Retry-After asks for (a number, or an HTTP-date), at most MAX_RETRY_AFTER."""
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        seconds = (when - datetime.datetime.now(datetime.UTC)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _inner(err: BaseException) -> BaseException | None:
    """The error `err` wraps: urllib3's carry it in their args or raise from it (1.26 raises
    in an `except` block, which leaves it as the context only)."""
    wrapped = next((arg for arg in err.args if isinstance(arg, BaseException)), None) or err.__cause__
    if wrapped is None and isinstance(err, urllib3.exceptions.HTTPError):
        wrapped = err.__context__
    return wrapped


def _reason(err: BaseException) -> str:
    """What went wrong with a connection, in a few words: its innermost cause. (urllib3's
    NewConnectionError is a ConnectTimeoutError, also for a refused connection: the cause
    decides, not the wrapper.)"""
    chain = _causes(err)
    for cause in chain:
        if isinstance(cause, _DeadlineError):
            return str(cause)
    innermost = chain[-1]
    if isinstance(innermost, OSError) and innermost.strerror and not isinstance(innermost, TimeoutError):
        return innermost.strerror
    if any(isinstance(cause, TimeoutError | urllib3.exceptions.TimeoutError) for cause in chain):
        return f"no answer within {IDLE_SECONDS} s"
    return str(innermost) or type(innermost).__name__


def _tls_failure(err: BaseException) -> BaseException | None:
    """The TLS error behind a transport error (ssl's, or urllib3's for a host name that does
    not match), when TLS is what failed."""
    found = [cause for cause in _causes(err) if isinstance(cause, ssl.SSLError | CertificateError)]
    return found[-1] if found else None


def _causes(err: BaseException) -> list[BaseException]:
    """`err` and what it wraps, outermost first (a chain is short: at most 8, never a cycle)."""
    chain = [err]
    while len(chain) < 8 and (inner := _inner(chain[-1])) is not None:
        chain.append(inner)
    return chain


def _tls_reason(err: BaseException) -> str:
    return str(getattr(err, "reason", None) or err)


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
