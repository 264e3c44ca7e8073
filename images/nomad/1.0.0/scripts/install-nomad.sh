#!/usr/bin/env bash
# Installs the nomad image's system packages (Debian). Idempotent. The local cloud uses the
# host's packages (installed by scripts/bootstrap), so only builds on a fresh machine (e.g. an
# AWS build with packer's `shell` provisioner) run this before scripts/provision.sh.
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
packages=(supervisor python3)
if ! dpkg-query -W -f='${Status}\n' "${packages[@]}" 2>/dev/null \
    | grep -c "install ok installed" | grep -q "^${#packages[@]}$"; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${packages[@]}"
fi
