"""The dashboard: the gateway's web pages, a third skin on the service layer (control/)
beside the CLI and the REST API, served by the gateway itself."""
