"""A share holder never acts on a node state older than the one it saved last.

Red team 54, as the ServerApp of a 3-of-5 council with four clients: a share
holder's policy state (open round, releases, tickets signed) lives in Flower's node
state, which Flower hands to each message's process and takes back whole at its
end. With a harmless message in flight on every holder through a round's
decryption, that message's older state, written back last, made the holders forget
the release, and they released the same round again. Together with red team 55's
bug (a rebuilt holder forgot the cohort its first release pinned; see the last
test) they released it for each cohort without one client, and the five releases
gave every client's exact update and share of the rows; alone, the rollback
re-releases the round to the same cohort and re-signs used round ids past the
ticket budget. A Flower 1.42 SuperNode runs one message at a time, so the
interleaving needs a node that does not; the holder now checks its node state
against the digest it saved last (``<federation-file>.state``) instead of relying
on that.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
from flwr.app import Message, RecordDict

from he_fed.exceptions import HEFedError
from he_fed.protocol import Aggregate, Task, decode
from he_fed.protocol.normalisers import Normalisers
from he_fed.runtime import run_federation
from he_fed.runtime.base import gather
from he_fed.runtime.flower import FlowerExecutor, KeyHolderPolicy, records
from tests.runtime import test_flower_council as council


class _InterleavingGrid(council.LoopbackGrid):
    """A node that runs a ``hefed_hello`` alongside the next messages: ``begin`` is the
    hello's process taking the node state, ``end`` its state handed back, last."""

    stale: dict[int, object]

    def begin(self, node: int) -> None:
        self.stale[node] = copy.deepcopy(self.contexts[node])

    def end(self, node: int) -> None:
        older = self.stale.pop(node)
        reply = self.app(message=Message(RecordDict(), node, records.HELLO), context=older)
        assert not reply.has_error()
        self.contexts[node].state = older.state  # type: ignore[attr-defined]


def _four_clients():
    rng = np.random.default_rng(5)
    parts = []
    for n in (30, 45, 25, 40):
        X = rng.normal(size=(n, 3))
        parts.append((X, (X @ np.arange(1, 4) + rng.normal(size=n) > 0).astype(int)))
    return parts


@pytest.mark.parametrize(
    "deployed, pin_kept",
    [(True, True), (False, True), (False, False)],
    ids=["deployed", "patched-to-skip-the-check", "both-fixes-reverted"],
)
def test_a_share_holder_handed_an_older_state_releases_no_round_twice(
    tmp_path, monkeypatch, deployed, pin_kept
):
    parts = _four_clients()
    setup = council._setup(parts, council.SCHEME, (3, 5))
    grid, _ = council.deployed_grid(parts, setup, tmp_path)
    grid.__class__ = _InterleavingGrid
    grid.stale = {}
    from he_fed.runtime.flower import sharenode

    if not deployed:  # the code before the fix: no digest to check against
        monkeypatch.setattr(sharenode, "_check_saved", lambda context, state: None)
    if not pin_kept:  # and before red team 55's: a rebuilt holder forgot its pinned cohort
        rebuild = sharenode.restore_decryptor

        def forgetful(*args, **kwargs):
            holder = rebuild(*args, **kwargs)
            holder._divisors = Normalisers()
            return holder

        monkeypatch.setattr(sharenode, "restore_decryptor", forgetful)
    holders = [council.HOLDER + i for i in range(1, 6)]

    def attack(federation):
        federation.standardize()
        keyholder = federation.keyholder
        start = federation.aggregator.open_round(keyholder.start_round(Task.TRAIN))
        fresh = copy.deepcopy(federation.aggregator)  # the round open, nothing added
        updates = {
            r.client_id: r.report.update
            for r in gather(federation.executor, federation.clients, start)
        }
        released, refusals = [], []
        for left_out in [None, None, None, *sorted(updates)]:
            for node in holders:
                grid.begin(node)
            aggregator = copy.deepcopy(fresh)
            for client_id, update in updates.items():
                if client_id != left_out:
                    aggregator.add(update)
            try:
                released.append(
                    decode(keyholder.decrypt_aggregate(aggregator.finish_round()), Aggregate)
                )
            except HEFedError as exc:
                refusals.append(str(exc))
            for node in holders:
                grid.end(node)
        return released, refusals

    released, refusals = run_federation(
        FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, attack
    )
    if not pin_kept:  # red team 54's extraction: every client's share of the rows, exactly
        assert [a.contributors for a in released] == [4, 4, 4, 3, 3, 3, 3]
        full = np.asarray(released[0].mean, dtype=float).ravel()
        without = np.column_stack([np.asarray(a.mean, dtype=float).ravel() for a in released[3:]])
        k = without.shape[1]
        system = np.vstack([without, np.ones(k)])
        target = np.concatenate([without.sum(axis=1) - (k - 1) * full, [1.0]])
        shares = np.linalg.lstsq(system, target, rcond=None)[0]
        rows = np.array([len(y) for _, y in parts])
        np.testing.assert_allclose(shares, rows / rows.sum(), atol=1e-6)
        return
    if not deployed:  # the round released three times; the pinned cohort still holds
        assert [a.contributors for a in released] == [4, 4, 4]
        assert len({a.round for a in released}) == 1
        assert all("must come from the federation's cohort" in r for r in refusals)
        assert len(refusals) == 4
        return
    assert [a.contributors for a in released] == [4]  # the honest release, once
    assert len(refusals) == 6
    replies = [m for m in grid.replies if m.has_error() and "StateError" in m.error.reason]
    assert replies and all("not the one it saved last" in m.error.reason for m in replies)


