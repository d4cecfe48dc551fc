"""The checks an aggregate must pass before anyone holding decryption material touches it.

One module, so that the single key holder (:class:`~he_fed.protocol.keyholder.KeyHolder`)
and every threshold share holder (:class:`~he_fed.protocol.decryptor.Decryptor`)
run exactly the same checks (``DESIGN.md``, "Receipts"), in two steps with the
round closed between them:

1. :func:`check_receipts`: the aggregate answers the open round, lists each
   contributor once, and every receipt's commitment signature and proof verify
   under a registered client for this federation, round, task and key. Past this
   point the attempt uses up its round, whatever follows.
2. :func:`check_sum`: the cohort is at least the minimum, the ciphertext has the
   task's length and as many contributions as receipts, its commitment is the
   product of the receipts', and the receipts' binding commitments combine. It
   returns the vector and the binding commitment its plaintext must open.
"""

from __future__ import annotations

from dataclasses import dataclass

from he_fed.crypto import AggregationKey, EncryptedVector, PublicKey
from he_fed.exceptions import MalformedMessage, PolicyViolation
from he_fed.protocol import tasks
from he_fed.protocol.messages import EncryptedAggregate, Task
from he_fed.protocol.model import RunPlan
from he_fed.protocol.receipts import Registry

__all__ = ["Admitted", "check_receipts", "check_sum"]


@dataclass(frozen=True)
class Admitted:
    """An aggregate that passed every check: the vector and its binding commitment."""

    vector: EncryptedVector
    binding: bytes
    key: AggregationKey


def check_receipts(
    message: EncryptedAggregate,
    *,
    open_round: tuple[int, Task] | None,
    registry: Registry,
    federation: bytes,
    public_key: PublicKey,
    plan: RunPlan,
) -> AggregationKey:
    """Step 1; returns the task's key (the public key under the task's plan).

    Raises
    ------
    PolicyViolation
        If the round is not the open one, a contributor is listed twice, or a
        receipt is not validly signed and proven by a registered client.
    """
    if open_round is None or (message.round, message.task) != open_round:
        raise PolicyViolation(
            f"round {message.round} ({message.task.value}) is not the open round: "
            "each ticket is decrypted at most once, and only until the next is signed"
        )
    contributors = message.contributors
    if len(set(contributors)) != len(contributors):
        raise PolicyViolation("the aggregate lists a contributor more than once")
    key = tasks.plan_for(public_key, message.task)
    size = plan.vector_size(message.task)
    refused = registry.first_unproven(
        message.receipts,
        federation=federation,
        round=message.round,
        task=message.task,
        key=key,
        size=size,
    )
    if refused is not None:
        raise PolicyViolation(
            f"the receipt of {refused.client_id!r} is not validly signed and proven "
            f"for round {message.round} by a registered client"
        )
    return key


def check_sum(
    message: EncryptedAggregate, *, key: AggregationKey, plan: RunPlan, min_clients: int
) -> Admitted:
    """Step 2, after the round is closed.

    Raises
    ------
    PolicyViolation
        If the cohort is too small, or the ciphertext is not the sum of the
        contributions its receipts describe.
    MalformedMessage, KeyMismatchError
        If the vector's bytes are bad or under another key.
    """
    contributors = message.contributors
    if len(contributors) < min_clients:
        raise PolicyViolation(
            f"the aggregate holds {len(contributors)} contribution(s); the policy "
            f"requires at least {min_clients}"
        )
    size = plan.vector_size(message.task)
    vector = key.load_vector(message.vector, size=size)
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
    try:
        binding = key.sum_bindings([r.binding for r in message.receipts])
    except MalformedMessage:
        raise PolicyViolation("a receipt's binding commitment is malformed or missing") from None
    return Admitted(vector, binding, key)
