"""Pushing to a registry that cannot be trusted (tests/hostile_registry.py): credentials
reach only the origin that challenged (and, for a password, a token service over TLS),
whatever a `Location` or another host's challenge says; endless, huge, dripping and
silent answers cost bounded memory and time; registry text is printed escaped, without
our secrets; a lossy connection sends a blob at most four times."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_conf
from hostile_registry import (
    BASIC,
    PASSWORD,
    SECRETS,
    TOKEN,
    USER,
    Answer,
    Seen,
    drip,
    endless,
    silent_server,
)
from registry_fixtures import FaultyProxy, start_registry

from layered_image.cli import main
from layered_image.registry import client, upload

pytestmark = pytest.mark.usefixtures("own_cache")


@pytest.fixture
def conf(tmp_path: Path, fake_store: Path) -> Path:
    paths = sorted(str(p) for p in fake_store.iterdir())
    return make_conf(tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store))


def registry_route(challenge: str, location: Callable[[], str], accepted: str) -> Callable[..., Answer]:
    """Enough of a registry for a push: every answer but the challenge needs `accepted`."""

    def route(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("Authorization") != accepted:
            return 401, {"WWW-Authenticate": challenge}, b"{}"
        if method == "HEAD":
            return 404, {}, b""
        if method == "POST" and "/blobs/uploads/" in path:
            return 202, {"Location": location()}, b""
        if method in ("PUT", "PATCH") or (method == "GET" and path == "/v2/"):
            return 201 if method == "PUT" else 200, {}, b"{}"
        return 404, {}, b""

    return route


def accepting(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
    """An upload endpoint on another origin: takes what it is given."""
    return (201 if method == "PUT" else 202), {}, b""


def token_service(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
    if path.startswith("/token") and headers.get("Authorization") == BASIC:
        return 200, {}, json.dumps({"token": TOKEN}).encode()
    return 401, {}, b""


def push(conf: Path, host: str, *extra: str) -> int:
    return main(["push", str(conf), f"docker://{host}/test/image:1", "--creds", f"{USER}:{PASSWORD}", *extra])


def secrets_outside(log: list[Seen], registry: str, token_service: str = "") -> list[Seen]:
    """Requests that carried a secret where none may go: anywhere but the registry, except
    the password (never the token) on the token service's token request."""
    leaked = []
    for seen in log:
        if seen.origin == registry:
            continue
        if seen.origin == token_service and seen.path.startswith("/token"):
            if any(TOKEN in value for value in seen.headers.values()):
                leaked.append(seen)
            continue
        if seen.carries_a_secret():
            leaked.append(seen)
    return leaked


@pytest.mark.parametrize("elsewhere", ["http on another port", "https on another host"])
def test_basic_credentials_do_not_follow_a_location_elsewhere(conf, servers, trusting_the_test_ca, elsewhere):
    if elsewhere == "http on another port":  # a TLS-terminating proxy without X-Forwarded-Proto
        other = servers("127.0.0.1", accepting)
    else:
        other = servers("127.0.0.2", accepting, trusting_the_test_ca)
    registry = servers("127.0.0.1", registry_route('Basic realm="r"', lambda: f"{other.origin}/up/1", BASIC),
                       trusting_the_test_ca)  # fmt: skip
    push(conf, registry.host)
    assert any(seen.origin == other.origin for seen in servers.log)  # it was sent there
    assert secrets_outside(servers.log, registry.origin) == []


def test_a_token_goes_only_to_the_registry_and_the_password_only_to_its_token_service(
    conf, servers, trusting_the_test_ca, capsys
):
    auth = servers("127.0.0.2", token_service, trusting_the_test_ca)
    realm = f'Bearer realm="{auth.origin}/token",service="test"'
    route = registry_route(realm, lambda: f"{auth.origin}/upload/1", f"Bearer {TOKEN}")
    registry = servers("127.0.0.1", route, trusting_the_test_ca)
    push(conf, registry.host)
    assert any(seen.origin == auth.origin and seen.path.startswith("/upload") for seen in servers.log)
    assert any(seen.path.startswith("/token") and BASIC in seen.headers.values() for seen in servers.log)
    assert secrets_outside(servers.log, registry.origin, token_service=auth.origin) == []


def test_no_password_to_a_plain_http_token_service_on_another_host(
    conf, servers, trusting_the_test_ca, capsys
):
    auth = servers("127.0.0.2", token_service)  # plain HTTP
    realm = f'Bearer realm="{auth.origin}/token",service="test"'
    registry = servers(
        "127.0.0.1", registry_route(realm, lambda: "/x", f"Bearer {TOKEN}"), trusting_the_test_ca
    )
    assert push(conf, registry.host) == 1
    error = capsys.readouterr().err
    assert "is plain HTTP on another host" in error and error.count("\n") == 1
    assert not any(seen.origin == auth.origin and seen.carries_a_secret() for seen in servers.log)


