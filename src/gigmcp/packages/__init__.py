"""Packages a server can be installed from, each verified before anything runs: OCI
images (``oci``) and, alongside, the other kinds the registry knows."""
