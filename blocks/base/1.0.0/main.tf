# base 1.0.0 on the local cloud: a 3-member etcd cluster (Consul on AWS). Each member is an
# instance with its own data volume attached at xvdf; the etcd image's entrypoint formats and
# mounts the volume and keeps the member's data there, so a member replaced by a new instance
# (new image) rejoins with its data.

data "localcloud_image" "etcd" {
  name    = "etcd"
  version = local.image_version
}

locals {
  image_version = "1.0.0"
  member_count  = 3
  data_device   = "xvdf"

  cluster_name = "base-${var.environment}"
  member_names = [for i in range(local.member_count) : format("%s-base-%d", var.environment, i + 1)]
  member_ips   = [for i in range(local.member_count) : cidrhost(var.subnet_cidr, 11 + i)]
  initial_cluster = join(",", [
    for i, name in local.member_names : "${name}=http://${local.member_ips[i]}:2380"
  ])

  common_tags = {
    environment = var.environment
    block       = "base"
    role        = "etcd"
  }
}

resource "localcloud_volume" "member" {
  count   = local.member_count
  name    = "${local.member_names[count.index]}-data"
  size_gb = 1
  tags    = merge(local.common_tags, { member = tostring(count.index + 1) })
}

resource "localcloud_instance" "member" {
  count      = local.member_count
  name       = local.member_names[count.index]
  image_id   = data.localcloud_image.etcd.id
  private_ip = local.member_ips[count.index]
  user_data = {
    data_device                = local.data_device
    etcd_name                  = local.member_names[count.index]
    etcd_initial_cluster       = local.initial_cluster
    etcd_initial_cluster_token = local.cluster_name
    etcd_initial_cluster_state = "new"
  }
  tags = merge(local.common_tags, { member = tostring(count.index + 1) })
}

resource "localcloud_volume_attachment" "member" {
  count       = local.member_count
  volume_id   = localcloud_volume.member[count.index].id
  instance_id = localcloud_instance.member[count.index].id
  device_name = local.data_device
}