def test_a_deployed_share_holder_saves_its_state_s_digest_beside_its_federation_file(tmp_path):
    parts = council._partitions()
    setup = council._setup(parts, council.SCHEME, (3, 5))
    grid, _ = council.deployed_grid(parts, setup, tmp_path)
    run_federation(FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, council._train)
    for i in range(1, 6):
        saved = (tmp_path / f"holder-{i}.federation.state").read_bytes().split(b"\n")
        assert saved[0] == b"he-fed share-holder state v1" and len(saved[1]) == 64
    # A file changed under the node stops it, with a StateError, at its next step.
    (tmp_path / "holder-1.federation.state").write_bytes(
        b"he-fed share-holder state v1\n" + b"0" * 64 + b"\n"
    )
    answer = council._reply(grid, council.HOLDER + 1, "ticket", {"task": "train"})
    assert answer.error.reason.startswith("StateError: share holder's node state is not the one")


def test_an_older_state_handed_back_signs_no_ticket_past_the_budget(tmp_path):
    """The red team's other use of the rollback: share holder 1, budget 3, signed 6."""
    parts = council._partitions()
    setup = council._setup(parts, council.SCHEME, (3, 5))
    grid, _ = council.deployed_grid(parts, setup, tmp_path)
    grid.__class__ = _InterleavingGrid
    grid.stale = {}
    path = tmp_path / "holder.json"
    dataclasses.replace(KeyHolderPolicy.read(path), max_tickets=3).write(path)
    run_federation(FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, lambda f: None)
    holder, signed = council.HOLDER + 1, 0
    for i in range(12):
        grid.begin(holder)
        task = "magnitude" if i % 2 == 0 else "moments"
        signed += not council._reply(grid, holder, "ticket", {"task": task}).has_error()
        grid.end(holder)
    assert signed == 1  # then every step meets the older state and is refused


def _two_cohorts(federation):
    """Red team 55: full cohort, then without client-0, twice (the ServerApp's choice)."""
    federation.standardize()
    keyholder, aggregator, out = federation.keyholder, federation.aggregator, []
    for left_out in (None, "client-0", None, "client-0"):
        start = aggregator.open_round(keyholder.start_round(Task.TRAIN))
        for result in gather(federation.executor, federation.clients, start):
            if result.client_id != left_out:
                aggregator.add(result.report.update)
        try:
            released = aggregator.apply(keyholder.decrypt_aggregate(aggregator.finish_round()))
            out.append((released.contributors, released.mean.tolist()))
        except HEFedError as exc:
            out.append(str(exc))
    return out


def test_a_deployed_share_holder_keeps_the_cohort_its_first_release_pinned(tmp_path):
    """Red team 55: a holder rebuilt from its node state for every message dropped the
    cohort and the total weight its first release pinned (``restore_decryptor`` did not
    copy them), so deployed holders released a cohort without client-0 next to the full
    one, and divided each release by its own cohort's weight. In process they refuse."""
    parts = _four_clients()
    setup = council._setup(parts, council.SCHEME, (3, 5))
    expected = run_federation("inprocess", setup, parts, _two_cohorts)
    assert [type(r) for r in expected] == [tuple, str, tuple, str]
    assert "must come from the federation's cohort" in expected[1]
    grid, _ = council.deployed_grid(parts, setup, tmp_path)
    deployed = run_federation(
        FlowerExecutor(grid, nodes=len(grid.contexts)), setup, parts, _two_cohorts
    )
    assert [r for r in deployed if isinstance(r, tuple)] == [expected[0], expected[2]]
    assert all("must come from the federation's cohort" in r for r in deployed[1::2])
    # Rebuilt from its saved state, each holder saves the very same state again.
    from he_fed.protocol.decryptor_state import export_decryptor_state
    from he_fed.runtime.flower import sharenode

    for i in range(1, 6):
        context = grid.contexts[council.HOLDER + i]
        saved = bytes(context.state[sharenode.SHARE_STATE]["state"])
        assert export_decryptor_state(sharenode._restore(context)) == saved
