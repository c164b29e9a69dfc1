#!/usr/bin/env bash
# The example image end to end on Debian 12: installs what is missing (Nix, Docker; as
# root), starts a private dockerd (no network of its own) unless one answers, builds
# .#busybox, loads it into Docker and runs it.
# It builds against the flake's pinned nixpkgs; when that cannot be fetched (offline), it
# says so and builds against tests/nixpkgs-shim, a stand-in made of the host's programs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-debian-packages.sh scripts/example-packages

nix_options=(--extra-experimental-features 'nix-command flakes' --option connect-timeout 15)
# Debian's nix.conf names a nixbld group that only its nix-setup-systemd (a Recommends)
# creates; root builds single-user without it.
getent group nixbld >/dev/null || nix_options+=(--option build-users-group '')

build_options=()
fetch_log=$(mktemp)
trap 'rm -f "$fetch_log"' EXIT
if ! nix "${nix_options[@]}" flake archive . 2>"$fetch_log"; then
  echo "scripts/example.sh: cannot fetch the pinned nixpkgs ($(grep -m1 '^error:' "$fetch_log" || true)); building against tests/nixpkgs-shim instead" >&2
  scripts/install-debian-packages.sh tests/nixpkgs-shim/debian-packages
  # The stand-in copies host programs, which a sandboxed build cannot see.
  nix_options+=(--option substituters '' --option sandbox false)
  build_options=(--override-input nixpkgs path:./tests/nixpkgs-shim --no-write-lock-file)
fi

nix "${nix_options[@]}" build .#busybox "${build_options[@]}"
private=
if ! docker version >/dev/null 2>&1; then
  eval "$(scripts/start-dockerd.sh)"
  private=1
fi
loaded=$(./result | docker load)
echo "$loaded"
image=${loaded##*Loaded image: }
docker run --rm --network none "$image"
if [ -n "$private" ]; then
  echo "scripts/example.sh: the image is in a private Docker engine (no network of its own); to use it: export DOCKER_HOST=$DOCKER_HOST" >&2
fi
