output "hosts" {
  description = "PostgreSQL hosts; connect with target_session_attrs=read-write to reach the primary."
  value       = local.member_ips
}

output "port" {
  description = "PostgreSQL port on every host."
  value       = 5432
}

output "superuser" {
  description = "Name of the administrative role."
  value       = "postgres"
}

output "superuser_password" {
  description = "Password of the administrative role."
  value       = local.superuser_password
  sensitive   = true
}

output "patroni_api_urls" {
  description = "Patroni REST API of every member (health, leader, switchover)."
  value       = [for ip in local.member_ips : "http://${ip}:8008"]
}

output "scope" {
  description = "Patroni cluster scope (its key prefix in the DCS)."
  value       = local.scope
}
