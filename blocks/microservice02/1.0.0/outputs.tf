output "url" {
  description = "Base URL of the service's HTTP API."
  value       = local.url
}
