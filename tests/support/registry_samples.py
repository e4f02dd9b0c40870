"""Shared inputs for the registry tests: a valid manifest and toolspec written for these
tests, the catalog's location, and vectors produced by the reference's Go code.

The Go vectors were produced once by running the reference registry's own ``schema``
package (``Parse``, ``Hash``, ``RuntimeHash``, ``BuildIndex`` + ``json.Marshal``) over
the YAML below; they pin byte-compatibility with it. The catalog itself is read from
``../shared/registry-catalog`` at test time and never copied here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

from gigmcp.registry.manifest import Manifest, parse_manifest
from gigmcp.registry.toolspec import ToolSpec, parse_toolspec

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT.parent / "shared" / "registry-catalog"
MANIFESTS = CATALOG / "manifests"
DENYLIST = CATALOG / "denylist" / "exfil-domains.txt"
T = TypeVar("T")

GOOD_YAML = """\
schemaVersion: 1
name: chat-mcp
version: 1.4.2
source:
  repo: github.com/example/chat-mcp
  tag: v1.4.2
image:
  ref: ghcr.io/example/chat-mcp
  digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  entrypoint: /server
tier: sealed
entitlements:
  egress:
    - chat.example.com
    - "*.chat.example.com"
credentials:
  - id: chat_token
    type: api_key
    provider: chat
    scopes: [messages:write]
    inject:
      header: Authorization
      format: "Bearer {token}"
tools:
  - name: send_message
    default: true
  - name: admin_settings
    default: false
"""

GOOD_SPEC_YAML = """\
schemaVersion: 1
name: chat-mcp
version: 1.4.2
baseUrl: https://chat.example.com
tools:
  - name: send_message
    description: Post a message to a channel
    method: POST
    path: /api/messages
    params:
      - {name: channel, in: body, type: string, required: true}
      - {name: text, in: body, type: string, required: true}
  - name: admin_settings
    description: Update workspace settings
    method: POST
    path: /api/workspaces/{workspace}/settings
    baseUrl: https://api.chat.example.com
    params:
      - {name: workspace, in: path, type: string, required: true}
      - {name: settings, in: body, type: object, required: true}
"""

NPM_INTEGRITY = "sha512-" + "A" * 86 + "=="
PYPI_INTEGRITY = "sha256:" + "b" * 64

PACKAGE_YAML = """\
schemaVersion: 1
name: time-mcp
version: 0.6.0
source:
  repo: github.com/example/time-mcp
  tag: v0.6.0
tier: sealed
packages:
  - registryType: pypi
    identifier: mcp-server-time
    version: 2025.1.14
    integrity: sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb
    packageArguments: ["--local-timezone", "UTC"]
    lock:
      - identifier: tzdata
        version: "2025.2"
        integrity: sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc
tools:
  - name: get_current_time
    default: true
"""


def good() -> Manifest:
    return parse_manifest(GOOD_YAML.encode())


def good_spec() -> ToolSpec:
    return parse_toolspec(GOOD_SPEC_YAML.encode())


def package_manifest() -> Manifest:
    return parse_manifest(PACKAGE_YAML.encode())


def replace(obj: T, **changes: Any) -> T:
    """``dataclasses.replace`` keeping the type (the registry types are all dataclasses)."""
    return cast(T, dataclasses.replace(cast(Any, obj), **changes))


def require_catalog() -> Path:
    if not MANIFESTS.is_dir():
        pytest.skip(f"registry catalog not found at {MANIFESTS}")
    return MANIFESTS


# --- vectors from the reference's Go code ---------------------------------------------

VECTOR_ONE_YAML = """\
schemaVersion: 1
name: vector-one
version: 2.10.3
source:
  repo: github.com/example/vector-one
  tag: v2.10.3
  package: cmd/server
image:
  ref: ghcr.io/example/vector-one
  digest: sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  entrypoint: /app/server
  builder: go-static
tier: sealed
displayName: "Vector <One> & \\"Two\\""
description: "line\\nbreak\\ttab \\\\ back <script>&amp; \\u2028 \\u2029 \\x01 \\x1f \\x7f é ü 😀 \\U0001F600"
category: dev-tools
icon: icons/vector-one.svg
entitlements:
  egress:
    - api.example.com
    - "*.cdn.example.com"
credentials:
  - id: example_token
    type: oauth2
    provider: example
    vendor: example
    scopes: ["read:all", "write <x>"]
    inject:
      header: Authorization
      format: "Bearer {token}"
  - id: second
    type: api_key
    provider: example
    inject:
      header: X-Api-Key
      format: "{token}"
tools:
  - name: list_things
    default: true
  - name: delete_things
    default: false
  - name: implicit_default
