"""Secret-key files: explicit export, passphrase protection, typed refusals."""

from __future__ import annotations

import numpy as np
import pytest

from he_fed.crypto import load_public, load_secret, wire
from he_fed.exceptions import InvalidPassphrase, MalformedMessage, SecretMaterialError


@pytest.mark.parametrize("passphrase", [None, "correct horse battery staple"])
def test_secret_keys_round_trip_and_still_decrypt(keys, passphrase):
    data = keys.secret.to_bytes(passphrase=passphrase)
    loaded = load_secret(data, passphrase=passphrase, allow_insecure=True)
    assert loaded.public == keys.public
    vector = keys.public.encrypt(np.array([1.0, -2.0]), weight=3)
    np.testing.assert_allclose(
        loaded.secret.decrypt(loaded.public.load_vector(vector.to_bytes())),
        keys.secret.decrypt(vector),
    )


def test_protected_files_need_the_right_passphrase(keys):
    data = keys.secret.to_bytes(passphrase="right")
    with pytest.raises(InvalidPassphrase, match="passphrase-protected"):
        load_secret(data, allow_insecure=True)
    with pytest.raises(InvalidPassphrase, match="wrong passphrase or tampered"):
        load_secret(data, passphrase="wrong", allow_insecure=True)
    with pytest.raises(InvalidPassphrase):
        keys.secret.to_bytes(passphrase="")


def test_protected_files_hide_the_secret_and_detect_tampering(keys):
    data = keys.secret.to_bytes(passphrase="pw")
    if keys.public.scheme.name.startswith("paillier"):
        p = int(keys.secret._crt.p)
        assert p.to_bytes((p.bit_length() + 7) // 8, "big") not in data
    envelope = wire.open_envelope(data)
    body = bytearray(envelope.body)
    body[-5] ^= 1  # flip a bit of the ciphertext, then re-seal with a valid checksum
    tampered = wire.seal_envelope(
        envelope.kind,
        bytes(body),
        scheme=envelope.scheme,
        params=envelope.params,
        fingerprint=envelope.fingerprint,
    )
    with pytest.raises(InvalidPassphrase):
        load_secret(tampered, passphrase="pw", allow_insecure=True)


def test_public_loaders_refuse_secret_files_and_secret_loaders_public_ones(keys):
    with pytest.raises(SecretMaterialError):
        load_public(keys.secret.to_bytes(), allow_insecure=True)
    with pytest.raises(MalformedMessage, match="expected a secret key"):
        load_secret(keys.public.to_bytes(), allow_insecure=True)


def test_a_secret_file_whose_key_does_not_match_its_header_is_refused(keys):
    from tests.conftest import FAST_SCHEMES

    other = FAST_SCHEMES[keys.public.scheme.name].keygen()
    mine = wire.open_envelope(keys.secret.to_bytes())
    theirs = wire.open_envelope(other.secret.to_bytes())
    spliced = wire.seal_envelope(
        mine.kind,
        theirs.body,
        scheme=mine.scheme,
        params=mine.params,
        fingerprint=mine.fingerprint,
    )
    with pytest.raises(MalformedMessage, match="does not match"):
        load_secret(spliced, allow_insecure=True)
