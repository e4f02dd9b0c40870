"""OCI images as server packages: pulled over the distribution API by pinned digest,
every byte verified, layers extracted into a jail-ready root, cached by digest.

The entry point is :func:`gigmcp.packages.oci.pull.install_image`; the install flow,
the CLI and consent live elsewhere and call it.
"""
