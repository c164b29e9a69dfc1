"""`layered-image push` against a real registry: what goes over the wire, what skopeo
reads back, credentials, and a registry that fails now and then."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import make_conf, need, run_cli
from registry_fixtures import FaultyProxy, start_registry

from layered_image.cli import main
from layered_image.registry import blob_locations, upload


@pytest.fixture(autouse=True)
def blob_cache(own_cache: Path) -> Path:
    """Each test its own cache of where blobs were seen (pushes run as separate processes)."""
    return own_cache / "blob-locations.json"


@pytest.fixture
def conf(tmp_path: Path, fake_store: Path) -> Path:
    paths = sorted(str(p) for p in fake_store.iterdir())
    return make_conf(tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store))


def push(
    conf: Path, host: str, *extra: str, repository: str = "test/image", **kwargs
) -> subprocess.CompletedProcess:
    target = f"docker://{host}/{repository}:1"
    return run_cli("push", str(conf), target, "--tls-verify=false", *extra, **kwargs)


def skopeo(*args: str) -> subprocess.CompletedProcess:
    need(subprocess.run(["which", "skopeo"], capture_output=True).returncode == 0, "skopeo")
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)


def test_pushed_image_reads_back_with_the_same_diff_ids(tmp_path, conf, registry):
    result = push(conf, registry.host, "--digestfile", str(tmp_path / "digest"))
    assert result.returncode == 0, result.stderr.decode()
    assert "3 blobs pushed" in result.stderr.decode()
    source = f"docker://{registry.host}/test/image:1"
    raw = skopeo("inspect", "--raw", "--tls-verify=false", source).stdout.encode()
    assert (tmp_path / "digest").read_text() == "sha256:" + hashlib.sha256(raw).hexdigest()
    inspect = skopeo("inspect", "--tls-verify=false", "--config", source)
    assert inspect.returncode == 0, inspect.stderr
    diff_ids = json.loads(inspect.stdout)["rootfs"]["diff_ids"]
    assert len(diff_ids) == 2
    assert skopeo("copy", "-q", "--src-tls-verify=false", source, f"oci:{tmp_path}/layout:1").returncode == 0
    copy = skopeo("copy", "-q", "--src-tls-verify=false", source, f"docker-archive:{tmp_path}/back.tar:x:1")
    assert copy.returncode == 0, copy.stderr
    with tarfile.open(tmp_path / "back.tar") as tar:
        layers = json.load(tar.extractfile("manifest.json"))[0]["Layers"]  # type: ignore[arg-type]
        pulled = ["sha256:" + hashlib.sha256(tar.extractfile(n).read()).hexdigest() for n in layers]  # type: ignore[union-attr]
    assert pulled == diff_ids


def test_pushing_again_sends_nothing_and_a_change_sends_only_its_layer(conf, registry, fake_store):
    assert push(conf, registry.host).returncode == 0
    uploads = registry.requests("POST", "/blobs/uploads/")
    again = push(conf, registry.host)
    assert again.returncode == 0 and "0 blobs pushed (0 bytes), 3 already there" in again.stderr.decode()
    assert registry.requests("POST", "/blobs/uploads/") == uploads  # the registry saw no upload
    # an update: one store path replaced by a new one (store paths never change in place)
    updated = fake_store / "dddddddddddddddddddddddddddddddd-file"
    updated.write_text("a new store path")
    old_path = str(fake_store / "cccccccccccccccccccccccccccccccc-file")
    layers = [
        [str(updated) if p == old_path else p for p in layer]
        for layer in json.loads(conf.read_text())["store_layers"]
    ]
    conf.write_text(json.dumps(json.loads(conf.read_text()) | {"store_layers": layers}))
    third = push(conf, registry.host)
    assert third.returncode == 0 and "2 blobs pushed" in third.stderr.decode()  # that layer and the config
    assert registry.requests("POST", "/blobs/uploads/") == uploads + 2
    assert "already there" in third.stderr.decode()


def test_blobs_pushed_to_one_repository_are_mounted_into_another(tmp_path, conf, registry):
    assert push(conf, registry.host).returncode == 0
    uploads = registry.requests("PUT", "/blobs/uploads/")
    other = push(conf, registry.host, repository="test/other")
    assert other.returncode == 0, other.stderr.decode()
    assert "0 blobs pushed (0 bytes), 3 mounted" in other.stderr.decode()
    assert other.stderr.decode().count("mounted from test/image sha256:") == 3
    assert registry.requests("PUT", "/blobs/uploads/") == uploads  # no byte of a blob went again
    source = f"docker://{registry.host}/test/other:1"
    copy = skopeo("copy", "-q", "--src-tls-verify=false", source, f"oci:{tmp_path}/layout:1")
    assert copy.returncode == 0, copy.stderr  # every blob readable from the new repository


def test_a_stale_or_broken_blob_cache_means_an_upload(conf, registry, blob_cache):
    blob_cache.parent.mkdir(parents=True)
    blob_cache.write_text("{not json")
    first = push(conf, registry.host)
    assert first.returncode == 0 and "3 blobs pushed" in first.stderr.decode()
    # The registry has the blobs in test/image only; the cache says test/gone holds them.
    blob_cache.write_text(blob_cache.read_text().replace('"test/image"', '"test/gone"'))
    other = push(conf, registry.host, repository="test/other")
    assert other.returncode == 0, other.stderr.decode()
    assert "3 blobs pushed" in other.stderr.decode() and "mounted" not in other.stderr.decode()
    assert registry.requests("POST", "mount=") == 3  # each tried once, then uploaded
    inspect = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/test/other:1")
    assert inspect.returncode == 0, inspect.stderr
    assert '"test/other"' in blob_cache.read_text()


def test_an_unwritable_blob_cache_is_a_note_not_a_failure(tmp_path, conf, registry, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    result = push(conf, registry.host)
    assert result.returncode == 0 and "3 blobs pushed" in result.stderr.decode()
    assert "note: could not remember the pushed blobs" in result.stderr.decode()


def test_the_blob_cache_keeps_the_newest(tmp_path, monkeypatch):
    monkeypatch.setattr(blob_locations, "MAX_DIGESTS_PER_HOST", 2)
    monkeypatch.setattr(blob_locations, "MAX_REPOSITORIES_PER_BLOB", 2)
    seen = blob_locations.BlobLocations.load(tmp_path / "cache.json")
    for repository, digests in [("a", ["d1", "d2"]), ("b", ["d1"]), ("c", ["d3", "d1"])]:
        seen.record("host", repository, digests)
    assert seen.save() is None
    again = blob_locations.BlobLocations.load(tmp_path / "cache.json")
    assert again.seen == {"host": {"d3": ["c"], "d1": ["c", "b"]}}  # d2 the oldest, a the oldest of d1
    assert again.elsewhere("host", "d1", "c") == ["b"] and again.elsewhere("other", "d1", "x") == []


def test_large_blobs_go_up_in_chunks(conf, registry, monkeypatch, capsys):
    monkeypatch.setattr(upload, "CHUNK", 64 << 10)  # the 300 kB random file makes a bigger layer
    assert main(["push", str(conf), f"docker://{registry.host}/test/image:1", "--tls-verify=false"]) == 0
    assert registry.requests("PATCH", "/blobs/uploads/") >= 4
    inspect = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/test/image:1")
    assert inspect.returncode == 0, inspect.stderr


@pytest.fixture
def auth_registry(tmp_path: Path):
    htpasswd = tmp_path / "htpasswd"
    need(
        subprocess.run(["which", "htpasswd"], capture_output=True).returncode == 0, "htpasswd (apache2-utils)"
    )
    subprocess.run(["htpasswd", "-Bbc", str(htpasswd), "alice", "s3cret"], check=True, capture_output=True)
    running = start_registry(tmp_path / "registry", htpasswd)
    yield running
    running.stop()


def test_credentials_from_creds_and_authfile(tmp_path, conf, auth_registry):
    host = auth_registry.host
    missing = push(conf, host)
    assert missing.returncode == 1 and "needs credentials" in missing.stderr.decode()
    wrong = push(conf, host, "--creds", "alice:wrong")
    assert wrong.returncode == 1 and "refused the credentials" in wrong.stderr.decode()
    assert missing.stderr.decode().count("\n") == 1 and wrong.stderr.decode().count("\n") == 1
    assert push(conf, host, "--creds", "alice:s3cret").returncode == 0
    authfile = tmp_path / "auth.json"
    authfile.write_text(json.dumps({"auths": {host: {"auth": base64.b64encode(b"alice:s3cret").decode()}}}))
    again = push(conf, host, "--authfile", str(authfile))
    assert again.returncode == 0 and "0 blobs pushed" in again.stderr.decode()
    home = tmp_path / "home"  # the usual files: podman's auth.json, then docker's config.json
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(authfile.read_text())
    usual = push(conf, host, env=os.environ | {"HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")})
    assert usual.returncode == 0, usual.stderr.decode()


HELPER = """#!/bin/sh
# docker-credential-test: the credential helper protocol; logs each server it is asked for
read server
echo "$server" >> "$0.log"
case "$server" in
  *127.0.0.1*) echo '{"ServerURL": "'"$server"'", "Username": "alice", "Secret": "s3cret"}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
