"""A key holder may store its own secret key; no other reader accepts those bytes."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.crypto import load_keypair, load_public
from he_fed.exceptions import MalformedMessage, SecretMaterialError
from tests.conftest import keys_for


def test_a_stored_secret_key_decrypts_what_the_original_encrypted(scheme_name):
    keys = keys_for(scheme_name)
    vector = keys.public.encrypt(np.array([0.5, -1.0, 0.25]), weight=3)
    restored = load_keypair(keys.secret.to_bytes(), allow_insecure=True)
    assert restored.public == keys.public
    np.testing.assert_array_equal(
        restored.secret.decrypt_weighted(vector).total,
        keys.secret.decrypt_weighted(vector).total,
    )


def test_secret_bytes_are_refused_as_public_material(scheme_name):
    with pytest.raises(SecretMaterialError):
        load_public(keys_for(scheme_name).secret.to_bytes(), allow_insecure=True)


def test_public_bytes_or_a_mismatched_secret_are_not_a_key_pair():
    keys, other = keys_for("paillier"), keys_for("paillier-packed")
    with pytest.raises(MalformedMessage, match="expected a secret key"):
        load_keypair(keys.public.to_bytes(), allow_insecure=True)
    # Splice one key's primes behind another key's public half: refused.
    from he_fed.crypto import wire

    mine, theirs = (
        wire.Reader(wire.open_envelope(k.secret.to_bytes()).body, "t") for k in (keys, other)
    )
    public, _ = mine.blob(), mine.blob()
    _, primes = theirs.blob(), theirs.blob()
    w = wire.Writer()
    w.blob(public)
    w.blob(primes)
    envelope = wire.open_envelope(keys.secret.to_bytes())
    forged = wire.seal_envelope(
        wire.Kind.SECRET_KEY,
        w.getvalue(),
        scheme=envelope.scheme,
        params=envelope.params,
        fingerprint=envelope.fingerprint,
    )
    with pytest.raises(MalformedMessage, match="do not match"):
        load_keypair(forged, allow_insecure=True)
