"""The release: a round's aggregate as the key holder signed it for the aggregator.

:class:`Release`: an encoded :class:`~he_fed.protocol.messages.Aggregate` and the
key holder's signature over it and the federation id, so that whoever applies it
to a model chain (the aggregator) knows the key holder released it, whoever
carried it. An envelope of :mod:`he_fed.crypto.wire`. The file workflow writes it
as ``round-N.release`` (``he-fed decrypt``); a Flower key-holder node answers a
decryption with it (:mod:`he_fed.runtime.flower.nodes`), and the ServerApp checks
it against the identity it pinned at setup before it applies the aggregate.
"""

from __future__ import annotations

from dataclasses import dataclass

from he_fed.crypto import wire
from he_fed.exceptions import InvalidSignature
from he_fed.protocol.messages import FEDERATION_ID_BYTES, Aggregate, decode
from he_fed.protocol.receipts import Identity, verify_signature

__all__ = ["Release"]

_RELEASE_DOMAIN = b"he-fed/release/v1"
_SIGNATURE_BYTES = 64


def _release_payload(federation: bytes, aggregate: bytes) -> bytes:
    return _RELEASE_DOMAIN + federation + aggregate


@dataclass(frozen=True)
class Release:
    """A released :class:`~he_fed.protocol.messages.Aggregate`, signed by the key holder.

    Attributes
    ----------
    federation : bytes
        The federation id.
    aggregate : bytes
        The encoded aggregate (round, task, weighted mean, contributor count).
    signature : bytes
        The key holder's Ed25519 signature over both.
    """

    federation: bytes
    aggregate: bytes
    signature: bytes

    @classmethod
    def sign(cls, identity: Identity, federation: bytes, aggregate: bytes) -> Release:
        """The release of ``aggregate``, signed by the key holder's ``identity``."""
        return cls(federation, aggregate, identity.sign(_release_payload(federation, aggregate)))

    def to_bytes(self) -> bytes:
        """The file's bytes."""
        w = wire.Writer()
        w.raw(self.federation)
        w.blob(self.aggregate)
        w.raw(self.signature)
        return wire.seal_envelope(wire.Kind.RELEASE, w.getvalue())

    @classmethod
    def from_bytes(cls, data: bytes) -> Release:
        """Read a release (its signature is checked by :meth:`verified`).

        Raises
        ------
        MalformedMessage
            If the bytes are not a release.
        """
        r = wire.Reader(wire.open_envelope(data, wire.Kind.RELEASE).body, "release")
        federation = bytes(r.raw(FEDERATION_ID_BYTES))
        aggregate = r.blob()
        signature = bytes(r.raw(_SIGNATURE_BYTES))
        r.finish()
        return cls(federation, aggregate, signature)

    def message(self) -> Aggregate:
        """The decoded aggregate (unverified; see :meth:`verified`)."""
        return decode(self.aggregate, Aggregate)

    def verified(self, keyholder: bytes, federation: bytes) -> Aggregate:
        """The aggregate, once the signature verifies for this key holder and federation.

        Raises
        ------
        InvalidSignature
            If the key holder did not sign it for this federation.
        """
        payload = _release_payload(federation, self.aggregate)
        if self.federation != federation or not verify_signature(
            keyholder, self.signature, payload
        ):
            raise InvalidSignature(
                "the release is not signed by the key holder for this federation"
            )
        return self.message()
