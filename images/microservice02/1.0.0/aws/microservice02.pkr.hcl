# The microservice02 image, version 1.0.0, for AWS: an AMI built by packer's `amazon-ebs` builder
# from Debian 12. It runs the same provisioning as the local template (../microservice02.pkr.hcl):
# the packages (install-packages.sh), then ../scripts/provision.sh with
# IMAGE_ROOT=/opt/infrablocks/image; a job image: the scheduler (Nomad on AWS) runs IMAGE_ROOT/entrypoint.
#
#   packer validate -syntax-only .         (what CI checks; no AWS credentials needed)
#   packer build -var region=eu-west-1 .   (with AWS credentials)

variable "region" {
  type        = string
  default     = "eu-west-1"
  description = "AWS region the AMI is built in."
}

variable "instance_type" {
  type        = string
  default     = "t3.small"
  description = "Instance type of the temporary build instance."
}

variable "source_ami_owner" {
  type        = string
  default     = "136693071363"
  description = "Owner of the Debian 12 AMIs (Debian's official account)."
}

variable "image_root" {
  type        = string
  default     = "/opt/infrablocks/image"
  description = "Where the image's files are installed on the AMI (IMAGE_ROOT)."
}

locals {
  image_name    = "microservice02"
  image_version = "1.0.0"
  source_dir    = "/tmp/infrablocks-image-source"
}

source "amazon-ebs" "debian" {
  region        = var.region
  instance_type = var.instance_type
  ssh_username  = "admin"
  ami_name      = "infrablocks-${local.image_name}-${local.image_version}"

  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = [var.source_ami_owner]
    most_recent = true
  }

  tags = {
    Name                = "infrablocks-${local.image_name}-${local.image_version}"
    "infrablocks:image" = "${local.image_name}@${local.image_version}"
    image_name          = local.image_name
    image_version       = local.image_version
  }
}

build {
  name    = "microservice02-aws"
  sources = ["source.amazon-ebs.debian"]

  provisioner "shell" {
    inline = ["mkdir -p ${local.source_dir}"]
  }

  # The same files the local build uses: files/ and scripts/ of this image version.
  provisioner "file" {
    source      = "${path.root}/../files"
    destination = local.source_dir
  }

  provisioner "shell" {
    execute_command = "sudo env {{ .Vars }} bash '{{ .Path }}'"
    scripts = [
      "${path.root}/install-packages.sh",
      "${path.root}/../scripts/provision.sh",
    ]
    environment_vars = [
      "IMAGE_ROOT=${var.image_root}",
      "SOURCE_DIR=${local.source_dir}",
      "IMAGE_NAME=${local.image_name}",
      "IMAGE_VERSION=${local.image_version}",
    ]
  }

  post-processor "manifest" {
    output     = "packer-manifest-aws.json"
    strip_path = true
    custom_data = {
      image_name    = local.image_name
      image_version = local.image_version
    }
  }
}
