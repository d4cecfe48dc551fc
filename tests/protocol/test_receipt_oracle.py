"""The key holder tries to test a guess about one client's Paillier update.

With the factorisation it turns a receipt's commitment ``r^n mod n`` into
``r mod n``, rebuilds ``r^n mod n²``, and re-encrypts a candidate update exactly as
the client did. If anything it received depended on the client's ciphertext (an
earlier design put the ciphertext's SHA-256 in every receipt), comparing would
decide whether the guess is right: whether a given record was in a client's data.
"""

from __future__ import annotations

import gmpy2
import numpy as np

from he_fed.crypto import _binding
from he_fed.protocol import EncryptedAggregate, EncryptedUpdate, decode
from he_fed.protocol.receipts import digest
from tests.protocol.harness import local_delta, open_round, roles

RHO = _binding.RHO_BITS


def _reencrypt(keyholder, commitment: bytes, values: np.ndarray, weight: int) -> bytes:
    """The key holder's re-encryption of a guessed contribution under a receipt's randomness."""
    key, secret = keyholder.public_key, keyholder._keys.secret
    n, n2 = int(key.n), int(key.nsquare)
    p, q = int(secret._crt.p), int(secret._crt.q)
    phi = (p - 1) * (q - 1)
    inverse = int(gmpy2.invert(n, phi))
    width = (n.bit_length() + 7) // 8
    rn_mod_n = [
        int.from_bytes(commitment[i : i + width], "big") for i in range(0, len(commitment), width)
    ]
    roots = [pow(c, inverse, n) for c in rn_mod_n]  # r mod n: n-th roots, with the factors
    plaintexts = key.scheme.encode(values, weight, n)
    # Every ciphertext but the last, whose plaintext is the client's secret blinding.
    ciphertexts = [
        (1 + m * n) * pow(r, n, n2) % n2 for m, r in zip(plaintexts, roots, strict=False)
    ]
    return b"".join(c.to_bytes(2 * ((n.bit_length() + 7) // 8), "big") for c in ciphertexts)


def _data_ciphertexts(keyholder, vector: bytes) -> bytes:
    key = keyholder.public_key
    loaded = key.load_vector(vector)
    width = 2 * ((int(key.n).bit_length() + 7) // 8)
    return b"".join(int(c).to_bytes(width, "big") for c in loaded.ciphertexts[:-1])


def key_integers(keyholder, values: np.ndarray, weight: int) -> list[int]:
    """The slot integers a client commits to for ``values`` of ``weight``."""
    key = keyholder.public_key
    n = int(key.n)
    return key.scheme.exact(key.scheme.encode(values, weight, n), values.size, n)


def test_the_key_holder_cannot_test_a_guess_about_one_update():
    keyholder, aggregator, clients = roles("paillier", sizes=(30, 50, 20))
    start = open_round(keyholder, aggregator)
    updates = [c.participate(start).update for c in clients]
    for update in updates:
        aggregator.add(update)
    received = aggregator.finish_round()  # everything the key holder gets this round
    keyholder.decrypt_aggregate(received)
    message = decode(received, EncryptedAggregate)
    victim = decode(updates[0], EncryptedUpdate)

    # The right guess (c0's exact update), re-encrypted under c0's randomness.
    guess = local_delta(clients[0], np.zeros(4))
    rebuilt = _reencrypt(keyholder, message.receipts[0].commitment, guess, weight=30)
    # The attack works: it rebuilds the client's ciphertexts bit for bit (all but
    # the blinding's) ...
    assert rebuilt == _data_ciphertexts(keyholder, victim.vector)
    # ... but nothing the key holder received lets it compare: no digest of the
    # ciphertext, nor the ciphertext itself, is in any byte it was sent.
    assert digest(rebuilt) not in received
    assert rebuilt[-64:] not in received
    # A wrong guess is indistinguishable: the receipts are the same bytes either way.
    wrong = _reencrypt(keyholder, message.receipts[0].commitment, guess + 0.25, weight=30)
    assert wrong != rebuilt and digest(wrong) not in received
    # Nor does the receipt's binding commitment help: it commits to the guessed
    # integers only together with the client's blinding exponent, which the key
    # holder never sees alone (only its sum over the cohort).
    guessed = key_integers(keyholder, guess, 30)
    assert message.receipts[0].binding not in {
        _binding.commit(guessed, rho) for rho in (0, 1, 2**RHO - 1)
    }
