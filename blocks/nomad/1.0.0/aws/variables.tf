variable "environment" {
  description = "Name of the environment this deployment belongs to."
  type        = string
}

variable "subnet_cidr" {
  description = "The environment's subnet; the scheduler node takes host .31."
  type        = string
}

variable "base" {
  description = "Outputs of the base block this scheduler registers with."
  type = object({
    endpoints    = list(string)
    cluster_name = string
  })
}
