"""The gateway's egress CA: made once, kept in the vault, trusted by every sandbox.

Owns loading the CA (certificate and private key, sealed together as one vault item)
or creating it on first start. Its certificate goes into each jail's CA bundle; its
key never leaves the vault except into the proxy's memory. It must never write the key
anywhere but the vault.
"""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gigmcp.egress.certs import CertificateAuthority
from gigmcp.store import secrets as vault_store
from gigmcp.vault.keys import Keyring

CA_ITEM = "egress-ca"
_SEP = b"\n--gigmcp-ca-key--\n"


def load_or_create(engine: Engine, keyring: Keyring) -> CertificateAuthority:
    with Session(engine) as s:
        blob = vault_store.get_item(s, keyring, CA_ITEM)
    if blob is None:
        ca = CertificateAuthority.generate()
        try:
            with Session(engine) as s, s.begin():
                vault_store.add_item(s, keyring, CA_ITEM, ca.cert_pem() + _SEP + ca.key_pem())
            return ca
        except IntegrityError:
            # Another gateway on the same database made one first: use that.
            with Session(engine) as s:
                blob = vault_store.get_item(s, keyring, CA_ITEM)
        assert blob is not None
    cert_pem, _, key_pem = blob.partition(_SEP)
    return CertificateAuthority.from_pem(cert_pem, key_pem)
