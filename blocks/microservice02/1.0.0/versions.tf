terraform {
  required_version = ">= 1.5"
  required_providers {
    localcloud = { source = "infrablocks.local/infrablocks/localcloud", version = "~> 0.1" }
  }
}

provider "localcloud" {} # root from LOCALCLOUD_ROOT
