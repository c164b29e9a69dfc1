#!/usr/bin/env bash
# Runs the whole test suite for real: starts a private dockerd (no network of its own)
# unless DOCKER_HOST already answers, then pytest with every service required: all of it
# with Nix's sandbox on (as users' Nix has it), then the Nix builds again with it off
# (Debian's default). tests/nix_settings.py holds the Nix settings of each.
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
LAYERED_IMAGE_NIX_SANDBOX=1 "$python" -m pytest -q "$@"
if [ $# -eq 0 ]; then
  LAYERED_IMAGE_NIX_SANDBOX=0 "$python" -m pytest -q tests/test_nix_e2e.py
fi
