variable "environment" {
  description = "Name of the environment this deployment belongs to."
  type        = string
}

variable "subnet_cidr" {
  description = "The environment's subnet (the service runs on the scheduler node)."
  type        = string
}

variable "base" {
  description = "Outputs of the base block (service registration)."
  type = object({
    endpoints    = list(string)
    cluster_name = string
  })
}

variable "nomad" {
  description = "Outputs of the scheduler the service runs on."
  type = object({
    api_url  = string
    node_ip  = string
    jobs_dir = string
  })
}

variable "stolon" {
  description = "Outputs of the database cluster holding the service's own database."
  type = object({
    hosts              = list(string)
    port               = number
    superuser          = string
    superuser_password = string
  })
  sensitive = true
}
