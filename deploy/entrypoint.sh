#!/bin/sh
# The gateway image's entrypoint (under tini as PID 1): `serve` (the default) starts the
# gateway; anything else is a gigmcp command on the same store, e.g.
#   podman run --rm --cap-add NET_ADMIN IMAGE doctor
#   podman exec CONTAINER gigmcp token mint work
# It must never print a secret, and never start servers unjailed: --insecure-no-sandbox
# is refused here (development belongs outside the image).
set -eu

[ "$#" -gt 0 ] || set -- serve
for arg in "$@"; do
  if [ "$arg" = "--insecure-no-sandbox" ]; then
    echo "gigmcp-entrypoint: --insecure-no-sandbox is refused in the container image" >&2
    exit 2
  fi
done
# `serve` runs the doctor's checks itself and refuses to start, naming what is missing;
# `doctor` says which sandbox mode it will use and why.
exec gigmcp "$@"
