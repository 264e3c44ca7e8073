# nomad 1.0.0 on AWS: one scheduler node (Nomad in the original system; Debian's supervisord in
# the image), the same contract as the local module one folder up. The node keeps its job
# definitions on its EBS data volume (attached at /dev/xvdf, mounted by the image's boot service
# at /var/lib/infrablocks/devices/xvdf) and registers itself in base's etcd under
# /<cluster_name>/nomad/nodes/. Its fixed IP (.31) sits on a persistent network interface.

data "aws_subnet" "environment" { # made by the AWS platform for the environment
  cidr_block = var.subnet_cidr
  filter {
    name   = "tag:infrablocks:environment"
    values = [var.environment]
  }
}

data "aws_vpc" "environment" {
  id = data.aws_subnet.environment.vpc_id
}

# The AMI built by images/nomad/1.0.0/aws/ (packer amazon-ebs): found by its name and tag.
data "aws_ami" "nomad" {
  owners      = ["self"]
  most_recent = true
  filter {
    name   = "name"
    values = ["infrablocks-nomad-${local.image_version}"]
  }
  filter {
    name   = "tag:infrablocks:image"
    values = ["nomad@${local.image_version}"]
  }
}

locals {
  image_version = "1.0.0"
  data_device   = "xvdf"
  instance_type = "t3.small"
  node_name     = "${var.environment}-nomad-1"
  node_ip       = cidrhost(var.subnet_cidr, 31)
  api_url       = "http://${local.node_ip}:9001"
  # Where the image's entrypoint keeps job files, on the node: <volume>/nomad/jobs.
  jobs_dir = "/var/lib/infrablocks/devices/${local.data_device}/nomad/jobs"

  tags = {
    environment = var.environment
    block       = "nomad"
    member      = "1"
    role        = "scheduler"
  }
}

# The scheduler's API (9001), from the VPC.
resource "aws_security_group" "node" {
  name        = "${var.environment}-nomad"
  description = "scheduler node of nomad in ${var.environment}"
  vpc_id      = data.aws_subnet.environment.vpc_id
  ingress {
    description = "scheduler API"
    from_port   = 9001
    to_port     = 9001
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.environment.cidr_block]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
  tags = merge(local.tags, { Name = "${var.environment}-nomad" })
}

resource "aws_network_interface" "node" {
  subnet_id       = data.aws_subnet.environment.id
  private_ips     = [local.node_ip]
  security_groups = [aws_security_group.node.id]
  tags            = merge(local.tags, { Name = local.node_name })
}

resource "aws_ebs_volume" "node" {
  availability_zone = data.aws_subnet.environment.availability_zone
  size              = 1
  type              = "gp3"
  encrypted         = true
  tags              = merge(local.tags, { Name = "${local.node_name}-data" })
}

resource "aws_instance" "node" {
  ami           = data.aws_ami.nomad.id
  instance_type = local.instance_type
  network_interface {
    network_interface_id = aws_network_interface.node.id
    device_index         = 0
  }
  user_data = jsonencode({
    data_device    = local.data_device
    node_name      = local.node_name
    cluster_name   = var.base.cluster_name
    etcd_endpoints = join(",", var.base.endpoints)
  })
  user_data_replace_on_change = true
  metadata_options {
    http_tokens = "required"
  }
  tags = merge(local.tags, { Name = local.node_name })
}

resource "aws_volume_attachment" "node" {
  device_name                    = "/dev/${local.data_device}"
  volume_id                      = aws_ebs_volume.node.id
  instance_id                    = aws_instance.node.id
  stop_instance_before_detaching = true
}
