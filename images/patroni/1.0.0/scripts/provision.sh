#!/usr/bin/env bash
# Assembles the patroni image's files under IMAGE_ROOT. Platform-neutral: the local cloud's
# build (packer `shell-local`, IMAGE_ROOT = the artifact directory) and an AWS build (packer
# `shell` on the instance after scripts/install-patroni.sh) both run it.
#
#   IMAGE_ROOT     where the image's files go (created)
#   SOURCE_DIR     this image version's directory (holds files/)
#   IMAGE_NAME, IMAGE_VERSION   recorded in release.json
set -euo pipefail
: "${IMAGE_ROOT:?IMAGE_ROOT must be set}"
: "${SOURCE_DIR:?SOURCE_DIR must be set}"
: "${IMAGE_NAME:?IMAGE_NAME must be set}"
: "${IMAGE_VERSION:?IMAGE_VERSION must be set}"

for tool in /usr/bin/patroni /usr/lib/postgresql/15/bin/postgres /usr/bin/python3; do
  if [ ! -x "$tool" ]; then
    echo "provision: $tool is missing (Debian packages patroni, postgresql-15, python3)" >&2
    exit 1
  fi
done
if ! id postgres >/dev/null 2>&1; then
  echo "provision: there is no 'postgres' user (Debian package postgresql-common)" >&2
  exit 1
fi

mkdir -p "$IMAGE_ROOT"
install -m 0755 "$SOURCE_DIR/files/entrypoint" "$IMAGE_ROOT/entrypoint"
install -m 0644 "$SOURCE_DIR/files/patroni-settings.json" "$IMAGE_ROOT/patroni-settings.json"
# Deterministic content (no timestamps): the same version always gives the same image id.
printf '{"name": "%s", "version": "%s", "service": "patroni"}\n' \
  "$IMAGE_NAME" "$IMAGE_VERSION" > "$IMAGE_ROOT/release.json"
chmod 0644 "$IMAGE_ROOT/release.json"
echo "provision: $IMAGE_NAME@$IMAGE_VERSION assembled in $IMAGE_ROOT"
