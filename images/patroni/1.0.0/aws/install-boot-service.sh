#!/usr/bin/env bash
# Installs the boot service of an infrablocks image on an AWS build instance (run by packer's
# `shell` provisioner as root, after scripts/provision.sh). At boot, the service gives the
# image's entrypoint the same contract as the local cloud (docs/ARCHITECTURE.md):
#   LOCALCLOUD_INSTANCE_ID, LOCALCLOUD_PRIVATE_IP   from the instance metadata service (IMDSv2)
#   LOCALCLOUD_USER_DATA     the instance's user data (a JSON map of strings) saved to a file
#   LOCALCLOUD_DEVICES_DIR   /var/lib/infrablocks/devices: each attached EBS volume named in user
#                            data (`data_device`) is mounted at DEVICES_DIR/<device> (ext4,
#                            created on a blank volume) — the entrypoint then "formats" and
#                            "mounts" its data directory there exactly as on the local cloud
#   LOCALCLOUD_IMAGE_DIR     IMAGE_ROOT
#   LOCALCLOUD_INSTANCE_DIR  /var/lib/infrablocks/instance (the `ready` marker goes there)
set -euo pipefail
: "${IMAGE_ROOT:?IMAGE_ROOT must be set}"
: "${IMAGE_NAME:?IMAGE_NAME must be set}"

install -d -m 0755 /usr/local/lib/infrablocks /var/lib/infrablocks
cat > /usr/local/lib/infrablocks/boot <<'EOF'
#!/usr/bin/env bash
set -euo pipefail
imds() {
  local token
  token=$(curl -fsS -X PUT http://169.254.169.254/latest/api/token \
    -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/$1"
}
state=/var/lib/infrablocks
install -d "$state/instance" "$state/devices"
imds user-data > "$state/instance/user_data.json" || echo '{}' > "$state/instance/user_data.json"
device=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("data_device", ""))' \
  "$state/instance/user_data.json")
if [ -n "$device" ]; then
  # EBS volumes attached as /dev/xvdf appear as NVMe devices on Nitro instances; udev keeps
  # the requested name as a symlink. Wait (bounded) for it, as the entrypoint would.
  for _ in $(seq 1 300); do [ -e "/dev/$device" ] && break; sleep 1; done
  if [ -e "/dev/$device" ]; then
    blkid "/dev/$device" >/dev/null 2>&1 || mkfs.ext4 -q "/dev/$device"
    install -d "$state/devices/$device"
    mountpoint -q "$state/devices/$device" || mount "/dev/$device" "$state/devices/$device"
  fi
fi
export LOCALCLOUD_INSTANCE_ID="$(imds meta-data/instance-id)"
export LOCALCLOUD_PRIVATE_IP="$(imds meta-data/local-ipv4)"
export LOCALCLOUD_USER_DATA="$state/instance/user_data.json"
export LOCALCLOUD_DEVICES_DIR="$state/devices"
export LOCALCLOUD_INSTANCE_DIR="$state/instance"
export LOCALCLOUD_IMAGE_DIR="@IMAGE_ROOT@"
exec "@IMAGE_ROOT@/entrypoint"
EOF
sed -i "s|@IMAGE_ROOT@|$IMAGE_ROOT|g" /usr/local/lib/infrablocks/boot
chmod 0755 /usr/local/lib/infrablocks/boot
cat > "/etc/systemd/system/infrablocks-$IMAGE_NAME.service" <<EOF
[Unit]
Description=infrablocks image $IMAGE_NAME (entrypoint contract of the local cloud)
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/local/lib/infrablocks/boot
KillMode=mixed
TimeoutStopSec=30
Restart=no

[Install]
WantedBy=multi-user.target
EOF
systemctl enable "infrablocks-$IMAGE_NAME.service"
