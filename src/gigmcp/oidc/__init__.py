"""Signing in with an OpenID Connect provider: the relying party's side of the
authorization code flow with PKCE, and the verification of what comes back. No
database, no HTTP server: the API's routes call it and turn its results into users and
sessions."""
