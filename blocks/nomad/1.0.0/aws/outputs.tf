output "api_url" {
  description = "URL of the scheduler's API (supervisord XML-RPC on the local cloud)."
  value       = local.api_url
}

output "node_ip" {
  description = "Private IP of the scheduler node the jobs run on."
  value       = local.node_ip
}

output "jobs_dir" {
  description = "Where job definitions are placed for the scheduler to load."
  value       = local.jobs_dir
}
