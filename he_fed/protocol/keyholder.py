"""The key holder: generates the keys and decrypts aggregates, under a cohort policy."""

from __future__ import annotations

from he_fed.crypto import AggregationKey, KeyPair, PublicKey, Scheme
from he_fed.exceptions import ConfigurationError, MalformedMessage, PolicyViolation
from he_fed.protocol import tasks
from he_fed.protocol.messages import Aggregate, EncryptedAggregate, decode, encode
from he_fed.protocol.receipts import Registry

__all__ = ["KeyHolder"]


class KeyHolder:
    """Holds the secret key and releases only aggregates that satisfy its policy.

    It decrypts an :class:`~he_fed.protocol.messages.EncryptedAggregate` only if

    * its round is newer than every round decrypted before (each round once),
    * every receipt is signed, for this round, task and key, by a registered client,
    * the contributors are distinct and at least ``min_clients``,
    * the ciphertext's own contribution count equals the number of receipts, and
    * the aggregate's commitment equals the sum of the receipts' commitments, so
      the ciphertext is exactly the sum of those clients' contributions
      (:mod:`he_fed.protocol.receipts` explains why that is sound).

    Every check runs before decryption; on any failure it raises
    :class:`~he_fed.exceptions.PolicyViolation` and decrypts nothing. It returns
    only the weighted mean and the total weight, never a client's update.

    Parameters
    ----------
    keys : KeyPair
        The federation's keys.
    min_clients : int, default=2
        Smallest cohort whose aggregate may be decrypted.
    clients : mapping of str to bytes, optional
        Registered clients' Ed25519 public keys (more with :meth:`register`).
    last_round : int, default=-1
        The last round already decrypted, for a key holder restored from storage
        (see :attr:`last_round`); rounds up to it are refused.
    """

    def __init__(
        self,
        keys: KeyPair,
        *,
        min_clients: int = 2,
        clients: dict[str, bytes] | None = None,
        last_round: int = -1,
    ) -> None:
        if isinstance(min_clients, bool) or not isinstance(min_clients, int) or min_clients < 1:
            raise ConfigurationError("min_clients must be a positive integer")
        if isinstance(last_round, bool) or not isinstance(last_round, int) or last_round < -1:
            raise ConfigurationError("last_round must be an integer of at least -1")
        self._keys = keys
        self.min_clients = min_clients
        self._registry = Registry(clients)
        self._last_round = last_round

    def register(self, client_id: str, verify_key: bytes) -> None:
        """Register a client's Ed25519 public key (done once, at setup)."""
        self._registry.register(client_id, verify_key)

    def registered_clients(self) -> dict[str, bytes]:
        """Every registered client's public key, for the key holder's own storage."""
        return self._registry.public_keys()

    @classmethod
    def generate(cls, scheme: Scheme, *, min_clients: int = 2) -> KeyHolder:
        """Generate fresh keys under ``scheme``."""
        return cls(scheme.keygen(), min_clients=min_clients)

    @property
    def last_round(self) -> int:
        """The last round decrypted (-1 before the first); keep it with the stored key."""
        return self._last_round

    @property
    def public_key(self) -> PublicKey:
        """The public key, for clients."""
        return self._keys.public

    def public_key_bytes(self) -> bytes:
        """Encoded public key, for clients."""
        return self._keys.public.to_bytes()

    def secret_key_bytes(self) -> bytes:
        """Encoded secret key, for this key holder's own storage only. SECRET.

        A key holder whose process does not outlive a round (a Flower SuperNode
        starts one process per message) keeps these bytes, with :attr:`last_round`,
        on its own node and restores itself with
        :func:`he_fed.protocol.setup.restore_keyholder`. Never send them.
        """
        return self._keys.secret.to_bytes()

    def aggregation_key_bytes(self) -> bytes:
        """Encoded aggregation material (the least that can add), for the aggregator."""
        material: AggregationKey = self._keys.public.aggregation_key()
        return material.to_bytes()

    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Check the policy, decrypt the aggregate, and return the encoded mean.

        Parameters
        ----------
        data : bytes
            An encoded :class:`EncryptedAggregate`.

        Returns
        -------
        bytes
            An encoded :class:`Aggregate` holding the weighted mean.

        Raises
        ------
        PolicyViolation
            If the round was already decrypted, a receipt is unsigned or forged, the
            cohort is too small or has duplicates, or the ciphertext is not the sum
            of the receipts' contributions.
        MalformedMessage, KeyMismatchError, EncodingOverflowError
            If the bytes are bad, under another key, or overflowed.
        """
        message = decode(data, EncryptedAggregate)
        if message.round <= self._last_round:
            raise PolicyViolation(
                f"round {message.round} is not newer than the last round decrypted "
                f"({self._last_round}); each round is decrypted once"
            )
        contributors = message.contributors
        if len(set(contributors)) != len(contributors):
            raise PolicyViolation("the aggregate lists a contributor more than once")
        key = tasks.plan_for(self._keys.public, message.task)
        for receipt in message.receipts:
            if not self._registry.verify(
                receipt, round=message.round, task=message.task, fingerprint=key.fingerprint
            ):
                raise PolicyViolation(
                    f"the receipt of {receipt.client_id!r} is not validly signed for round "
                    f"{message.round} by a registered client"
                )
        if len(contributors) < self.min_clients:
            raise PolicyViolation(
                f"the aggregate holds {len(contributors)} contribution(s); the policy "
                f"requires at least min_clients={self.min_clients}"
            )
        vector = key.load_vector(message.vector)
        if vector.count != len(contributors):
            raise PolicyViolation(
                f"the ciphertext sums {vector.count} contributions but carries "
                f"{len(contributors)} receipts"
            )
        try:
            expected = key.sum_commitments([r.commitment for r in message.receipts], vector.size)
        except MalformedMessage:
            raise PolicyViolation("a receipt's commitment is malformed") from None
        if vector.commitment() != expected:
            raise PolicyViolation(
                "the aggregate is not the sum of the contributions its receipts describe"
            )
        result = self._keys.secret.decrypt_weighted(vector)
        self._last_round = message.round
        return encode(
            Aggregate(message.round, message.task, result.mean, result.weight, result.count)
        )

    def __repr__(self) -> str:
        return f"<KeyHolder {self._keys.public!r} min_clients={self.min_clients}>"