"""

VECTOR_ONE_JSON = (
    '{"schemaVersion":1,"name":"vector-one","version":"2.10.3","source":{"repo":'
    '"github.com/example/vector-one","tag":"v2.10.3","package":"cmd/server"},"image":{"ref":'
    '"ghcr.io/example/vector-one","digest":"sha256:0123456789abcdef0123456789abcdef0123456789'
    'abcdef0123456789abcdef","entrypoint":"/app/server","builder":"go-static"},"tier":"sealed",'
    '"entitlements":{"egress":["api.example.com","*.cdn.example.com"]},"credentials":[{"id":'
    '"example_token","type":"oauth2","provider":"example","scopes":["read:all","write \\u003cx'
    '\\u003e"],"inject":{"header":"Authorization","format":"Bearer {token}"},"vendor":"example"},'
    '{"id":"second","type":"api_key","provider":"example","inject":{"header":"X-Api-Key","format":'
    '"{token}"}}],"tools":[{"name":"list_things","default":true},{"name":"delete_things",'
    '"default":false},{"name":"implicit_default","default":false}],"displayName":"Vector '
    '\\u003cOne\\u003e \\u0026 \\"Two\\"","description":"line\\nbreak\\ttab \\\\ back \\u003cscript'
    '\\u003e\\u0026amp; \\u2028 \\u2029 \\u0001 \\u001f \x7f é ü 😀 😀","category":"dev-tools",'
    '"icon":"icons/vector-one.svg"}'
)
VECTOR_ONE_HASH = "6495f79f2ef469df775d11ed61d3d219caf04f11f803c8fb56350cdb057735e8"
VECTOR_ONE_RUNTIME = "d3a41aa5f1a1382a77bc52279ed7cf01342ac67a0bffb0a3deaab9a0cecc305f"

# Every scalar below is a YAML number, boolean or null given for a string or bool field:
# the reference's YAML layer converts them, and the hash depends on the exact result.
VECTOR_TWO_YAML = """\
schemaVersion: 1.0
name: vector-two
version: 1.0.0
source:
  repo: 1e6
  tag: 1.10
  package: 0x1F
image:
  ref: y
  digest: sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
  entrypoint: 017
  builder: 09
tier: entrusted
description: 2024-01-31
displayName: 1_000
icon: .5
category: 123456789
entitlements:
  egress: [0.000001, 1e-7, 18446744073709551615, -12, 3.14159, 16777217, +5]
credentials:
  - id: off
    type: NO
    provider: ~
    scopes: [1, 2.5, no, On, null]
    inject:
      env: 1:30
tools:
  - name: a
    default: y
  - name: b
    default: off
  - name: c
    default: null
"""

VECTOR_TWO_JSON = (
    '{"schemaVersion":1,"name":"vector-two","version":"1.0.0","source":{"repo":"1e+06","tag":'
    '"1.1","package":"31"},"image":{"ref":"true","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaa'
    'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","entrypoint":"15","builder":"9"},"tier":"entrusted",'
    '"entitlements":{"egress":["1e-06","1e-07","18446744073709551615","-12","3.14159","16777217",'
    '"5"]},"credentials":[{"id":"false","type":"false","provider":"","scopes":["1","2.5","false",'
    '"true",""],"inject":{"env":"1:30"}}],"tools":[{"name":"a","default":true},{"name":"b",'
    '"default":false},{"name":"c","default":false}],"displayName":"1000","description":'
    '"2024-01-31","category":"123456789","icon":"0.5"}'
)
VECTOR_TWO_HASH = "4ec434100b901e096d5faf4e2250f2ce6ded5e17ceea28c61110f85280899f75"
VECTOR_TWO_RUNTIME = "98886eaaf30b74b57132d42cad9917ad8e19c44c289363c5eca62d9d921c1b79"

VECTOR_THREE_YAML = """\
schemaVersion: 1
name: vector-three
version: 0.1.0
source: {repo: r, tag: t}
image: {ref: x, digest: "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", entrypoint: /e}
tier: sealed
entitlements: {}
credentials: []
tools: []
"""

VECTOR_THREE_JSON = (
    '{"schemaVersion":1,"name":"vector-three","version":"0.1.0","source":{"repo":"r","tag":"t"},'
    '"image":{"ref":"x","digest":"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'
    'bbbbbbbb","entrypoint":"/e"},"tier":"sealed","entitlements":{}}'
)
VECTOR_THREE_HASH = "1d3e65b3d56af68ec03599a8dca6b14c7a88fb666f937a0fbe7b346e9c76f6dc"
VECTOR_THREE_RUNTIME = "c247c86c55c966a3e5cce8e1d52b4df7a16d9cb4552dd7842dbd4a6004e90d13"

# BuildIndex over vector-one 2.10.3, vector-one 2.9.0 (vector-one with only its version
# changed) and vector-three, generated "2026-06-06T12:34:56Z": SHA-256 and length of the
# bytes the reference's registryctl would publish.
SMALL_INDEX_GENERATED = "2026-06-06T12:34:56Z"
SMALL_INDEX_SHA256 = "10cf6622e0f7ccfe598a9a70bb8df3d95b701a91707841a0716f177c049c56f6"
SMALL_INDEX_LENGTH = 2568

# The whole catalog (221 manifests) through the reference's BuildIndex, generated
# "2026-06-06T00:00:00Z", and a few of its manifests' hashes. If the shared catalog is
# ever updated, these must be regenerated with the reference's tool.
CATALOG_INDEX_GENERATED = "2026-06-06T00:00:00Z"
CATALOG_INDEX_SHA256 = "2b5828ce731a42284e2f87bae7aded0ae5832d0e0202915f400c56c8f6797893"
CATALOG_HASHES = {
    "ably": (
        "29abf4c42410a24ad7d9758faee4608b7284e00fe48c28757519904ff146737e",
        "aae392094114e2f749ab92c96afd8f1cd4c1d6b07b478abf08fa2f2952b90142",
    ),
    "gmail": (
        "ac407ca093c98a5c891773b137f8a534f4995c86a1d7ba612b592781338819e0",
        "9b49e5cb5ac96fbd087c1d263549d370179e1a05e8bce7273ba89d4ebd9d779b",
    ),
    "slack": (
        "d6c3d1739d4af8d1ea078241f287b419ddd0d22d2dcf6723feeba40473983127",
        "db04256cf33a20e5efff2c049d078bf1025cad8072e9a1107e3a9d7fe07791c8",
    ),
}
