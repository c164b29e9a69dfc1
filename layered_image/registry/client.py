"""A small OCI distribution API client over http.client: TLS or plain HTTP, Basic or
bearer-token auth from the registry's challenge, and retries with backoff on 5xx and
dropped connections. One connection per request, so threads can share a client."""

from __future__ import annotations

import base64
import http.client
import json
import re
import ssl
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
TIMEOUT = 300


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

    def connect(self) -> None:
        """Find out how to talk to the registry (https, else plain http when allowed) and log in."""
        if self.connected:
            return
        try:
            self._authorize(self._send("GET", "/v2/"))
        except ssl.SSLError as err:
            if self.tls_verify and "WRONG_VERSION_NUMBER" not in str(err):
                raise UserError(
                    f"{self.host}: TLS failed ({err.reason}); --tls-verify=false skips it"
                ) from None
            if self.tls_verify:
                raise UserError(f"{self.host} speaks plain HTTP; allow it with --tls-verify=false") from None
            self.scheme = "http"
            self._authorize(self._send("GET", "/v2/"))
        except OSError as err:
            raise UserError(f"cannot reach registry {self.host}: {err}") from None
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
            if response.status == 401:
                self._authorize(response)
                response = self._send(method, url, body, headers)
        except (ConnectionError, http.client.HTTPException, TimeoutError) as err:
            raise RetryableError(f"{method} {url}: {err or type(err).__name__}") from None
        if response.status == 401 and not refusal_ok:
            raise UserError(f"{self.host} refused the credentials for {self.repository} (401 on {method})")
        if response.status >= 500:
            raise RetryableError(f"{method} {url}: {response.status} {response.body[:200]!r}")
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
        return urllib.parse.urljoin(f"{self.scheme}://{self.host}/", location)

    def expect(self, answer: Response, status: int, what: str) -> None:
        if answer.status != status:
            self.refused(answer, what)

    def refused(self, answer: Response, what: str) -> NoReturn:
        detail = answer.body[:300].decode(errors="replace").strip()
        raise UserError(f"{self.host} refused {what}: {answer.status} {detail}")

    def _send(
        self, method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> Response:
        parsed = urllib.parse.urlsplit(url)
        host = parsed.netloc or self.host
        target = urllib.parse.urlunsplit(("", "", parsed.path, parsed.query, ""))
        connection = self._connection(host, parsed.scheme or self.scheme)
        all_headers = {"Content-Length": str(len(body)), "User-Agent": USER_AGENT, **(headers or {})}
        if self.authorization:
            all_headers["Authorization"] = self.authorization
        try:
            connection.request(method, target, body=body, headers=all_headers)
            answer = connection.getresponse()
            data = answer.read()
        finally:
            connection.close()
        return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)

    def _connection(self, host: str, scheme: str) -> http.client.HTTPConnection:
        if scheme == "http":
            return http.client.HTTPConnection(host, timeout=TIMEOUT)
        context = ssl.create_default_context()
        if not self.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return http.client.HTTPSConnection(host, timeout=TIMEOUT, context=context)

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
            raise UserError(f"{self.host}: the token service {realm} refused us ({answer.status})")
        try:
            token = json.loads(answer.body)
            return str(token.get("token") or token["access_token"])
        except (ValueError, KeyError, AttributeError):
            raise UserError(f"{self.host}: the token service {realm} gave no token") from None


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
