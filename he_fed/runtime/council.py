"""Share holders in this process, playing the key holder's part in the round driver.

:class:`LocalCouncil` moves bytes between :class:`~he_fed.protocol.decryptor.Decryptor`
objects and nothing else, as the aggregator would relay them: it collects the
present holders' ticket signatures (a quorum ``q = ceil((n + t) / 2)`` makes a
ticket), hands each present holder the aggregate to vouch for, hands them the
certificate (``q`` of those signatures) to partially decrypt it against,
delivers each sealed partial to its recipient, and returns the release (every
present holder releases the same bytes, which it checks).

Dropouts: a holder marked absent (:attr:`LocalCouncil.absent`) gets nothing that
round. Only ``n − q`` may be absent (:attr:`LocalCouncil.tolerated_absences`;
3 of 5: one, not two), the price of the quorum (``DESIGN.md``, "One aggregate per
round, one model per ticket"); when one returns it first catches up by replaying
the rounds it missed, as a real node would from the relay's log: it signs each
missed ticket itself, checks each certified aggregate itself, and combines its
own partial with the partials the others sealed to it then, so its model chain,
and its next ticket, match the others'.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from he_fed.crypto import PublicKey, Scheme
from he_fed.crypto.threshold import ThresholdKeys, deal, parse_threshold
from he_fed.exceptions import ConfigurationError, HEFedError, ProtocolError
from he_fed.privacy import PrivacyBudget
from he_fed.protocol.council import council_pin, merge_signatures, merge_tickets, quorum_size
from he_fed.protocol.decryptor import Decryptor
from he_fed.protocol.messages import Task
from he_fed.protocol.model import RunPlan
from he_fed.protocol.partial_transport import ExchangeKey
from he_fed.protocol.receipts import Identity
from he_fed.protocol.spec import FederationSetup

__all__ = ["LocalCouncil", "council_summary", "generate_council", "threshold_setting"]


@dataclass
class _Missed:
    """What a holder needs to replay a round it missed."""

    task: Task
    present: tuple[int, ...] = ()
    aggregate: bytes | None = None
    certificate: bytes = b""
    sealed: dict[int, list[bytes]] = field(default_factory=dict)


class LocalCouncil:
    """``n`` share holders in one process; a quorum ``q = ceil((n + t) / 2)`` runs a round.

    Parameters
    ----------
    decryptors : iterable of Decryptor
        One per share, numbered 1 to ``n``.
    report : PrivacyBudget, optional
        The run's view of the privacy budget (what ``privacy`` reports): after
        every round it shows the most releases any holder has counted. No holder
        reads it; each enforces its own.
    """

    def __init__(
        self, decryptors: Iterable[Decryptor], *, report: PrivacyBudget | None = None
    ) -> None:
        self._holders = {d.index: d for d in decryptors}
        self._report = report
        first = next(iter(self._holders.values()))
        vk = first._share.verification
        if sorted(self._holders) != list(range(1, vk.holders + 1)):
            raise ConfigurationError(f"a council needs holders 1 to {vk.holders}")
        self.threshold, self.holders = vk.threshold, vk.holders
        #: Holders needed to sign a ticket or certify an aggregate.
        self.quorum = quorum_size(vk.threshold, vk.holders)
        #: Holders that take no part in the next rounds (at most ``n − q``).
        self.absent: set[int] = set()
        #: Holders whose partials the last release used, and those it refused.
        self.last_partials: tuple[tuple[int, ...], tuple[int, ...]] = ((), ())
        self._log: list[_Missed] = []
        self._seen = dict.fromkeys(self._holders, 0)  # rounds of the log each holder ran

    @classmethod
    def generate(
        cls,
        scheme: Scheme,
        *,
        threshold: int,
        holders: int,
        plan: RunPlan,
        min_clients: int | None = None,
        primes: tuple[int, int] | None = None,
        privacy: PrivacyBudget | None = None,
    ) -> LocalCouncil:
        """Deal a threshold key under ``scheme`` and give each holder the same policy.

        Each holder gets its own copy of ``privacy``; ``privacy`` itself becomes the
        council's report (see the class).
        """
        keys: ThresholdKeys = deal(
            scheme,  # type: ignore[arg-type]  # deal refuses a scheme that is not Paillier
            threshold=threshold,
            holders=holders,
            primes=primes,
        )
        exchanges = {share.index: ExchangeKey() for share in keys.shares}
        peers = {i: key.public_bytes for i, key in exchanges.items()}
        identities = {share.index: Identity() for share in keys.shares}
        pin = council_pin(threshold, [identities[i].public_bytes for i in sorted(identities)])
        first = None
        decryptors = []
        for share in keys.shares:
            holder = Decryptor(
                share,
                exchange=exchanges[share.index],
                peers=peers,
                council=pin,
                identity=identities[share.index],
                plan=plan,
                min_clients=min_clients,
                federation=None if first is None else first.federation,
                privacy=None if privacy is None else dataclasses.replace(privacy),
            )
            first = first or holder
            decryptors.append(holder)
        return cls(decryptors, report=privacy)

    @property
    def tolerated_absences(self) -> int:
        """How many holders may be absent from a round: ``n − q``."""
        return self.holders - self.quorum

    def _present(self) -> list[Decryptor]:
        present = [d for i, d in sorted(self._holders.items()) if i not in self.absent]
        if len(present) < self.quorum:
            raise ProtocolError(
                f"{len(present)} share holder(s) present, a quorum of {self.quorum} of "
                f"{self.holders} is needed to run a round (at most {self.tolerated_absences} "
                "absent)"
            )
        for holder in present:
            self._catch_up(holder)
        return present

    def _catch_up(self, holder: Decryptor) -> None:
        """Replay the rounds ``holder`` missed, with only what it would receive."""
        while self._seen[holder.index] < len(self._log):
            missed = self._log[self._seen[holder.index]]
            self._seen[holder.index] += 1
            holder.start_round(missed.task)
            if missed.aggregate is None:
                continue
            try:
                holder.partial_decrypt(missed.aggregate, missed.certificate)
                holder.release(missed.sealed.get(holder.index, []))
            except HEFedError:
                pass  # the others refused or skipped it too; the round is used up

    # -- the KeyHolderRole the round driver uses --------------------------------------

    @property
    def min_clients(self) -> int:
        """The smallest cohort every holder decrypts."""
        return max(d.min_clients for d in self._holders.values())

    @property
    def identity_bytes(self) -> bytes:
        """The council pin clients and the aggregator check tickets against."""
        keys = [self._holders[i].identity_bytes for i in sorted(self._holders)]
        return council_pin(self.threshold, keys)

    @property
    def public_key(self) -> PublicKey:
        """The public key."""
        return self._holders[1].public_key

    def public_key_bytes(self) -> bytes:
        """Encoded public key, for clients."""
        return self._holders[1].public_key_bytes()

    def aggregation_key_bytes(self) -> bytes:
        """Encoded aggregation material, for the aggregator."""
        return self._holders[1].aggregation_key_bytes()

    def register(self, client_id: str, verify_key: bytes) -> None:
        """Register a client with every holder (each keeps its own registry)."""
        for holder in self._holders.values():
            holder.register(client_id, verify_key)

    def start_round(self, task: Task = Task.TRAIN) -> bytes:
        """A ticket co-signed by every present holder (at least a quorum ``q``)."""
        present = self._present()
        try:
            tickets = [holder.start_round(task) for holder in present]
        finally:
            self._update_report()
        self._log.append(_Missed(Task(task), tuple(h.index for h in present)))
        for holder in present:
            self._seen[holder.index] = len(self._log)
        return merge_tickets(tickets)

    def _update_report(self) -> None:
        if self._report is not None:
            spent = (d.privacy.released for d in self._holders.values() if d.privacy)
            self._report.released = max([self._report.released, *spent])

    def decrypt_aggregate(self, data: bytes) -> bytes:
        """Every present holder vouches, partially decrypts against the certificate, releases.

        Raises
        ------
        HEFedError
            What the holders raise: they run the same checks on the same bytes.
        """
        try:
            return self._decrypt_aggregate(data)
        finally:
            self._update_report()

    def _decrypt_aggregate(self, data: bytes) -> bytes:
        entry = self._log[-1]
        present = [self._holders[i] for i in entry.present]
        entry.aggregate = data
        errors: list[HEFedError] = []
        endorsements = []
        for holder in present:
            try:
                endorsements.append(holder.endorse(data))
            except HEFedError as exc:
                errors.append(exc)  # each honest holder refuses on its own
        if errors:
            raise errors[0]
        entry.certificate = merge_signatures(endorsements)
        for holder in present:
            for recipient, blob in holder.partial_decrypt(data, entry.certificate).items():
                entry.sealed.setdefault(recipient, []).append(blob)
        releases = []
        for holder in present:
            try:
                releases.append(holder.release(entry.sealed.get(holder.index, [])))
            except HEFedError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        if any(r != releases[0] for r in releases):
            raise ProtocolError("share holders released different aggregates")
        self.last_partials = present[0].last_partials
        return releases[0]

    def __repr__(self) -> str:
        return f"<LocalCouncil {self.threshold} of {self.holders}, absent {sorted(self.absent)}>"


def generate_council(setup: FederationSetup) -> LocalCouncil:
    """The share holders of ``setup.threshold``, each with ``setup``'s policy.

    Raises
    ------
    ConfigurationError
        If ``setup`` has no threshold, or its scheme is not Paillier.
    """
    if setup.threshold is None:
        raise ConfigurationError("this federation has a single key holder")
    threshold, holders = setup.threshold
    return LocalCouncil.generate(
        setup.scheme,
        threshold=threshold,
        holders=holders,
        plan=setup.run_plan,
        min_clients=setup.min_clients,
        privacy=setup.privacy,
    )


def council_summary(keyholder: object) -> dict[str, Any] | None:
    """``t``, ``n``, the quorum ``q``, the absences tolerated and the holders absent.

    For a run's report, at its end: ``absent`` lists the holders absent then.

    None when ``keyholder`` is a single key holder; a council in process
    (:class:`LocalCouncil`) or on Flower nodes answers the same.
    """
    if not hasattr(keyholder, "tolerated_absences"):
        return None
    council: Any = keyholder
    return {
        "threshold": council.threshold,
        "holders": council.holders,
        "quorum": council.quorum,
        "tolerated_absences": council.tolerated_absences,
        "absent": sorted(council.absent),
    }


def threshold_setting(
    text: str | None, scheme: str, executor: object = None
) -> tuple[int, int] | None:
    """``(t, n)`` of a ``"t/n"`` setting, or None; the one check every entry point runs.

    Every executor runs it (``executor`` is kept for callers that pass it).

    Raises
    ------
    ConfigurationError
        If ``text`` is not ``t/n``, or the scheme has no threshold decryption.
    """
    if text is None:
        return None
    threshold = parse_threshold(str(text))
    if scheme not in ("paillier", "paillier-packed"):
        raise ConfigurationError(
            f"--threshold needs a Paillier scheme; {scheme} has no threshold decryption "
            "(multiparty CKKS is not built: DESIGN.md, 'Threshold decryption')"
        )
    return threshold
