#!/usr/bin/env bash
# Runs the whole test suite for real: installs the Debian packages it needs (as root),
# starts a private dockerd (no network of its own) unless DOCKER_HOST already answers,
# makes .venv with the package and its test extras if it lacks them, then pytest with
# every service required: all of it with Nix's sandbox on (as users' Nix has it), then
# the Nix builds again with it off (Debian's default). tests/nix_settings.py holds the
# Nix settings of each.
set -euo pipefail
cd "$(dirname "$0")/.."
# Every service is required: install what Debian lacks (as root), or name it in one line
# rather than fail test by test.
if command -v dpkg-query >/dev/null; then
  if ! scripts/install-debian-packages.sh scripts/debian-packages tests/nixpkgs-shim/debian-packages; then
    if [ $# -eq 0 ]; then exit 1; fi  # the whole suite cannot pass; a chosen test file may
  fi
fi
# Without Debian's nix-setup-systemd there is no nix.conf: no nixbld group, sandbox on.
export NIX_CONFIG=${NIX_CONFIG:-$'experimental-features = nix-command flakes\nsubstituters =\nbuild-users-group =\nsandbox = false'}
if ! docker version >/dev/null 2>&1; then
  eval "$(scripts/start-dockerd.sh)"
fi
export LAYERED_IMAGE_REQUIRE_SERVICES=1
python=${PYTHON:-.venv/bin/python}
if [ -z "${PYTHON:-}" ] && ! .venv/bin/python -c 'import pytest, hypothesis, ruff' 2>/dev/null; then
  echo "scripts/test.sh: making .venv with the package and its test extras (pip install -e '.[test]')" >&2
  python3 -m venv .venv
  .venv/bin/pip install -q -e '.[test]'
fi
"$python" -m ruff check .
LAYERED_IMAGE_NIX_SANDBOX=1 "$python" -m pytest -q "$@"
if [ $# -eq 0 ]; then
  LAYERED_IMAGE_NIX_SANDBOX=0 "$python" -m pytest -q tests/test_nix_e2e.py
fi
