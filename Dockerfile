# Gig'MCP gateway image: every MCP server it starts runs in its own jail (bubblewrap,
# network namespace, cgroup), built in *userns* mode inside the container.
#
#   ./scripts/container-build                      # base image from the Debian mirror, then this
#   podman build --format docker -t gigmcp .       # or: docker build -t gigmcp .
#   podman run --cap-add NET_ADMIN ... gigmcp      # see docs/containers.md for the exact flags
#
# BASE is any Debian 12 (bookworm) image: the official debian:bookworm-slim where a
# registry is reachable, or one made locally from the Debian mirror with mmdebstrap
# (scripts/container-build). Both stages must use the same one: the virtual environment
# built in the first is copied into the second and runs on its /usr/bin/python3.
ARG BASE=docker.io/library/debian:bookworm-slim

# --- builder: the wheel, and a virtual environment with it and its pinned dependencies --
FROM ${BASE} AS builder
ENV DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
# Every dependency ships a manylinux wheel for CPython 3.11 on x86_64 and aarch64, so no
# compiler is needed even here; on an architecture without one, add build-essential and
# python3-dev to this line (this stage only: the final image never has them).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/lock.txt requirements/lock.txt
COPY src src
# pip_ca (optional build secret): a CA bundle for a TLS-intercepting proxy between the
# build and PyPI, used by pip here and never stored in an image layer.
RUN --mount=type=secret,id=pip_ca,required=false \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
 && python3 -m venv /opt/wheelbuild \
 && /opt/wheelbuild/bin/pip wheel --no-deps --wheel-dir /wheels . \
 && python3 -m venv /opt/gigmcp \
 && /opt/gigmcp/bin/pip install --constraint requirements/lock.txt /wheels/gigmcp-*.whl \
 && /opt/gigmcp/bin/gigmcp --help >/dev/null

# --- the gateway ----------------------------------------------------------------------
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive
# What the jail needs at run time, and nothing to build with:
#   python3, python3-venv  the gateway's interpreter; venvs of PyPI-installed servers
#   bubblewrap             the jail itself (Debian's is not setuid, as the doctor requires)
#   iproute2, nftables     `ip` and `nft` in each namespace holder; libnftables for the walls
#   libseccomp2            the jail's seccomp filter, compiled at start-up
#   util-linux             unshare, nsenter (userns mode's holders) and prlimit (rlimits)
#   tini                   PID 1: reaps the orphans a jail or a holder may leave
#   ca-certificates        the egress proxy verifies upstreams with the system store
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      python3 python3-venv bubblewrap iproute2 nftables libseccomp2 util-linux tini \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*
COPY --from=builder /opt/gigmcp /opt/gigmcp
COPY deploy/entrypoint.sh /usr/local/bin/gigmcp-entrypoint
COPY deploy/healthcheck.py /usr/local/lib/gigmcp/healthcheck.py
# The data dir (SQLite, the generated key if none is given, logs, installed packages) is
# a volume. 0711: the jails' uids traverse it to reach their packages but cannot list it.
RUN chmod 0755 /usr/local/bin/gigmcp-entrypoint \
 && install -d -m 0711 /var/lib/gigmcp
ENV PATH=/opt/gigmcp/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    GIG_DATA_DIR=/var/lib/gigmcp \
    GIG_LISTEN=0.0.0.0:8080 \
    GIG_SANDBOX_MODE=auto
VOLUME ["/var/lib/gigmcp"]
EXPOSE 8080
# The gateway has no health endpoint of its own: the check asks the MCP endpoint without a
# token and expects its 401, which it gives only once start-up (store migrated, sandbox
# checked, listener up) is complete. It touches no database row.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["/opt/gigmcp/bin/python", "/usr/local/lib/gigmcp/healthcheck.py"]
# Root inside the container, on purpose: userns mode needs CAP_SETUID/CAP_SETGID (each
# jail and namespace holder runs as a host uid of its own), CAP_KILL, CAP_DAC_OVERRIDE
# and CAP_NET_ADMIN in the gateway's effective set, and the cgroup code creates the
# per-instance cgroups only as uid 0 (sandbox/cgroups.py). Docker gives a non-root USER no
# capabilities at all. What this root can do is the container's bounding set: the
# engine's defaults plus NET_ADMIN, no SYS_ADMIN. See docs/containers.md.
USER root
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/gigmcp-entrypoint"]
CMD ["serve"]
