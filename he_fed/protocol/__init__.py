"""The three roles and their messages (DESIGN §2-3).

The round driver that wires them together lives above, in
:mod:`he_fed.runtime` (:class:`~he_fed.runtime.Federation`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from he_fed import _lazy

if TYPE_CHECKING:
    from he_fed.protocol.aggregator import Aggregator
    from he_fed.protocol.client import Client, ClientReport
    from he_fed.protocol.decryptor import Decryptor
    from he_fed.protocol.keyholder import KeyHolder
    from he_fed.protocol.messages import (
        Aggregate,
        EncryptedAggregate,
        EncryptedUpdate,
        Receipt,
        RoundStart,
        Task,
        decode,
        encode,
    )
    from he_fed.protocol.model import GlobalModel, RunPlan
    from he_fed.protocol.receipts import Identity, Registry
    from he_fed.protocol.signed_release import Release
    from he_fed.protocol.spec import ClientPlan, ClientSpec, FederationSetup

__all__ = [
    "Aggregate",
    "Aggregator",
    "Client",
    "ClientPlan",
    "ClientReport",
    "ClientSpec",
    "Decryptor",
    "EncryptedAggregate",
    "EncryptedUpdate",
    "FederationSetup",
    "GlobalModel",
    "Identity",
    "KeyHolder",
    "Receipt",
    "Registry",
    "Release",
    "RoundStart",
    "RunPlan",
    "Task",
    "decode",
    "encode",
]

__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "he_fed.protocol.aggregator": ("Aggregator",),
        "he_fed.protocol.client": (
            "Client",
            "ClientReport",
        ),
        "he_fed.protocol.decryptor": ("Decryptor",),
        "he_fed.protocol.keyholder": ("KeyHolder",),
        "he_fed.protocol.messages": (
            "Aggregate",
            "EncryptedAggregate",
            "EncryptedUpdate",
            "Receipt",
            "RoundStart",
            "Task",
            "decode",
            "encode",
        ),
        "he_fed.protocol.model": (
            "GlobalModel",
            "RunPlan",
        ),
        "he_fed.protocol.receipts": (
            "Identity",
            "Registry",
        ),
        "he_fed.protocol.signed_release": ("Release",),
        "he_fed.protocol.spec": (
            "ClientPlan",
            "ClientSpec",
            "FederationSetup",
        ),
    },
)
