"""The container deployment's files, read for real, with no container engine: the compose
files grant NET_ADMIN and nothing more and take every secret from a file, the
Dockerfile's final stage has no compiler and runs what the jail needs, and the image's
entrypoint and health check behave against a real gateway.

Owns these checks of Dockerfile, .dockerignore, docker-compose*.yml and deploy/. The
image built and run for real is test_podman.py's (opt-in).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gateway import gateway

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
COMPOSE_PG = ROOT / "docker-compose.postgres.yml"
DOCKERFILE = ROOT / "Dockerfile"
HEALTHCHECK = ROOT / "deploy" / "healthcheck.py"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"

# Packages that compile: none may be in the final image.
COMPILERS = {
    "gcc", "g++", "cpp", "clang", "build-essential", "make", "libc6-dev", "python3-dev",
    "python3.11-dev", "libpython3-dev", "libseccomp-dev", "cython3", "rustc", "cargo",
}  # fmt: skip
# What the jail needs at run time (README, scripts/bootstrap; tini reaps orphans).
RUNTIME = {"python3", "bubblewrap", "iproute2", "nftables", "libseccomp2", "util-linux", "tini"}
# Settings of a service that widen what a container may do, beyond cap_add.
WIDENING = ("privileged", "pid", "ipc", "userns_mode", "cgroup_parent", "devices", "sysctls")
SECRET_VARIABLES = ("GIG_MASTER_KEY", "GIG_DATABASE_URL", "POSTGRES_PASSWORD")
SECCOMP = ROOT / "deploy" / "seccomp.json"
PODMAN_DEFAULT_SECCOMP = Path("/usr/share/containers/seccomp.json")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    assert isinstance(doc, dict), f"{path.name} is not a YAML mapping"
    return doc


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, from either compose form (mapping or KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def secret_names(service: dict[str, Any]) -> set[str]:
    return {s if isinstance(s, str) else s["source"] for s in service.get("secrets") or []}


def services() -> list[tuple[str, str, dict[str, Any]]]:
    found = []
    for path in (COMPOSE, COMPOSE_PG):
        for name, service in load(path)["services"].items():
            found.append((path.name, name, service))
    return found


def test_the_gateway_gets_net_admin_and_no_other_capability() -> None:
    gateway_svc = load(COMPOSE)["services"]["gateway"]
    assert gateway_svc["cap_add"] == ["NET_ADMIN"]
    for file, name, service in services():
        added = {c.upper().removeprefix("CAP_") for c in service.get("cap_add") or []}
        assert added <= {"NET_ADMIN"}, f"{file}: {name} adds {added}"
        if name == "postgres":
            assert not added, "the database needs no capability"
        for key in WIDENING:
            assert not service.get(key), f"{file}: {name} sets {key}: {service.get(key)!r}"
        assert service.get("network_mode") in (None, "bridge"), f"{file}: {name}"
        if name != "gateway":
            assert not service.get("security_opt"), f"{file}: {name}"
    # Exactly these two, each explained in docs/containers.md; never seccomp=unconfined,
    # apparmor=unconfined or label=disable.
    assert gateway_svc["security_opt"] == [
        "seccomp=./deploy/seccomp.json",
        "systempaths=unconfined",
    ]


def keys_and_strings(node: object) -> list[str]:
    """Every mapping key and string value of a parsed YAML document, at any depth."""
    if isinstance(node, dict):
        return [str(k) for k in node] + [s for v in node.values() for s in keys_and_strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in keys_and_strings(v)]
    return [node] if isinstance(node, str) else []


def test_privileged_appears_nowhere_in_the_deployment_files() -> None:
    for path in (COMPOSE, COMPOSE_PG):
        words = keys_and_strings(load(path))
        assert not [w for w in words if "privileged" in w.lower()], path.name
    instructions = [rest for stage in stages() for _word, rest in stage]
    assert not [i for i in instructions if "privileged" in i.lower()]


def test_every_secret_comes_from_a_secret_file_never_from_the_environment() -> None:
    merged_secrets = {**load(COMPOSE)["secrets"], **load(COMPOSE_PG)["secrets"]}
    for file, name, service in services():
        env = environment(service)
        for var in SECRET_VARIABLES:
            assert var not in env, f"{file}: {name} has {var} as a value in its environment"
        for var, value in env.items():
            if not var.endswith("_FILE"):
                continue
            match = re.fullmatch(r"/run/secrets/([a-z0-9_]+)", value)
            assert match, f"{file}: {name}: {var}={value} is not a compose secret"
            assert match.group(1) in secret_names(service), f"{file}: {name} lacks {match[1]}"
            assert "file" in merged_secrets[match.group(1)], "a secret from a file"
    gateway_env = environment(load(COMPOSE)["services"]["gateway"])
    assert gateway_env["GIG_MASTER_KEY_FILE"] == "/run/secrets/master_key"
    pg_env = environment(load(COMPOSE_PG)["services"]["gateway"])
    assert pg_env["GIG_DATABASE_URL_FILE"] == "/run/secrets/database_url"
    assert environment(load(COMPOSE_PG)["services"]["postgres"])["POSTGRES_PASSWORD_FILE"]


def test_the_data_dir_is_a_named_volume_and_the_port_is_on_loopback() -> None:
    doc = load(COMPOSE)
    gateway_svc = doc["services"]["gateway"]
    mounts = [v.split(":") for v in gateway_svc["volumes"]]
    assert ["gigmcp-data", "/var/lib/gigmcp"] in mounts
    assert "gigmcp-data" in doc["volumes"], "a named volume, not a bind mount"
    for port in gateway_svc["ports"]:
        assert str(port).startswith("127.0.0.1:"), f"published beyond loopback: {port}"
    pg = load(COMPOSE_PG)
    assert "ports" not in pg["services"]["postgres"], "only the gateway reaches the database"
    assert pg["services"]["gateway"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuation
    lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            result.append([])
        result[-1].append((word.upper(), rest.strip()))
    return result


def apt_installed(stage: list[tuple[str, str]]) -> set[str]:
    names: set[str] = set()
    for word, rest in stage:
        if word != "RUN":
            continue
        for command in rest.split("&&"):
            tokens = command.split()
            if tokens[:2] == ["apt-get", "install"]:
                names |= {t for t in tokens[2:] if not t.startswith("-")}
    return names


def test_the_dockerfile_is_multi_stage_with_no_compiler_in_the_final_image() -> None:
    preamble, builder, final = stages()
    assert preamble == [("ARG", "BASE=docker.io/library/debian:bookworm-slim")]
    assert builder[0] == ("FROM", "${BASE} AS builder")
    assert final[0] == ("FROM", "${BASE}"), "both stages on the same base (the venv is copied)"
    installed = apt_installed(final)
    assert installed >= RUNTIME, f"missing at run time: {RUNTIME - installed}"
    assert not installed & COMPILERS, f"compilers in the final image: {installed & COMPILERS}"
    # The package comes from a wheel built in the builder, and only its venv is copied.
    build = " ".join(rest for word, rest in builder if word == "RUN")
    assert "pip wheel" in build and "/wheels/gigmcp-*.whl" in build
    assert "--constraint requirements/lock.txt" in build
    copies = [rest for word, rest in final if word == "COPY"]
    assert "--from=builder /opt/gigmcp /opt/gigmcp" in copies
    assert not any(c.startswith("src") or " src " in c for c in copies), "no source tree"


def test_the_final_stage_runs_the_gateway_under_tini_with_a_volume_and_a_healthcheck() -> None:
    final = dict(stages()[-1])
    assert final["ENTRYPOINT"] == '["/usr/bin/tini", "--", "/usr/local/bin/gigmcp-entrypoint"]'
    assert final["CMD"] == '["serve"]'
    assert final["VOLUME"] == '["/var/lib/gigmcp"]'
    assert "/usr/local/lib/gigmcp/healthcheck.py" in final["HEALTHCHECK"]
    # Root inside the container, on purpose: userns mode needs these capabilities in the
    # gateway's effective set (a non-root user holds none), and cgroups.available() refuses
    # any other uid. If either changes, so may the USER line.
    from gigmcp.sandbox import mode

    assert {"SETUID", "SETGID", "KILL", "DAC_OVERRIDE"} <= set(mode.NEEDED["userns"])
    assert final["USER"] == "root"


def test_the_build_context_leaves_out_secrets_and_environments() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", "everything is left out unless listed"
    allowed = [r[1:] for r in rules if r.startswith("!")]
    assert set(allowed) == {
        "pyproject.toml", "README.md", "requirements/lock.txt", "src/", "deploy/",
    }  # fmt: skip


def test_the_entrypoint_runs_gigmcp_and_refuses_to_run_servers_unjailed() -> None:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    refused = subprocess.run(
        ["sh", str(ENTRYPOINT), "serve", "--insecure-no-sandbox"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2 and "refused" in refused.stderr
    helped = subprocess.run(
        ["sh", str(ENTRYPOINT), "doctor", "--help"],
        env=env, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert helped.returncode == 0 and "Check that this host can jail MCP servers" in helped.stdout


def healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)],
        env={"GIG_LISTEN": f"0.0.0.0:{port}", "PATH": os.environ["PATH"]},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_the_healthcheck_passes_on_a_real_gateway_and_fails_when_it_is_gone(
    tmp_path: Path,
) -> None:
    with gateway(tmp_path) as gw:
        gw.start()
        up = healthcheck(gw.port)
        assert up.returncode == 0, up.stderr
        gw.stop()
        down = healthcheck(gw.port)
    assert down.returncode == 1 and "unhealthy" in down.stderr


def test_doctor_says_which_sandbox_mode_and_why() -> None:
    from gigmcp.sandbox.doctor import mode_reason

    everything = (1 << 41) - 1
    no_sys_admin = everything & ~(1 << 21)
    assert "CAP_SYS_ADMIN is not held" in mode_reason("auto", no_sys_admin)
    assert "user namespace" in mode_reason("auto", no_sys_admin)
    assert mode_reason("auto", everything) == "GIG_SANDBOX_MODE=auto and CAP_SYS_ADMIN is held"
    assert mode_reason("userns", everything) == "GIG_SANDBOX_MODE=userns"
    with pytest.raises(ValueError, match="sandbox mode"):
        mode_reason("rootless")


def test_the_seccomp_profile_is_podmans_default_plus_sethostname_only() -> None:
    profile = json.loads(SECCOMP.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO", "deny by default"
    first, *rest = profile["syscalls"]
    assert sorted(first["names"]) == ["setdomainname", "sethostname"]
    assert first["action"] == "SCMP_ACT_ALLOW" and not first["args"] and not first["includes"]
    unconditional = {
        n for r in rest if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
        and not r.get("includes") for n in r["names"]
    }  # fmt: skip
    # What userns mode and bwrap need, allowed without CAP_SYS_ADMIN (Docker's default
    # profile gates all of these on it).
    assert {"unshare", "setns", "clone", "mount", "umount2", "pivot_root"} <= unconditional
    if not PODMAN_DEFAULT_SECCOMP.exists():
        pytest.skip("the engine's default (containers-common) is not here to compare with")
    base = json.loads(PODMAN_DEFAULT_SECCOMP.read_text())
    assert {**profile, "syscalls": rest} == base, "nothing else differs from podman's default"
