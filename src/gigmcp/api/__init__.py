"""The REST API under ``/api``: the control plane's second skin on the service layer
(``control/``), beside the CLI. Routes translate HTTP into calls of service functions for
the acting user and their results and errors into JSON; authorisation is decided in the
service layer, never here."""