"""


def test_credentials_from_a_credential_helper(tmp_path, conf, auth_registry):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    helper = bin_dir / "docker-credential-test"
    helper.write_text(HELPER)
    helper.chmod(0o755)
    env = os.environ | {"PATH": f"{bin_dir}:{os.environ['PATH']}"}
    host = auth_registry.host
    for settings in ({"credHelpers": {host: "test"}}, {"auths": {host: {}}, "credsStore": "test"}):
        authfile = tmp_path / "config.json"
        authfile.write_text(json.dumps(settings))
        result = push(conf, host, "--authfile", str(authfile), env=env)
        assert result.returncode == 0, result.stderr.decode()
    assert Path(f"{helper}.log").read_text() == f"{host}\n{host}\n"
    # A helper that has nothing for the registry: no credentials in that file.
    authfile.write_text(json.dumps({"credHelpers": {host: "test"}}))
    helper.write_text(HELPER.replace("*127.0.0.1*", "*nowhere*"))
    nothing = push(conf, host, "--authfile", str(authfile), env=env)
    assert nothing.returncode == 1 and "holds no credentials for" in nothing.stderr.decode()
    authfile.write_text(json.dumps({"credHelpers": {host: "missing"}}))
    missing = push(conf, host, "--authfile", str(authfile), env=env)
    assert missing.returncode == 1 and missing.stderr.decode().count("\n") == 1
    assert "docker-credential-missing, which is not on PATH" in missing.stderr.decode()
    home = tmp_path / "home"  # in the usual files, as Docker Desktop leaves them: skipped
    (home / ".docker").mkdir(parents=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"credsStore": "desktop"}))
    usual = push(conf, host, env=env | {"HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")})
    assert usual.returncode == 1 and "needs credentials: give --creds" in usual.stderr.decode()


def test_an_identity_token_is_exchanged_for_an_access_token(tmp_path, conf, registry, auth_registry):
    """What `docker login` keeps for OAuth2 registries (Azure's, for one): a refresh token,
    in the file's `identitytoken` or from a helper as user "<token>"."""
    authfile = tmp_path / "auth.json"
    proxy = FaultyProxy(registry.host, bearer_token="t0ken").start()
    try:
        authfile.write_text(json.dumps({"auths": {proxy.host: {"identitytoken": "r3fresh"}}}))
        result = push(conf, proxy.host, "--authfile", str(authfile))
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr.decode()
    path, _, form = proxy.token_requests[0].partition(" POST ")
    assert path == "/token" and "grant_type=refresh_token&refresh_token=r3fresh" in form
    assert "scope=repository%3Atest%2Fimage%3Apull%2Cpush" in form and "service=test-registry" in form
    authfile.write_text(json.dumps({"auths": {auth_registry.host: {"identitytoken": "r3fresh"}}}))
    basic = push(conf, auth_registry.host, "--authfile", str(authfile))
    assert basic.returncode == 1 and "not an identity token" in basic.stderr.decode()


@pytest.mark.parametrize("fault", ["500", "reset"])
def test_a_failing_registry_is_retried(conf, registry, fault):
    proxy = FaultyProxy(registry.host, [("PUT", "/blobs/uploads/", fault), ("POST", "/blobs/", fault),
                                        ("PUT", "/manifests/", fault)]).start()  # fmt: skip
    try:
        result = push(conf, proxy.host)
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr.decode()
    assert result.stderr.decode().count("retrying") == 3
    assert skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/test/image:1").returncode == 0


def test_a_chunked_upload_resumes_where_the_registry_got_to(conf, registry, monkeypatch, capsys):
    monkeypatch.setattr(upload, "CHUNK", 64 << 10)  # its layer of random bytes: 10 chunks
    monkeypatch.setattr("layered_image.registry.client.Registry.retry_pause", 0.01)
    # The 2nd chunk never reaches the registry; the 4th does, but its answer is lost.
    faults = [("PATCH", "/blobs/uploads/", "reset", 2), ("PATCH", "/blobs/uploads/", "lost-answer", 5)]
    proxy = FaultyProxy(registry.host, faults).start()
    try:
        code = main(["push", str(conf), f"docker://{proxy.host}/test/image:1", "--tls-verify=false"])
    finally:
        proxy.stop()
    error = capsys.readouterr().err
    assert code == 0, error
    assert error.count("retrying uploading") == 2
    # The lost chunk was sent again, and only it: 4 chunks in the first session. After the
    # lost answer the registry cannot resume (our session state names an old offset), so
    # that upload starts over: 10 more, and one more POST.
    assert "cannot resume the upload" in error
    assert registry.requests("PATCH", "/blobs/uploads/") == 4 + 10
    assert registry.requests("POST", "/blobs/uploads/") == 3 + 1
    inspect = skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/test/image:1")
    assert inspect.returncode == 0, inspect.stderr


@pytest.mark.parametrize("fault", ["500", "lost-answer"])
def test_a_failed_last_put_is_checked_not_resent(conf, registry, monkeypatch, capsys, fault):
    monkeypatch.setattr(upload, "CHUNK", 64 << 10)
    monkeypatch.setattr("layered_image.registry.client.Registry.retry_pause", 0.01)
    target = f"docker://{registry.host}/test/first:1"
    assert main(["push", str(conf), target, "--tls-verify=false"]) == 0
    pushed = [line.split() for line in capsys.readouterr().err.splitlines() if line.startswith("pushed ")]
    short = max(pushed, key=lambda words: int(words[2].strip("(").replace(",", "")))[1]  # the chunked one
    monkeypatch.setenv("XDG_CACHE_HOME", str(registry.log.parent / "fresh"))  # no mount this time
    proxy = FaultyProxy(registry.host, [("PUT", f"digest={short}", fault)]).start()
    patches, gets = registry.requests("PATCH", "/blobs/uploads/"), registry.requests("GET", "/blobs/uploads/")
    try:
        code = main(["push", str(conf), f"docker://{proxy.host}/test/image:1", "--tls-verify=false"])
    finally:
        proxy.stop()
    error = capsys.readouterr().err
    assert code == 0 and f"retrying finishing the upload of {short}" in error, error
    assert registry.requests("PATCH", "/blobs/uploads/") == patches + 10  # no chunk sent twice
    # After an error answer the upload's state is asked for, then it is finished; after a
    # lost answer the blob is found there.
    assert registry.requests("GET", "/blobs/uploads/") == gets + (fault == "500")
    assert skopeo("inspect", "--tls-verify=false", f"docker://{registry.host}/test/image:1").returncode == 0


def test_a_registry_that_keeps_failing_gets_no_manifest(conf, registry, monkeypatch, capsys):
    proxy = FaultyProxy(registry.host, [("PUT", "/blobs/uploads/", "500")] * 100).start()
    monkeypatch.setattr("layered_image.registry.client.Registry.retry_pause", 0.01)
    try:
        code = main(["push", str(conf), f"docker://{proxy.host}/test/image:1", "--tls-verify=false"])
    finally:
        proxy.stop()
    error = capsys.readouterr().err
    # the fifth whole upload would send the blob a fifth time: over its budget of four
    assert code == 1 and "4 times its size sent" in error and "Traceback" not in error
    assert registry.requests("PUT", "/manifests/") == 0


def test_bad_destinations_are_one_line(conf):
    refused = "cannot reach registry 127.0.0.1:1: Connection refused"  # not "no answer within 30 s"
    for destination, message in [("127.0.0.1:1/x:1", "not a registry reference"),
                                 ("docker://127.0.0.1:1/Upper:1", "bad repository name"),
                                 ("docker://127.0.0.1:1/x:1", refused)]:  # fmt: skip
        result = run_cli("push", str(conf), destination, "--tls-verify=false")
        assert result.returncode == 1 and message in result.stderr.decode(), result.stderr
        assert result.stderr.decode().count("\n") == 1


def platform_conf(conf: Path, tmp_path: Path, **platform: str) -> Path:
    changed = tmp_path / f"{'-'.join(platform.values())}.json"
    changed.write_text(json.dumps(json.loads(conf.read_text()) | platform))
    return changed


def test_index_puts_one_image_per_platform_under_one_tag(tmp_path, conf, registry):
    arm64 = platform_conf(conf, tmp_path, architecture="arm64")
    target = f"docker://{registry.host}/test/multi:1"
    handshakes = registry.log.read_text().count('"GET /v2/ HTTP')
    result = run_cli(
        "index", str(conf), str(arm64), "--push", target, "--tls-verify=false",
        "--digestfile", str(tmp_path / "digest"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    assert registry.log.read_text().count('"GET /v2/ HTTP') == handshakes + 1  # one for the index
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", target).stdout)
    assert raw["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert f"index {(tmp_path / 'digest').read_text()} of linux/amd64, linux/arm64" in result.stderr.decode()
    assert [m["platform"] for m in raw["manifests"]] == [
        {"architecture": "amd64", "os": "linux"}, {"architecture": "arm64", "os": "linux"}]  # fmt: skip
    for arch in ("amd64", "arm64"):
        inspect = skopeo("inspect", "--override-arch", arch, "--tls-verify=false", target)
        assert json.loads(inspect.stdout)["Architecture"] == arch
    twice = run_cli("index", str(conf), str(conf), "--push", target, "--tls-verify=false")
    assert twice.returncode == 1 and b"same platform (linux/amd64)" in twice.stderr


def test_index_tells_arm_variants_apart(tmp_path, conf, registry, docker_host):
    """arm/v6 and arm/v7 are two platforms: one index holds both, and skopeo and
    containerd's platform matcher each find the one asked for."""
    v6 = platform_conf(conf, tmp_path, architecture="arm", variant="v6")
    v7 = platform_conf(conf, tmp_path, architecture="arm", variant="v7")
    target = f"{registry.host}/test/arm-variants:{uuid.uuid4().hex[:8]}"
    result = run_cli("index", str(v6), str(v7), "--push", f"docker://{target}", "--tls-verify=false")
    assert result.returncode == 0, result.stderr.decode()
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}").stdout)
    assert [m["platform"] for m in raw["manifests"]] == [
        {"architecture": "arm", "os": "linux", "variant": "v6"},
        {"architecture": "arm", "os": "linux", "variant": "v7"},
    ]
    for variant, entry in zip(("v6", "v7"), raw["manifests"], strict=True):
        config = skopeo("inspect", "--config", "--override-arch", "arm", "--override-variant", variant,
                        "--tls-verify=false", f"docker://{target}").stdout  # fmt: skip
        assert json.loads(config)["variant"] == variant
        assert containerd_pick(target, f"linux/arm/{variant}") == entry["digest"]
    # no variant means v7 to containerd: arm and arm/v7 are one platform
    plain = platform_conf(conf, tmp_path, architecture="arm")
    twice = run_cli("index", str(plain), str(v7), "--push", f"docker://{target}", "--tls-verify=false")
    assert twice.returncode == 1 and b"same platform (linux/arm/v7)" in twice.stderr


def containerd_pick(reference: str, platform: str) -> str:
    """The manifest digest containerd's platform matcher picks from the index at `reference`
    (ctr against the containerd dockerd runs)."""
    docker_dir = Path(os.environ["DOCKER_HOST"].removeprefix("unix://")).parent
    socket = docker_dir / "exec/containerd/containerd.sock"
    fetched = subprocess.run(
        ["ctr", "-a", str(socket), "-n", "layered-image-test", "content", "fetch", "--plain-http",
         "--platform", platform, reference],
        capture_output=True, text=True,
    )  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    picked = set(re.findall(r"^manifest-\S*?(sha256:[0-9a-f]{64}):", fetched.stdout, re.MULTILINE))
    assert len(picked) == 1, fetched.stdout  # (the progress display may repeat a line)
    return picked.pop()


def test_a_mount_source_found_while_pushing_joins_the_token(conf, registry, own_cache, capsys):
    """Blobs seen in test/image, the layer digest cache forgotten (deleted, or a newer
    layered-image): a blob's mount source is known only once the blob is made, after the
    login; a registry whose tokens read only what they asked for refuses that mount until
    the token asks to read test/image too."""
    proxy = FaultyProxy(registry.host, bearer_token="t0ken", scoped_tokens=True).start()
    try:
        credentials = ["--tls-verify=false", "--creds", "alice:s3cret"]
        assert main(["push", str(conf), f"docker://{proxy.host}/test/image:1", *credentials]) == 0
        shutil.rmtree(own_cache / "layer-digests")
        capsys.readouterr()
        assert main(["push", str(conf), f"docker://{proxy.host}/test/other:1", *credentials]) == 0
        error = capsys.readouterr().err
    finally:
        proxy.stop()
    lines = error.splitlines()
    assert sum(line.startswith("mounted from test/image") for line in lines) == 3, error
    assert not any(line.startswith("pushed ") for line in lines), error
    assert "scope=repository%3Atest%2Fimage%3Apull" in proxy.token_requests[-1]


def test_a_bearer_token_challenge_is_answered(conf, registry):
    """A token-auth front (as Docker Hub and most registries have): 401 with a Bearer
    challenge, a token from its realm, then requests carrying the token."""
    proxy = FaultyProxy(registry.host, bearer_token="t0ken").start()
    try:
        result = push(conf, proxy.host, "--creds", "alice:s3cret")
        other = push(conf, proxy.host, "--creds", "alice:s3cret", repository="test/other")
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr.decode()
    first, second = proxy.token_requests[0], proxy.token_requests[-1]
    assert "scope=repository%3Atest%2Fimage%3Apull%2Cpush" in first and "service=test-registry" in first
    # Pushed to another repository, the token also asks to read the one it mounts from.
    assert other.returncode == 0 and "3 mounted" in other.stderr.decode(), other.stderr.decode()
    assert "scope=repository%3Atest%2Fother%3Apull%2Cpush&scope=repository%3Atest%2Fimage%3Apull" in second
