# stolon 1.0.0 on the local cloud: a 3-member PostgreSQL 15 cluster managed by Patroni (stolon's
# role on AWS), with base's etcd as its distributed configuration store. Each member is an
# instance with its own data volume attached at xvdf; the patroni image's entrypoint formats
# and mounts the volume and keeps PGDATA there, so a member replaced by a new instance (new
# image) rejoins with its data.

data "localcloud_image" "patroni" {
  name    = "patroni"
  version = local.image_version
}

# The cluster's passwords: generated once (uuid() at the first apply) and then kept, because
# changes to the input are ignored. They live in the state, which must be protected as usual.
resource "terraform_data" "credentials" {
  input = {
    superuser_password   = replace(uuid(), "-", "")
    replication_password = replace(uuid(), "-", "")
  }
  lifecycle {
    ignore_changes = [input]
  }
}

locals {
  image_version = "1.0.0"
  member_count  = 3
  data_device   = "xvdf"

  scope        = "${var.environment}-stolon"
  namespace    = "/${var.base.cluster_name}/patroni/"
  member_names = [for i in range(local.member_count) : format("%s-stolon-%d", var.environment, i + 1)]
  member_ips   = [for i in range(local.member_count) : cidrhost(var.subnet_cidr, 21 + i)]

  superuser_password   = terraform_data.credentials.output.superuser_password
  replication_password = terraform_data.credentials.output.replication_password

  common_tags = {
    environment = var.environment
    block       = "stolon"
    role        = "postgresql"
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
  image_id   = data.localcloud_image.patroni.id
  private_ip = local.member_ips[count.index]
  user_data = {
    data_device          = local.data_device
    scope                = local.scope
    member_name          = local.member_names[count.index]
    namespace            = local.namespace
    etcd_endpoints       = join(",", var.base.endpoints)
    superuser_password   = local.superuser_password
    replication_password = local.replication_password
  }
  tags = merge(local.common_tags, { member = tostring(count.index + 1) })
}

resource "localcloud_volume_attachment" "member" {
  count       = local.member_count
  volume_id   = localcloud_volume.member[count.index].id
  instance_id = localcloud_instance.member[count.index].id
  device_name = local.data_device
}
