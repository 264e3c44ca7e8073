#!/usr/bin/env bash
# Assembles the microservice01 image's files under IMAGE_ROOT (the app is the image's
# `entrypoint`).
# Platform-neutral: the local cloud's build (packer `shell-local`, IMAGE_ROOT = the artifact
# directory) and an AWS build (packer `shell`, e.g. IMAGE_ROOT=/opt/microservice01) both run it.
#
#   IMAGE_ROOT     where the image's files go (created)
#   SOURCE_DIR     this image version's directory (holds files/)
#   IMAGE_NAME, IMAGE_VERSION   recorded in release.json
#
# Runtime needs: Debian packages python3 python3-psycopg2.
set -euo pipefail
: "${IMAGE_ROOT:?IMAGE_ROOT must be set}"
: "${SOURCE_DIR:?SOURCE_DIR must be set}"
: "${IMAGE_NAME:?IMAGE_NAME must be set}"
: "${IMAGE_VERSION:?IMAGE_VERSION must be set}"

if [ ! -x /usr/bin/python3 ]; then
  echo "provision: /usr/bin/python3 is missing (Debian package python3)" >&2
  exit 1
fi
if ! /usr/bin/python3 -c "import psycopg2" 2>/dev/null; then
  echo "provision: /usr/bin/python3 cannot import psycopg2 (Debian package python3-psycopg2)" >&2
  exit 1
fi

mkdir -p "$IMAGE_ROOT"
install -m 0755 "$SOURCE_DIR/files/entrypoint" "$IMAGE_ROOT/entrypoint"
# Deterministic content (no timestamps): the same version always gives the same image id.
printf '{"name": "%s", "version": "%s", "service": "%s"}\n' \
  "$IMAGE_NAME" "$IMAGE_VERSION" "$IMAGE_NAME" > "$IMAGE_ROOT/release.json"
chmod 0644 "$IMAGE_ROOT/release.json"
echo "provision: $IMAGE_NAME@$IMAGE_VERSION assembled in $IMAGE_ROOT"
