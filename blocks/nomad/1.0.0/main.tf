# nomad 1.0.0 on the local cloud: one scheduler node (Nomad on AWS) running Debian's
# supervisord, which runs the microservices' processes as jobs (`localcloud_job`). The node
# keeps its job definitions on its data volume (attached at xvdf) and registers itself in
# base's etcd under /<cluster_name>/nomad/nodes/.

data "localcloud_image" "nomad" {
  name    = "nomad"
  version = local.image_version
}

locals {
  image_version = "1.0.0"
  data_device   = "xvdf"
  node_name     = "${var.environment}-nomad-1"
  node_ip       = cidrhost(var.subnet_cidr, 31)
  api_url       = "http://${local.node_ip}:9001"
  # Where the image's entrypoint keeps job files: <volume>/nomad/jobs.
  jobs_dir = "${localcloud_volume.node.path}/nomad/jobs"

  tags = {
    environment = var.environment
    block       = "nomad"
    member      = "1"
    role        = "scheduler"
  }
}

resource "localcloud_volume" "node" {
  name    = "${local.node_name}-data"
  size_gb = 1
  tags    = local.tags
}

resource "localcloud_instance" "node" {
  name       = local.node_name
  image_id   = data.localcloud_image.nomad.id
  private_ip = local.node_ip
  user_data = {
    data_device    = local.data_device
    node_name      = local.node_name
    cluster_name   = var.base.cluster_name
    etcd_endpoints = join(",", var.base.endpoints)
  }
  tags = local.tags
}

resource "localcloud_volume_attachment" "node" {
  volume_id   = localcloud_volume.node.id
  instance_id = localcloud_instance.node.id
  device_name = local.data_device
}
