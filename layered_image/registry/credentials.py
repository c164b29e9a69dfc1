"""Credentials for a registry: --creds, --authfile, or the files docker and podman use,
with their credential helpers (`credHelpers`, `credsStore`: docker-credential-NAME)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

from layered_image.errors import UserError
from layered_image.registry.client import IDENTITY_TOKEN


def default_auth_files() -> list[Path]:
    """Where podman, skopeo and docker keep logins, in the order skopeo looks."""
    files = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    home = Path.home()
    files += [home / ".config" / "containers" / "auth.json", home / ".docker" / "config.json"]
    return files


def find_credentials(host: str, creds: str | None, authfile: str | None) -> tuple[str, str] | None:
    if creds is not None:
        user, colon, password = creds.partition(":")
        if not colon or not user:
            raise UserError("--creds takes USER:PASSWORD")
        return user, password
    if authfile is not None:
        found = _from_auth_file(Path(authfile), host)
        if found is None:
            raise UserError(f"{authfile} holds no credentials for {host}")
        return found
    for path in default_auth_files():  # a helper named here but not installed: skipped
        if path.exists() and (found := _from_auth_file(path, host, need_helpers=False)):
            return found
    return None


def _from_auth_file(path: Path, host: str, need_helpers: bool = True) -> tuple[str, str] | None:
    try:
        settings = json.loads(path.read_text())
        auths, helpers = settings.get("auths", {}), settings.get("credHelpers", {})
    except OSError as err:
        raise UserError(f"cannot read the auth file {path}: {err.strerror or err}") from None
    except (ValueError, AttributeError) as err:  # not JSON, or not an object
        raise UserError(f"the auth file {path} is not a JSON object of auths: {err}") from None
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == "registry-1.docker.io":
        keys += ["docker.io", "https://index.docker.io/v1/"]
    for key in keys:
        if isinstance(helpers, dict) and isinstance(helpers.get(key), str):
            return _from_helper(helpers[key], key, path, need_helpers)
    for key in keys:
        entry = auths.get(key) if isinstance(auths, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("identitytoken"), str):
            return IDENTITY_TOKEN, entry["identitytoken"]
        if isinstance(entry, dict) and entry.get("auth"):
            return _decode(entry["auth"], key, path)
    if isinstance(settings.get("credsStore"), str):  # docker asks it for Docker Hub by its old URL
        server = keys[-1] if host == "registry-1.docker.io" else host
        return _from_helper(settings["credsStore"], server, path, need_helpers)
    return None


def _decode(auth: object, key: str, path: Path) -> tuple[str, str]:
    try:
        user, _, password = base64.b64decode(str(auth)).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise UserError(f"{path}: the auth entry for {key} is not base64 USER:PASSWORD") from None
    return user, password


def _from_helper(name: str, server: str, path: Path, needed: bool) -> tuple[str, str] | None:
    """Ask docker-credential-NAME (the docker credential helper protocol: `get`, the server
    on stdin, JSON out); None when it has nothing for this server, or is not installed and
    not `needed`."""
    program = shutil.which(f"docker-credential-{name}")
    if program is None and not needed:
        return None
    if program is None:
        raise UserError(
            f"{path} names the credential helper docker-credential-{name}, which is not on PATH; "
            "install it, or give --creds USER:PASSWORD"
        )
    try:
        answer = subprocess.run([program, "get"], input=server, capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise UserError(f"docker-credential-{name} get failed: {err}") from None
    if answer.returncode != 0:
        if "credentials not found" in answer.stdout + answer.stderr:
            return None
        detail = (answer.stderr or answer.stdout).strip().splitlines()[-1:] or ["no message"]
        raise UserError(f"docker-credential-{name} get {server}: exit {answer.returncode}: {detail[0]}")
    try:
        found = json.loads(answer.stdout)
        user, secret = str(found["Username"]), str(found["Secret"])
    except (ValueError, KeyError, TypeError):
        raise UserError(f"docker-credential-{name} get {server}: not the helper protocol's JSON") from None
    return user, secret  # user IDENTITY_TOKEN: the secret is an OAuth2 refresh token
