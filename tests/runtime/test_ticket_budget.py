"""A deployed key holder signs its federation's tickets and a few spare, no more.

Red team 52 asked a key-holder node for 40 tickets in one run and handed each to a
client: every ticket made the client load its data and train, a sample of how long
its rows take, which the ServerApp times. The node signed a ticket whenever asked.
Its own policy file now caps the tickets of its federation (``max-tickets``; the run's
rounds and ``SPARE_TICKETS`` when ``keyholder_policy`` writes it), over every run and
restart, since the count is the last round in its state file.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from he_fed.exceptions import ConfigurationError
from he_fed.runtime import run_federation
from he_fed.runtime.flower import FlowerExecutor, KeyHolderPolicy, make_client_app, records
from he_fed.runtime.flower.app import SPARE_TICKETS, keyholder_policy
from tests.runtime import test_flower_council as council
from tests.runtime.test_flower_nodes import (
    KEYHOLDER,
    _ask,
    _partitions,
    _train,
    _unstandardised,
    deployed_grid,
)


def _budgeted_grid(parts, setup, folder, reads: list[int], max_tickets: int | None):
    grid = deployed_grid(parts, setup, folder)
    path = folder / "keyholder.json"
    dataclasses.replace(KeyHolderPolicy.read(path), max_tickets=max_tickets).write(path)

    def data(context):
        reads.append(int(context.node_config["partition-id"]))
        return parts[reads[-1]]

    grid.app = make_client_app(data)
    return grid


def _harvest(grid, asked: int) -> tuple[int, list[str]]:
    """The ServerApp's attack: ``asked`` more tickets, each handed to client 0 (node 10).

    Returns how many tickets the key holder signed and its refusals.
    """
    signed, refusals = 0, []
    for _ in range(asked):
        answer = _ask(grid, KEYHOLDER, records.TICKET, {"task": "train"})
        if answer.has_error():
            refusals.append(answer.error.reason)
            continue
        signed += 1
        ticket = records.blob(records.config_of(answer), "ticket")
        assert not _ask(grid, 10, records.ROUND, {"round-start": ticket}).has_error()
    return signed, refusals


@pytest.mark.parametrize("max_tickets, signed", [(None, 6), (5, 2)], ids=["unlimited", "five"])
def test_a_server_app_gets_no_ticket_past_the_key_holder_s_budget(tmp_path, max_tickets, signed):
    parts, reads = _partitions(), []
    setup = _unstandardised(parts)
    grid = _budgeted_grid(parts, setup, tmp_path, reads, max_tickets)
    run_federation(FlowerExecutor(grid, nodes=4), setup, parts, _train)  # tickets 0 to 2
    assert sorted(reads) == [0, 0, 0, 1, 1, 1, 2, 2, 2]

    got, refusals = _harvest(grid, 6)
    assert got == signed
    # Each ticket signed was one more training of the victim on its data, and only those.
    assert reads.count(0) == 3 + signed
    assert refusals == [
        "PolicyViolation: the key holder has signed the 5 tickets its policy allows this "
        "federation (max-tickets: the run's rounds and a few spare); it signs no more, and a "
        "new run needs a new federation"
    ] * (6 - signed)


def test_a_run_longer_than_its_budget_stops_with_the_model_so_far(tmp_path):
    parts, reads = _partitions(), []
    setup = _unstandardised(parts)
    grid = _budgeted_grid(parts, setup, tmp_path, reads, 2)

    def train(federation):
        return federation.train(3), federation.stopped

    outcomes, stopped = run_federation(FlowerExecutor(grid, nodes=4), setup, parts, train)
    assert len(outcomes) == 2 and all(o.contributors for o in outcomes)
    assert "the key holder has signed the 2 tickets its policy allows" in stopped


def test_the_budget_outlives_the_key_holder_node_s_restart(tmp_path):
    """The count is the node's state file's last round: a restarted node (an empty
    node state, its own files) signs none past it either."""
    parts, reads = _partitions(), []
    setup = _unstandardised(parts)
    grid = _budgeted_grid(parts, setup, tmp_path, reads, 4)
    run_federation(FlowerExecutor(grid, nodes=4), setup, parts, _train)
    assert _harvest(grid, 1) == (1, [])
    grid.contexts[KEYHOLDER].state = type(grid.contexts[KEYHOLDER].state)()  # restarted
    reopened = _ask(grid, KEYHOLDER, records.REOPEN, _reopen_request(grid))
    assert not reopened.has_error(), reopened.error.reason
    got, refusals = _harvest(grid, 2)
    assert got == 0 and all("signed the 4 tickets" in r for r in refusals)


def _reopen_request(grid) -> dict:
    keygen = next(m for m in grid.sent if m.metadata.message_type == records.KEYGEN)
    return dict(records.config_of(keygen))


@pytest.mark.parametrize("max_tickets", [None, 7], ids=["unlimited", "seven"])
def test_a_share_holder_node_signs_no_ticket_past_its_budget(tmp_path, max_tickets):
    """The council's holders read the same policy file: each counts its own tickets."""
    parts = council._partitions()
    setup = council._setup(parts, council.SCHEME, (3, 5))
    grid, _ = council.deployed_grid(parts, setup, tmp_path)
    path = tmp_path / "holder.json"
    dataclasses.replace(KeyHolderPolicy.read(path), max_tickets=max_tickets).write(path)
    run_federation(FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, council._train)
    holder = council.HOLDER + 1
    step = "train.hefed_share_ticket"
    used = sum(
        m.metadata.message_type == step and m.metadata.dst_node_id == holder for m in grid.sent
    )
    assert used == 5  # two statistics rounds and three training rounds
    answers = [_ask(grid, holder, step, {"task": "train"}) for _ in range(4)]
    signed = [not a.has_error() for a in answers]
    if max_tickets is None:
        assert signed == [True] * 4
    else:
        assert signed == [True, True, False, False]
        assert "share holder has signed the 7 tickets" in answers[-1].error.reason


def test_keyholder_policy_budgets_the_run_s_rounds_and_the_spare():
    run = {"rounds": 6, "key_bits": 1024, "allow_insecure": True}
    assert keyholder_policy(run).max_tickets == 2 + 6 + SPARE_TICKETS  # statistics first
    assert keyholder_policy({**run, "standardize": False}).max_tickets == 6 + SPARE_TICKETS
    assert keyholder_policy(run, spare_tickets=0).max_tickets == 8
    with pytest.raises(ConfigurationError, match="spare_tickets"):
        keyholder_policy(run, spare_tickets=-1)


@pytest.mark.parametrize("value", [0, -3, 2.5, "9", True])
def test_a_policy_file_s_max_tickets_is_a_positive_integer_or_null(value):
    policy = keyholder_policy({"key_bits": 1024, "allow_insecure": True})
    data = json.loads(policy.to_json())
    with pytest.raises(ConfigurationError, match="max_tickets"):
        KeyHolderPolicy.from_json(json.dumps({**data, "max-tickets": value}))
    assert KeyHolderPolicy.from_json(policy.to_json()) == policy
    unlimited = KeyHolderPolicy.from_json(json.dumps({**data, "max-tickets": None}))
    assert unlimited.max_tickets is None
    older = {k: v for k, v in data.items() if k != "max-tickets"}
    older["he-fed-keyholder-policy"] = 3
    assert KeyHolderPolicy.from_json(json.dumps(older)).max_tickets is None  # no limit then
