"""The three roles, their messages, and the round logic (DESIGN §2-3)."""

from __future__ import annotations

from he_fed.protocol.aggregator import Aggregator
from he_fed.protocol.client import Client, ClientReport
from he_fed.protocol.federation import Federation, KeyHolderRole, RoundOutcome
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
from he_fed.protocol.receipts import Identity, Registry
from he_fed.protocol.spec import ClientPlan, ClientSpec, FederationSetup

__all__ = [
    "Aggregate",
    "Aggregator",
    "Client",
    "ClientPlan",
    "ClientReport",
    "ClientSpec",
    "EncryptedAggregate",
    "EncryptedUpdate",
    "Federation",
    "FederationSetup",
    "Identity",
    "KeyHolder",
    "KeyHolderRole",
    "Receipt",
    "Registry",
    "RoundOutcome",
    "RoundStart",
    "Task",
    "decode",
    "encode",
]
