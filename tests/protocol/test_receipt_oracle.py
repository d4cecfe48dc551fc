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

from he_fed.crypto.paillier import PaillierVector
from he_fed.protocol import EncryptedAggregate, EncryptedUpdate, decode
from he_fed.protocol.receipts import digest
from tests.protocol.harness import local_delta, open_round, roles


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
    ciphertexts = [(1 + m * n) * pow(r, n, n2) % n2 for m, r in zip(plaintexts, roots, strict=True)]
    return PaillierVector(key, [gmpy2.mpz(c) for c in ciphertexts], values.size, 1).to_bytes()


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
    # The attack works: it rebuilds the client's ciphertext bit for bit ...
    assert rebuilt == victim.vector
    # ... but nothing the key holder received lets it compare: no digest of the
    # ciphertext, nor the ciphertext itself, is in any byte it was sent.
    assert digest(rebuilt) not in received
    assert rebuilt[-64:] not in received
    # A wrong guess is indistinguishable: the receipts are the same bytes either way.
    wrong = _reencrypt(keyholder, message.receipts[0].commitment, guess + 0.25, weight=30)
    assert wrong != rebuilt and digest(wrong) not in received
