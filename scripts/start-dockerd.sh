#!/usr/bin/env bash
# Starts a private Docker engine with no network of its own (no bridge, no iptables),
# state under $1 (default /var/lib/layered-image-docker: only root writes there, so no
# other user can plant a socket or symlinks, and it is on disk, not /run's small tmpfs),
# and prints the DOCKER_HOST to use.
# usage: eval "$(scripts/start-dockerd.sh [DIR])"
set -euo pipefail
dir=${1:-/var/lib/layered-image-docker}
sock="$dir/docker.sock"
mkdir -p "$dir/root" "$dir/exec"
if ! DOCKER_HOST="unix://$sock" /usr/bin/docker version >/dev/null 2>&1; then
  nohup /usr/sbin/dockerd --bridge=none --iptables=false --ip-masq=false --ip6tables=false \
    --data-root "$dir/root" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
    -H "unix://$sock" >"$dir/dockerd.log" 2>&1 &
  for _ in $(seq 1 60); do
    DOCKER_HOST="unix://$sock" /usr/bin/docker version >/dev/null 2>&1 && break
    sleep 0.5
  done
fi
DOCKER_HOST="unix://$sock" /usr/bin/docker version >/dev/null 2>&1 || {
  echo "dockerd did not start; see $dir/dockerd.log" >&2; tail -5 "$dir/dockerd.log" >&2; exit 1; }
echo "export DOCKER_HOST=unix://$sock"
