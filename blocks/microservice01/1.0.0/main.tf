# microservice01 1.0.0: an HTTP key/value service run as a job on the nomad node, keeping its
# data in its own database in the stolon cluster (the app creates the database and its table
# on start, as stolon's superuser). No instances of its own.

data "localcloud_image" "app" {
  name    = "microservice01"
  version = local.image_version
}

locals {
  image_version = "1.0.0"
  port          = 8081
  url           = "http://${var.nomad.node_ip}:${local.port}"
  database      = "microservice01"
}

resource "localcloud_job" "app" {
  scheduler_url = var.nomad.api_url
  jobs_dir      = var.nomad.jobs_dir
  name          = "${var.environment}-microservice01"
  command       = ["${data.localcloud_image.app.path}/entrypoint"]
  directory     = data.localcloud_image.app.path
  environment = {
    LISTEN_HOST    = var.nomad.node_ip
    LISTEN_PORT    = tostring(local.port)
    DB_HOSTS       = join(",", var.stolon.hosts)
    DB_PORT        = tostring(var.stolon.port)
    DB_USER        = var.stolon.superuser
    DB_PASSWORD    = var.stolon.superuser_password
    DB_NAME        = local.database
    ETCD_ENDPOINTS = join(",", var.base.endpoints)
    SERVICE_KEY    = "/${var.base.cluster_name}/services/microservice01"
  }
}
