# The nomad image, version 1.0.0, for the local cloud: a scheduler node running Debian's
# supervisord (the local stand-in for a Nomad client). packer's built-in `null` builder and
# `shell-local` assemble the image artifact directory; `doit image nomad@1.0.0` registers it.
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
  image_name    = "nomad"
  image_version = "1.0.0"
}

source "null" "local" {
  communicator = "none"
}

build {
  name    = "nomad"
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
