# The microservice02 image, version 1.0.0: the app (a stateless HTTP service),
# run as a job on the nomad block's scheduler. packer's built-in `null` builder and
# `shell-local` assemble the image artifact directory, whose executable `entrypoint` is the
# app; `doit image microservice02@1.0.0` registers it.
#
#   CHECKPOINT_DISABLE=1 packer build -var output_dir=/abs/artifact .

variable "output_dir" {
  type        = string
  description = "Absolute path of the artifact directory to create (must not exist)."
}

variable "manifest_path" {
  type        = string
  default     = "packer-manifest.json"
  description = "Where the manifest post-processor writes its record of the build."
}

locals {
  image_name    = "microservice02"
  image_version = "1.0.0"
}

source "null" "local" {
  communicator = "none"
}

build {
  name    = "microservice02"
  sources = ["source.null.local"]

  provisioner "shell-local" {
    script = "${path.root}/scripts/provision.sh"
    environment_vars = [
      "IMAGE_ROOT=${var.output_dir}",
      "SOURCE_DIR=${path.root}",
      "IMAGE_NAME=${local.image_name}",
      "IMAGE_VERSION=${local.image_version}",
    ]
  }

  post-processor "manifest" {
    output     = var.manifest_path
    strip_path = true
    custom_data = {
      image_name    = local.image_name
      image_version = local.image_version
      artifact_dir  = var.output_dir
    }
  }
}
