"""A Flower grid that delivers each message to a ClientApp in this process, at once.

It exercises the real ClientApp handlers, the real FlowerExecutor and real
Flower ``Message``/``RecordDict`` objects, without Ray or network, and records
every message so tests can inspect what crossed between parties.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from uuid import uuid4

from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid
from flwr.supercore.task_identity import TaskIdentity


class LoopbackGrid(Grid):
    """Nodes by id, each with its own context (node state), answering synchronously.

    Parameters
    ----------
    app : ClientApp
        What every node runs.
    node_configs : dict of int to dict
        Each node's ``node_config``.
    silent : iterable of int
        Nodes that never answer (dropouts).
    """

    def __init__(
        self,
        app: ClientApp,
        node_configs: dict[int, dict[str, Any]],
        silent: Iterable[int] = (),
        run_config: dict[str, Any] | None = None,
    ) -> None:
        # A ServerApp process knows its run; Message() reads it from here.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1
        self.app = app
        self.silent = set(silent)
        self.contexts = {
            node_id: Context(
                run_id=1,
                node_id=node_id,
                node_config=dict(config),
                state=RecordDict(),
                run_config=dict(run_config or {}),
            )
            for node_id, config in node_configs.items()
        }
        self.sent: list[Message] = []
        self.replies: list[Message] = []
        self._waiting: dict[str, Message] = {}

    def set_run(self, run: Any) -> None:  # pragma: no cover - not used by he-fed
        raise NotImplementedError

    @property
    def run(self) -> Any:  # pragma: no cover - not used by he-fed
        raise NotImplementedError

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):  # type: ignore[no-untyped-def]  # pragma: no cover
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> list[str]:
        ids = []
        for message in messages:
            message_id = str(uuid4())
            message.metadata.__dict__["_message_id"] = message_id
            self.sent.append(message)
            ids.append(message_id)
            node = message.metadata.dst_node_id
            if node in self.silent:
                continue
            reply = self.app(message=message, context=self.contexts[node])
            self.replies.append(reply)
            self._waiting[message_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> list[Message]:
        return [self._waiting.pop(i) for i in list(message_ids) if i in self._waiting]

    def send_and_receive(self, messages, *, timeout=None):  # type: ignore[no-untyped-def]  # pragma: no cover
        return self.pull_messages(self.push_messages(messages))