def test_another_hosts_challenge_is_not_answered(conf, servers, trusting_the_test_ca, capsys):
    """The upload host challenges with its own token service: no password goes there."""
    evil_auth = servers("127.0.0.2", token_service, trusting_the_test_ca)

    def challenging(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        return 401, {"WWW-Authenticate": f'Bearer realm="{evil_auth.origin}/token",service="x"'}, b""

    upload_host = servers("127.0.0.2", challenging, trusting_the_test_ca)
    route = registry_route('Basic realm="r"', lambda: f"{upload_host.origin}/u", BASIC)
    registry = servers("127.0.0.1", route, trusting_the_test_ca)
    assert push(conf, registry.host) == 1
    error = capsys.readouterr().err
    assert "asks for credentials; they go only to" in error and error.count("\n") == 1
    assert not any(seen.origin == evil_auth.origin for seen in servers.log)
    assert secrets_outside(servers.log, registry.origin) == []


def run_push_process(conf: Path, host: str, settings: dict[str, object]) -> tuple[int, str, float, int]:
    """A push in its own process with the client's limits set low: exit code, stderr,
    seconds, and the peak RSS in MB of that process alone (its VmHWM, which exec resets;
    a parent's getrusage may count the pages the child shared with pytest before exec)."""
    with tempfile.NamedTemporaryFile("r") as peak:
        program = (
            "import sys; from layered_image.registry import client\n"
            + "".join(f"client.{name} = {value!r}\n" for name, value in settings.items())
            + "from layered_image.cli import main\n"
            + f"code = main(['push', {str(conf)!r}, 'docker://{host}/test/image:1', '--tls-verify=false'])\n"
            + "status = open('/proc/self/status').read()\n"
            + f"open({peak.name!r}, 'w').write(status.split('VmHWM:')[1].split()[0])\n"
            + "sys.exit(code)\n"
        )
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-c", program], stderr=subprocess.PIPE, env=os.environ.copy())
        seconds = time.monotonic() - started
        rss_mb = int(peak.read() or 0) // 1024
    return done.returncode, done.stderr.decode(), seconds, rss_mb


def plain_registry(overrides: Callable[[str, str], Answer | None]) -> Callable[..., Answer]:
    """A registry with no auth whose answers `overrides` may replace."""
    base = registry_route("", lambda: "/v2/test/image/blobs/uploads/1", "")

    def route(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        headers = {k: v for k, v in headers.items() if k != "Authorization"} | {"Authorization": ""}
        return overrides(method, path) or base(method, path, headers, body)

    return route


def test_an_endless_answer_is_read_only_so_far(conf, servers):
    def overrides(method: str, path: str) -> Answer | None:
        return (200, {}, endless()) if path == "/v2/" else None

    registry = servers("127.0.0.1", plain_registry(overrides))
    code, error, seconds, rss = run_push_process(conf, registry.host, {})
    assert code == 0, error  # the first MiB of /v2/'s body read, the rest never
    assert rss < 150 and seconds < 30


def test_a_huge_error_body_costs_no_memory_and_prints_one_short_line(conf, servers):
    def overrides(method: str, path: str) -> Answer | None:
        if method == "POST":
            return 400, {"Content-Length": str(1 << 30)}, endless(b"\x1b[31mno " * 8192)
        return None

    registry = servers("127.0.0.1", plain_registry(overrides))
    code, error, _, rss = run_push_process(conf, registry.host, {})
    assert code == 1 and error.count("\n") == 1 and len(error) < 600, error
    assert "\x1b" not in error and "\\x1b[31mno" in error  # escaped, not a terminal command
    assert rss < 150


@pytest.mark.parametrize("length", [{"Content-Length": "1000000"}, {}], ids=["with-length", "until-close"])
def test_a_dripping_registry_meets_the_request_deadline(conf, servers, length):
    """Without a Content-Length http.client gives the socket to the answer (sock is None
    on the connection): the watchdog must still shut it."""

    def overrides(method: str, path: str) -> Answer | None:
        return (200, length, drip(0.3)) if path == "/v2/" else None

    registry = servers("127.0.0.1", plain_registry(overrides))
    code, error, seconds, _ = run_push_process(conf, registry.host, {"REQUEST_SECONDS": 2, "IDLE_SECONDS": 5})
    assert code == 1 and "no complete answer within 2 s" in error and error.count("\n") == 1, error
    assert seconds < 20


def test_a_silent_registry_is_given_up_after_the_idle_time(conf):
    listener, host = silent_server()
    try:
        code, error, seconds, _ = run_push_process(conf, host, {"IDLE_SECONDS": 1})
    finally:
        listener.close()
    assert code == 1 and "cannot reach registry" in error and error.count("\n") == 1, error
    assert seconds < 20


def test_a_push_has_a_deadline(conf, servers):
    """Each request in time, but together too slow: the push stops at its own deadline."""

    def overrides(method: str, path: str) -> Answer | None:
        time.sleep(0.5)
        return (500, {}, b"") if method == "POST" else None

    registry = servers("127.0.0.1", plain_registry(overrides))
    code, error, seconds, _ = run_push_process(conf, registry.host, {"PUSH_SECONDS": 1})
    assert code == 1 and "past its deadline" in error.splitlines()[-1], error  # after retry notes
    assert seconds < 20


def test_registry_text_is_escaped_redacted_and_said_once(conf, servers, trusting_the_test_ca, capsys):
    echo = f"\x1b]0;pwned\x07you sent Authorization: {BASIC} and token {TOKEN}".encode()

    def route(method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if headers.get("Authorization") != BASIC:
            return 401, {"WWW-Authenticate": 'Basic realm="r"'}, b""
        if method == "POST":
            return 500, {}, echo
        return registry_route("", lambda: "/", BASIC)(method, path, headers, body)

    registry = servers("127.0.0.1", route, trusting_the_test_ca)
    monkey_pause = client.Registry.retry_pause
    client.Registry.retry_pause = 0.01
    try:
        assert push(conf, registry.host) == 1
    finally:
        client.Registry.retry_pause = monkey_pause
    error = capsys.readouterr().err
    assert "\x1b" not in error and "\x07" not in error
    assert not any(secret in error for secret in SECRETS)


def test_a_lossy_connection_sends_a_blob_at_most_four_times(tmp_path, monkeypatch, capsys):
    """Every fourth PATCH's answer lost: the distribution registry cannot resume (its session
    state is stale), so the upload starts over each time, three chunks in; in all, at most
    4x the blob is sent (before, every restart had fresh tries: 688 MB for a 40 MB blob)."""
    store = tmp_path / "store"
    path = store / ("b" * 32 + "-big-1.0")
    path.mkdir(parents=True)
    (path / "data").write_bytes(os.urandom(1 << 20))
    conf = make_conf(tmp_path, [[str(path)]], store_dir=str(store))
    registry = start_registry(tmp_path / "registry")
    faults = [("PATCH", "/blobs/uploads/", "lost-answer", n) for n in range(4, 200, 4)]
    proxy = FaultyProxy(registry.host, faults).start()
    monkeypatch.setattr(upload, "CHUNK", 128 << 10)
    monkeypatch.setattr(client.Registry, "retry_pause", 0.01)
    try:
        code = main(["push", str(conf), f"docker://{proxy.host}/test/image:1", "--tls-verify=false"])
    finally:
        proxy.stop()
        registry.stop()
    error = capsys.readouterr().err
    assert code == 1 and "4 times its size sent" in error, error
    layer = (1 << 20) + 8192  # the file and its tar headers
    assert proxy.body_bytes <= 4 * layer + 4 * 4096  # (and the small config blob, whole, at most 4 times)


MALFORMED = {
    "no challenge": lambda m, p: (401, {}, b"") if p == "/v2/" else None,
    "bearer without realm": lambda m, p: (
        (401, {"WWW-Authenticate": "Bearer service=x"}, b"") if p == "/v2/" else None
    ),
    "bearer realm not a URL": lambda m, p: (
        (401, {"WWW-Authenticate": 'Bearer realm="a b c"'}, b"") if p == "/v2/" else None
    ),
    "bearer realm bad IPv6": lambda m, p: (
        (401, {"WWW-Authenticate": 'Bearer realm="http://[::1/t"'}, b"") if p == "/v2/" else None
    ),
    "location port out of range": lambda m, p: (
        (202, {"Location": "http://127.0.0.1:99999/u"}, b"") if m == "POST" else None
    ),
    "location bad IPv6": lambda m, p: (202, {"Location": "http://[::1/u"}, b"") if m == "POST" else None,
    "location not http": lambda m, p: (202, {"Location": "ftp://127.0.0.1/u"}, b"") if m == "POST" else None,
    "location with spaces": lambda m, p: (202, {"Location": "/a b\tc"}, b"") if m == "POST" else None,
    "no location": lambda m, p: (202, {}, b"") if m == "POST" else None,
    "odd status": lambda m, p: (299, {}, b"") if m == "PUT" else None,
    "HEAD says 403": lambda m, p: (403, {}, b"") if m == "HEAD" else None,
    "content-length lies": lambda m, p: (
        (200, {"Content-Length": "5"}, iter([b"ab"])) if p == "/v2/" else None
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_registry_answers_are_one_line(conf, servers, case):
    registry = servers("127.0.0.1", plain_registry(MALFORMED[case]))
    code, error, seconds, _ = run_push_process(conf, registry.host, {"IDLE_SECONDS": 2, "RETRIES": 2})
    last = error.strip().splitlines()[-1] if error.strip() else ""
    assert "Traceback" not in error, error
    assert code == 0 or (code == 1 and last.startswith("layered-image push: error:")), error
    assert seconds < 30
