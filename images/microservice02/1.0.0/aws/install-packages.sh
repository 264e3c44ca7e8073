#!/usr/bin/env bash
# Installs what the microservice02 image needs on a fresh Debian machine (AWS builds). The local
# cloud uses the host's packages (scripts/bootstrap). Idempotent.
set -euo pipefail
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
as_root apt-get update -qq
as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  python3
