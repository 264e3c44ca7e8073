variable "environment" {
  description = "Name of the environment this deployment belongs to (tags, cluster names)."
  type        = string
}

variable "subnet_cidr" {
  description = "The environment's subnet; base members take hosts .11, .12 and .13."
  type        = string
}
