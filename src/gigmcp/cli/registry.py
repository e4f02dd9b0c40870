"""``gigmcp registry``: run a registry of your own — keys, lint, index, signature.

``keygen`` writes a new ed25519 private key to a file only its owner can read and prints
the public key (for ``GIG_REGISTRY_PUBKEY``); ``lint`` checks a manifests folder the way
the reference registry's CI does (with a denylist of exfiltration domains, if given);
``build-index`` compiles the folder into ``index.json`` (toolspecs included, so the
signature covers them); ``sign`` writes ``index.json.sig`` (hex, over the exact bytes);
``verify`` checks one; ``import`` drafts a manifest from an official ``server.json``.

Owns these commands' input and output. It must never print or log a private key, nor
read one from the command line (a file only: argv is visible to every user of the host).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import typer

from gigmcp.cli.app import fail, registry_app
from gigmcp.registry import signing
from gigmcp.registry.catalog import load_catalog
from gigmcp.registry.errors import RegistryDataError
from gigmcp.registry.index import build_index, parse_index
from gigmcp.registry.lint import Denylist


@registry_app.command("keygen")
def keygen(
    out: Path = typer.Option(..., "--out", help="File to write the private key to (0600)."),
) -> None:
    """Make a signing key pair: the private key to --out, the public key on stdout."""
    private, public = signing.keygen()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        fail(f"{out} exists: refusing to overwrite a key")
    except OSError as exc:
        fail(f"cannot create {out}: {exc.strerror}")
    with os.fdopen(fd, "w") as f:
        f.write(private + "\n")
    typer.echo(public)
    typer.echo(f"private key written to {out}; set GIG_REGISTRY_PUBKEY={public}", err=True)


def _denylist(path: Path | None) -> Denylist | None:
    if path is None:
        return None
    try:
        return Denylist.load(path)
    except OSError as exc:
        fail(f"cannot read the denylist {path}: {exc.strerror}")


@registry_app.command("lint")
def lint(
    manifests: Path = typer.Argument(..., help="The manifests folder (<name>/<version>.yaml)."),
    denylist: Path | None = typer.Option(
        None, "--denylist", help="Exfiltration domains no manifest may allow (one per line)."
    ),
) -> None:
    """Parse, validate and lint every manifest and toolspec; exit 1 on any problem."""
    catalog = load_catalog(manifests, _denylist(denylist))
    for problem in catalog.problems:
        typer.echo(str(problem))
    n, s = len(catalog.manifests), len(catalog.toolspecs)
    if not catalog.ok:
        fail(f"{len(catalog.problems)} problem(s); {n} manifests and {s} toolspecs clean")
    typer.echo(f"{n} manifests and {s} toolspecs: clean", err=True)


@registry_app.command("build-index")
def build(
    manifests: Path = typer.Argument(..., help="The manifests folder."),
    out: Path = typer.Option(..., "--out", help="Where to write index.json."),
    denylist: Path | None = typer.Option(None, "--denylist"),
    generated: str | None = typer.Option(
        None, "--generated", help="RFC 3339 time to stamp (default: now, UTC)."
    ),
) -> None:
    """Compile a clean manifests folder into index.json (refuses if anything is wrong)."""
    catalog = load_catalog(manifests, _denylist(denylist))
    if not catalog.ok:
        for problem in catalog.problems:
            typer.echo(str(problem))
        fail(f"{len(catalog.problems)} problem(s): no index written")
    stamp = generated or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        raw = build_index(catalog.manifests.values(), stamp, catalog.toolspecs.values())
    except RegistryDataError as exc:
        fail(str(exc))
    out.write_bytes(raw)
    typer.echo(
        f"{out}: {len(catalog.manifests)} manifests, {len(catalog.toolspecs)} toolspecs, "
        f"{len(raw)} bytes, generated {stamp}",
        err=True,
    )


def _read_key(path: Path) -> str:
    try:
        if os.stat(path).st_mode & 0o077:
            typer.echo(f"gigmcp: warning: {path} is readable by others (chmod 600)", err=True)
        return path.read_text().strip()
    except OSError as exc:
        fail(f"cannot read the key {path}: {exc.strerror}")


@registry_app.command("sign")
def sign(
    index: Path = typer.Argument(..., help="index.json to sign."),
    key: Path = typer.Option(..., "--key", help="The private key file (from keygen)."),
) -> None:
    """Write <index>.sig: the hex ed25519 signature over the file's exact bytes."""
    try:
        raw = index.read_bytes()
    except OSError as exc:
        fail(f"cannot read {index}: {exc.strerror}")
    try:
        parse_index(raw)  # never sign something the gateway would refuse
        sig = signing.sign(_read_key(key), raw)
    except RegistryDataError as exc:
        fail(str(exc))
    sig_path = index.with_name(index.name + ".sig")
    sig_path.write_text(sig + "\n")
    typer.echo(f"signed: {sig_path}", err=True)


@registry_app.command("verify")
def verify(
    index: Path = typer.Argument(..., help="index.json to check (with <index>.sig beside it)."),
    pubkey: str = typer.Option(
        ..., "--pubkey", envvar="GIG_REGISTRY_PUBKEY", help="The public key, hex."
    ),
) -> None:
    """Check the signature, then the index itself; exit 1 if either is wrong."""
    try:
        raw = index.read_bytes()
        sig = index.with_name(index.name + ".sig").read_text()
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}")
    try:
        signing.verify(pubkey, raw, sig)
        parsed = parse_index(raw)
    except RegistryDataError as exc:
        fail(f"{index}: {exc}")
    count = sum(len(s.versions) for s in parsed.servers.values())
    typer.echo(f"{index}: signature good; {count} manifests, generated {parsed.generated}")


@registry_app.command("import")
def import_server_json(
    server_json: Path = typer.Argument(..., help="An official MCP registry server.json."),
) -> None:
    """Draft a manifest from server.json; what must be completed is listed on stderr."""
    from gigmcp.registry.importer import draft_from_server_json

    try:
        data = json.loads(server_json.read_text())
    except (OSError, ValueError) as exc:
        fail(f"cannot read {server_json}: {exc}")
    try:
        draft, todos = draft_from_server_json(data)
    except RegistryDataError as exc:
        fail(str(exc))
    typer.echo(draft if draft.endswith("\n") else draft + "\n", nl=False)
    for todo in todos:
        typer.echo(f"TODO: {todo}", err=True)
