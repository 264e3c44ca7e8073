# base 1.0.0 on AWS: a 3-member etcd cluster (Consul in the original system), the same contract
# as the local module one folder up. Each member is an EC2 instance with
#   - a persistent network interface holding its fixed private IP (.11-.13 of the environment's
#     subnet), attached as device 0 of every instance that replaces it: the member keeps its IP
#     across replacements (the one-ASG-per-node server-group pattern);
#   - an EBS data volume attached at /dev/xvdf; the image's boot service mounts it and the etcd
#     entrypoint keeps the member's data there, so a replaced member rejoins with its data.
# A rolling upgrade replaces aws_instance.member[i] and aws_volume_attachment.member[i] one index
# at a time, the instance stopped first (stop_instance_before_detaching makes a plain apply safe
# too).

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

# The AMI built by images/etcd/1.0.0/aws/ (packer amazon-ebs): found by its name and tag.
data "aws_ami" "etcd" {
  owners      = ["self"]
  most_recent = true
  filter {
    name   = "name"
    values = ["infrablocks-etcd-${local.image_version}"]
  }
  filter {
    name   = "tag:infrablocks:image"
    values = ["etcd@${local.image_version}"]
  }
}

locals {
  image_version = "1.0.0"
  member_count  = 3
  data_device   = "xvdf"
  instance_type = "t3.small"

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

# etcd's client (2379) and peer (2380) ports, from the VPC: the members, the environment's other
# blocks and the runner of rolling upgrades (which sits inside the VPC).
resource "aws_security_group" "member" {
  name        = "${var.environment}-base"
  description = "etcd members of base in ${var.environment}"
  vpc_id      = data.aws_subnet.environment.vpc_id
  ingress {
    description = "etcd client and peer ports"
    from_port   = 2379
    to_port     = 2380
    protocol    = "tcp"
    cidr_blocks = [data.aws_vpc.environment.cidr_block]
  }
  egress {
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }
  tags = merge(local.common_tags, { Name = "${var.environment}-base" })
}

resource "aws_network_interface" "member" {
  count           = local.member_count
  subnet_id       = data.aws_subnet.environment.id
  private_ips     = [local.member_ips[count.index]]
  security_groups = [aws_security_group.member.id]
  tags            = merge(local.common_tags, { Name = local.member_names[count.index], member = tostring(count.index + 1) })
}

resource "aws_ebs_volume" "member" {
  count             = local.member_count
  availability_zone = data.aws_subnet.environment.availability_zone
  size              = 1
  type              = "gp3"
  encrypted         = true
  tags              = merge(local.common_tags, { Name = "${local.member_names[count.index]}-data", member = tostring(count.index + 1) })
}

resource "aws_instance" "member" {
  count         = local.member_count
  ami           = data.aws_ami.etcd.id
  instance_type = local.instance_type
  network_interface {
    network_interface_id = aws_network_interface.member[count.index].id
    device_index         = 0
  }
  # The boot service reads this JSON map (IMDSv2) and hands it to the entrypoint, as the local
  # cloud does; a change replaces the member, as localcloud_instance.user_data does.
  user_data = jsonencode({
    data_device                = local.data_device
    etcd_name                  = local.member_names[count.index]
    etcd_initial_cluster       = local.initial_cluster
    etcd_initial_cluster_token = local.cluster_name
    etcd_initial_cluster_state = "new"
  })
  user_data_replace_on_change = true
  metadata_options {
    http_tokens = "required"
  }
  tags = merge(local.common_tags, { Name = local.member_names[count.index], member = tostring(count.index + 1) })
}

resource "aws_volume_attachment" "member" {
  count                          = local.member_count
  device_name                    = "/dev/${local.data_device}"
  volume_id                      = aws_ebs_volume.member[count.index].id
  instance_id                    = aws_instance.member[count.index].id
  stop_instance_before_detaching = true
}
