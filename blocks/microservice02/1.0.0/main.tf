# microservice02 1.0.0: a stateless HTTP service run as a job on the nomad node (no database,
# no instances of its own).

data "localcloud_image" "app" {
  name    = "microservice02"
  version = local.image_version
}

locals {
  image_version = "1.0.0"
  port          = 8082
  url           = "http://${var.nomad.node_ip}:${local.port}"
}

resource "localcloud_job" "app" {
  scheduler_url = var.nomad.api_url
  jobs_dir      = var.nomad.jobs_dir
  name          = "${var.environment}-microservice02"
  command       = ["${data.localcloud_image.app.path}/entrypoint"]
  directory     = data.localcloud_image.app.path
  environment = {
    LISTEN_HOST    = var.nomad.node_ip
    LISTEN_PORT    = tostring(local.port)
    ETCD_ENDPOINTS = join(",", var.base.endpoints)
    SERVICE_KEY    = "/${var.base.cluster_name}/services/microservice02"
  }
}
