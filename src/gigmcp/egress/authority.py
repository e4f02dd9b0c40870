"""The gateway's egress CA: made once, kept in the vault, trusted by every sandbox.

Owns loading the CA (certificate and private key, sealed together as one vault item)
or creating it on first start. Its certificate goes into each jail's CA bundle; its
key never leaves the vault except into the proxy's memory. It must never write the key
anywhere but the vault.
"""

from __future__ import annotations

from sqlalchemy import Engine

from gigmcp.egress.certs import CertificateAuthority
from gigmcp.store import secrets as vault_store
from gigmcp.vault.keys import Keyring

CA_ITEM = "egress-ca"
_SEP = b"\n--gigmcp-ca-key--\n"


def load_or_create(engine: Engine, keyring: Keyring) -> CertificateAuthority:
    def generate() -> bytes:
        ca = CertificateAuthority.generate()
        return ca.cert_pem() + _SEP + ca.key_pem()

    # A CA made here but beaten by another gateway's is dropped: every replica must
    # present the one CA that every jail trusts.
    blob = vault_store.get_or_add_item(engine, keyring, CA_ITEM, generate)
    cert_pem, _, key_pem = blob.partition(_SEP)
    return CertificateAuthority.from_pem(cert_pem, key_pem)
