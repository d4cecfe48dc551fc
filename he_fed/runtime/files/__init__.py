"""The file-based workflow: each role is a command, and every arrow is a file.

Many consortia cannot open ports to each other but can exchange files. Here the
roles of :mod:`he_fed.protocol` run as separate commands (``he-fed ticket``,
``he-fed client``, ``he-fed aggregate``, ``he-fed decrypt``) and hand each other
files in he-fed's versioned envelopes:

* :mod:`~he_fed.runtime.files.identities`: signing identities (private ``.id``,
  public ``.pub``);
* :mod:`~he_fed.runtime.files.federation`: the federation file the key holder
  signs for clients and the aggregator;
* :class:`~he_fed.protocol.signed_release.Release`: each round's release, signed
  by the key holder for the aggregator (the Flower nodes send the same);
* :mod:`~he_fed.runtime.files.stores`: each client's and the aggregator's own
  state between commands (the key holder's is
  :mod:`he_fed.runtime.keyholder_store`);
* :mod:`~he_fed.runtime.files.describe`: what ``he-fed inspect`` shows of them.

Tickets, updates and aggregates are the protocol's own messages
(:mod:`he_fed.protocol.messages`), written as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from he_fed import _lazy

if TYPE_CHECKING:
    from he_fed.protocol.signed_release import Release
    from he_fed.runtime.files.federation import FederationFile
    from he_fed.runtime.files.identities import (
        check_name,
        read_signing_key,
        read_verify_key,
        signing_key_bytes,
        verify_key_bytes,
    )
    from he_fed.runtime.files.stores import (
        ClientState,
        load_aggregator,
        load_client_state,
        read_client_state,
        save_aggregator,
        save_client_state,
    )

__all__ = [
    "ClientState",
    "FederationFile",
    "Release",
    "check_name",
    "load_aggregator",
    "load_client_state",
    "read_client_state",
    "read_signing_key",
    "read_verify_key",
    "save_aggregator",
    "save_client_state",
    "signing_key_bytes",
    "verify_key_bytes",
]

__getattr__, __dir__ = _lazy.exports(
    __name__,
    {
        "he_fed.runtime.files.federation": ("FederationFile",),
        "he_fed.protocol.signed_release": ("Release",),
        "he_fed.runtime.files.identities": (
            "check_name",
            "read_signing_key",
            "read_verify_key",
            "signing_key_bytes",
            "verify_key_bytes",
        ),
        "he_fed.runtime.files.stores": (
            "ClientState",
            "load_aggregator",
            "load_client_state",
            "read_client_state",
            "save_aggregator",
            "save_client_state",
        ),
    },
)
