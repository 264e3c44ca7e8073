output "url" {
  description = "Base URL of the service's HTTP API."
  value       = local.url
}

output "database" {
  description = "Name of the service's own database in the stolon cluster."
  value       = local.database
}
