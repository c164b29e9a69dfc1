#!/usr/bin/env bash
# Installs the Debian packages named in the given list files that are not installed yet.
# As root it runs apt-get (keeping apt from starting docker.service, whose default bridge
# network is not wanted); as anyone else it names the missing ones in one line and fails.
# usage: scripts/install-debian-packages.sh LIST-FILE...   (a list: names, # comments)
set -euo pipefail -o noglob  # names are split on blanks, never globbed
listed=$(sed 's/#.*//' "$@")  # an unreadable list stops the script here
missing=()
for package in $listed; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages; as root: apt-get install --no-install-recommends ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]}" >&2
created_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  created_policy=1
fi
trap '[ -z "$created_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
