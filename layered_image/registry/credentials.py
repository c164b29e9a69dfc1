"""Credentials for a registry: --creds, --authfile, or the files docker and podman use."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from layered_image.errors import UserError


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
    for path in default_auth_files():
        if path.exists() and (found := _from_auth_file(path, host)):
            return found
    return None


def _from_auth_file(path: Path, host: str) -> tuple[str, str] | None:
    try:
        auths = json.loads(path.read_text()).get("auths", {})
    except (OSError, ValueError, AttributeError) as err:
        raise UserError(f"cannot read the auth file {path}: {err}") from None
    keys = [host, f"https://{host}", f"http://{host}"]
    if host == "registry-1.docker.io":
        keys += ["docker.io", "https://index.docker.io/v1/"]
    for key in keys:
        entry = auths.get(key) if isinstance(auths, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("auth"), str):
            try:
                user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise UserError(f"{path}: the auth entry for {key} is not base64 USER:PASSWORD") from None
            return user, password
    return None
