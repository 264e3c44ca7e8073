output "endpoints" {
  description = "Client URLs of the quorum cluster members."
  value       = [for ip in local.member_ips : "http://${ip}:2379"]
}

output "cluster_name" {
  description = "Name (token) of the cluster; dependents use it to namespace their keys."
  value       = local.cluster_name
}

output "member_ips" {
  description = "Private IPs of the members, in member order."
  value       = local.member_ips
}
