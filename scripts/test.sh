#!/usr/bin/env bash
# Runs the whole test suite for real: starts a private dockerd (no network of its own)
# unless DOCKER_HOST already answers, then pytest with every service required.
set -euo pipefail
cd "$(dirname "$0")/.."
# Without Debian's nix-setup-systemd there is no nix.conf: no nixbld group, sandbox on.
export NIX_CONFIG=${NIX_CONFIG:-$'experimental-features = nix-command flakes\nsubstituters =\nbuild-users-group =\nsandbox = false'}
if ! docker version >/dev/null 2>&1; then
  eval "$(scripts/start-dockerd.sh)"
fi
export LAYERED_IMAGE_REQUIRE_SERVICES=1
python=${PYTHON:-python3}
[ -x .venv/bin/python ] && python=.venv/bin/python
"$python" -m ruff check .
exec "$python" -m pytest -q "$@"
