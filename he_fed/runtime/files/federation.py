"""The federation file: what the key holder signs for everyone to read at setup.

:class:`FederationFile` (``federation.hefed``): the federation id, the key holder's
identity (the pin), the public key's fingerprint, the run plan, the clients'
training recipe (:class:`~he_fed.protocol.spec.ClientPlan`), the minimum cohort and
the registered clients' identities, signed by the key holder. Clients and the
aggregator read it; its signature ties every field to the identity they pin. It
is an envelope of :mod:`he_fed.crypto.wire`; the client plan is written as typed
fields (no JSON, no pickle). Each round's signed release is
:mod:`~he_fed.protocol.signed_release`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field

from he_fed.crypto import PublicKey, wire
from he_fed.exceptions import ConfigurationError, InvalidSignature, MalformedMessage
from he_fed.protocol._plan_bytes import read_config, write_config
from he_fed.protocol.messages import FEDERATION_ID_BYTES
from he_fed.protocol.model import RunPlan
from he_fed.protocol.receipts import Identity, verify_signature
from he_fed.protocol.spec import ClientPlan

__all__ = ["FederationFile"]

_FEDERATION_DOMAIN = b"he-fed/federation/v1"
_SIGNATURE_BYTES = 64
_MAX_CLIENTS = 1 << 20


@dataclass(frozen=True, eq=False)
class FederationFile:
    """Everything clients and the aggregator need to know about a federation, signed.

    Attributes
    ----------
    federation : bytes
        The 16-byte federation id every ticket and signature is bound to.
    keyholder : bytes
        The key holder's Ed25519 public key: the identity clients pin.
    fingerprint : bytes
        The federation's public key fingerprint.
    plan : RunPlan
        The run plan.
    client_plan : ClientPlan
        The clients' training recipe.
    min_clients : int or None
        The key holder's minimum cohort (None: a majority of the clients).
    clients : mapping of str to bytes
        The registered clients' Ed25519 public keys.
    scheme, params : str
        The public key's scheme and canonical parameters (for reading; the
        fingerprint is what binds the key).
    signature : bytes
        The key holder's signature over all of the above.
    """

    federation: bytes
    keyholder: bytes
    fingerprint: bytes
    plan: RunPlan
    client_plan: ClientPlan
    min_clients: int | None
    clients: Mapping[str, bytes] = field(default_factory=dict)
    scheme: str = ""
    params: str = ""
    signature: bytes = b""

    @classmethod
    def sign(
        cls,
        identity: Identity,
        *,
        federation: bytes,
        key: PublicKey,
        plan: RunPlan,
        client_plan: ClientPlan,
        min_clients: int | None,
        clients: Mapping[str, bytes],
    ) -> FederationFile:
        """The federation file, signed by the key holder's ``identity``.

        Raises
        ------
        ConfigurationError
            If the run plan does not name ``client_plan``'s digest.
        """
        if plan.client_plan != client_plan.digest():
            raise ConfigurationError("the run plan names another clients' plan than this one")
        unsigned = cls(
            federation,
            identity.public_bytes,
            key.fingerprint,
            plan,
            client_plan,
            min_clients,
            dict(clients),
            key.scheme.name,
            key.scheme.params_text(),
        )
        signature = identity.sign(_FEDERATION_DOMAIN + unsigned._signed_bytes())
        return dataclasses.replace(unsigned, signature=signature)

    def _signed_bytes(self) -> bytes:
        w = wire.Writer()
        w.raw(self.federation)
        w.raw(self.keyholder)
        w.blob(self.fingerprint)
        w.text(self.scheme, length_bytes=1)
        w.text(self.params)
        self.plan.write_to(w)
        w.uint(self.min_clients or 0)
        write_config(w, self.client_plan.to_config())
        w.uint(len(self.clients), 4)
        for client_id, key in sorted(self.clients.items()):
            w.text(client_id, length_bytes=1)
            w.raw(key)
        return w.getvalue()

    def to_bytes(self) -> bytes:
        """The file's bytes."""
        w = wire.Writer()
        w.blob(self._signed_bytes())
        w.raw(self.signature)
        return wire.seal_envelope(
            wire.Kind.FEDERATION,
            w.getvalue(),
            scheme=self.scheme,
            params=self.params,
            fingerprint=self.fingerprint,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> FederationFile:
        """Read a federation file and check its signature under the identity it names.

        Pin that identity (compare it with the key holder's, out of band): the
        signature only shows the file is whole and comes from that identity.

        Raises
        ------
        MalformedMessage
            If the bytes are not a federation file.
        InvalidSignature
            If its signature does not verify under the identity it names.
        """
        envelope = wire.open_envelope(data, wire.Kind.FEDERATION)
        outer = wire.Reader(envelope.body, "federation file")
        signed = outer.blob()
        signature = bytes(outer.raw(_SIGNATURE_BYTES))
        outer.finish()
        r = wire.Reader(signed, "federation file")
        federation = bytes(r.raw(FEDERATION_ID_BYTES))
        keyholder = bytes(r.raw(32))
        fingerprint = r.blob(max_size=64)
        scheme, params = r.text(length_bytes=1), r.text()
        plan = RunPlan.read_from(r, "federation file")
        min_clients = r.uint() or None
        config = read_config(r, "federation file")
        count = r.uint(4)
        if count > min(_MAX_CLIENTS, r.remaining // 33):
            raise MalformedMessage(f"federation file claims {count} clients")
        clients = {r.text(length_bytes=1): bytes(r.raw(32)) for _ in range(count)}
        r.finish()
        if len(clients) != count:
            raise MalformedMessage("federation file names a client twice")
        if (envelope.scheme, envelope.params, envelope.fingerprint) != (
            scheme,
            params,
            fingerprint,
        ):
            raise MalformedMessage("federation file: its header does not match its body")
        if not verify_signature(keyholder, signature, _FEDERATION_DOMAIN + signed):
            raise InvalidSignature("the federation file is not signed by the key holder it names")
        client_plan = ClientPlan.from_config(config)
        if plan.client_plan != client_plan.digest():
            raise MalformedMessage("federation file: its run plan names another clients' plan")
        return cls(
            federation,
            keyholder,
            fingerprint,
            plan,
            client_plan,
            min_clients,
            clients,
            scheme,
            params,
            signature,
        )
