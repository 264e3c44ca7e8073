#!/usr/bin/env bash
# Installs the etcd image's system packages (Debian). Idempotent. The local cloud uses the
# host's packages (installed by scripts/bootstrap), so only builds on a fresh machine (e.g. an
# AWS build with packer's `shell` provisioner) run this before scripts/provision.sh.
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
for pkg in etcd-server etcd-client python3; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
fi
