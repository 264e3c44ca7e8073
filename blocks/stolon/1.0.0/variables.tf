variable "environment" {
  description = "Name of the environment this deployment belongs to."
  type        = string
}

variable "subnet_cidr" {
  description = "The environment's subnet; database members take hosts .21, .22 and .23."
  type        = string
}

variable "base" {
  description = "Outputs of the base block, used as Patroni's distributed configuration store."
  type = object({
    endpoints    = list(string)
    cluster_name = string
  })
}
