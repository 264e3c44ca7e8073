"""Running Terraform: the executable (binary), its CLI config (cliconfig), per-deployment
working directories (workdir), the subprocess driver (driver), plans (plan) and error text
(diagnostics). Deliberately empty: the `terraform` console script imports this package, so it
must stay instant to import; import the submodules you need.
"""
