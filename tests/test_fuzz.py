"""Hostile input: every loader, fed random and mutated bytes, raises only HEFedError.

Three kinds of input per loader: random bytes; valid bytes with bytes flipped,
inserted, deleted or truncated (the envelope checksum catches most of these); and
valid envelopes whose body or parameters were mutated and then re-sealed with a
correct checksum, which reach the scheme-specific parsers (and TenSEAL) behind it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from he_fed.crypto import load_public, load_secret, wire
from he_fed.exceptions import HEFedError
from he_fed.protocol import (
    Aggregate,
    EncryptedAggregate,
    EncryptedUpdate,
    RoundStart,
    decode,
)
from tests.conftest import FAST_SCHEMES, keys_for
from tests.protocol.harness import open_round, roles

EXAMPLES = 2000
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@st.composite
def _mutations(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif op == "set" and out:
            out[at] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del out[at : at + draw(st.integers(1, 16))]
        else:
            del out[at:]
    return bytes(out)


@st.composite
def _resealed(draw: st.DrawFn, data: bytes) -> bytes:
    envelope = wire.open_envelope(data)
    body, params = envelope.body, envelope.params
    if draw(st.booleans()):
        body = draw(_mutations(body))
    else:
        params = draw(
            st.one_of(
                st.text(max_size=40),
                st.just(params.replace("4.0", "-1.0")),
                st.just(params.replace("=", "==", 1)),
                st.just(params + ";extra=1"),
            )
        )
    return wire.seal_envelope(
        envelope.kind,
        body,
        scheme=envelope.scheme,
        params=params,
        fingerprint=envelope.fingerprint,
    )


def _hostile(samples: list[bytes]) -> st.SearchStrategy[bytes]:
    pick = st.sampled_from(samples)
    return st.one_of(
        st.binary(max_size=512),
        pick.flatmap(_mutations),
        pick.flatmap(_resealed),
    )


def _only_hefed(load: Callable[[bytes], object], data: bytes) -> None:
    with contextlib.suppress(HEFedError):
        load(data)


def _key_samples() -> list[bytes]:
    out = []
    for name in FAST_SCHEMES:
        public = keys_for(name).public
        out += [public.to_bytes(), public.aggregation_key().to_bytes()]
    return out


@pytest.mark.slow
@FUZZ
@given(data=_hostile(_key_samples()))
def test_fuzz_load_public(data):
    _only_hefed(lambda b: load_public(b, allow_insecure=True), data)


@pytest.mark.slow
@FUZZ
@given(data=_hostile([keys_for(n).secret.to_bytes() for n in FAST_SCHEMES]))
def test_fuzz_load_secret(data):
    _only_hefed(lambda b: load_secret(b, allow_insecure=True), data)


@pytest.mark.slow
@pytest.mark.parametrize("scheme_name", sorted(FAST_SCHEMES))
def test_fuzz_load_vector(scheme_name):
    keys = keys_for(scheme_name)
    rng = np.random.default_rng(0)
    samples = [
        keys.public.encrypt(rng.uniform(-1, 1, size), weight=3).to_bytes() for size in (1, 7)
    ]
    samples.append(sum(keys.public.encrypt(np.ones(7)) for _ in range(3)).to_bytes())
    aggregation = keys.public.aggregation_key()

    @FUZZ
    @given(data=_hostile(samples))
    def run(data: bytes) -> None:
        _only_hefed(aggregation.load_vector, data)

    run()


def _message_samples() -> dict[type, list[bytes]]:
    keyholder, aggregator, clients = roles("paillier-packed")
    start = open_round(keyholder, aggregator)
    updates = [c.participate(start).update for c in clients]
    for update in updates:
        aggregator.add(update)
    encrypted = aggregator.finish_round()
    plain = keyholder.decrypt_aggregate(encrypted)
    return {
        RoundStart: [start],
        EncryptedUpdate: updates,
        EncryptedAggregate: [encrypted],
        Aggregate: [plain],
    }


_MESSAGES = _message_samples()


@pytest.mark.slow
@pytest.mark.parametrize("message_type", list(_MESSAGES), ids=lambda t: t.__name__)
def test_fuzz_decode_messages(message_type):
    @FUZZ
    @given(data=_hostile(_MESSAGES[message_type]))
    def run(data: bytes) -> None:
        _only_hefed(lambda b: decode(b, message_type), data)

    run()


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True)
@given(data=_hostile(_MESSAGES[EncryptedUpdate] + _MESSAGES[EncryptedAggregate]))
def test_fuzz_the_roles_themselves(data):
    """The aggregator and the key holder, handed hostile bytes, refuse them cleanly."""
    keyholder, aggregator, _ = roles("paillier-packed")
    open_round(keyholder, aggregator)
    _only_hefed(aggregator.add, data)
    _only_hefed(keyholder.decrypt_aggregate, data)
