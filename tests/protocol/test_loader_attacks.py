"""Hostile key files, crafted as an attacker would, against the loaders.

One test per reported finding. Each builds the exact file the attacker built (real
keys with a header field or a body edited, re-sealed with a valid checksum, since
anyone can recompute it) and asserts the typed refusal and that the costly step
never ran: no CKKS key generation, no fixed-base table, no scrypt derivation.
"""

from __future__ import annotations

import functools
import os
import random
import secrets
import stat

import gmpy2
import numpy as np
import pytest
from click.testing import CliRunner
from he_fed.cli import main

from he_fed.crypto import CKKS, Paillier, keyfile, load_public, load_secret, wire
from he_fed.crypto import _djn as djn
from he_fed.crypto.base import key_fingerprint
from he_fed.crypto.paillier import MAX_KEY_BITS, PaillierPublicKey, _PaillierScheme
from he_fed.exceptions import MalformedMessage
from tests.conftest import keys_for


def _reseal(data: bytes, **fields: object) -> bytes:
    """The same envelope with some header fields or its body replaced, checksum recomputed."""
    envelope = wire.open_envelope(data)
    return wire.seal_envelope(
        fields.get("kind", envelope.kind),  # type: ignore[arg-type]
        fields.get("body", envelope.body),  # type: ignore[arg-type]
        scheme=fields.get("scheme", envelope.scheme),  # type: ignore[arg-type]
        params=fields.get("params", envelope.params),  # type: ignore[arg-type]
        fingerprint=fields.get("fingerprint", envelope.fingerprint),  # type: ignore[arg-type]
    )


def _with_param(data: bytes, name: str, value: str) -> bytes:
    params = wire.params_from_text(wire.open_envelope(data).params)
    params[name] = value
    return _reseal(data, params=";".join(f"{k}={params[k]}" for k in sorted(params)))


class _Calls:
    """Records calls to a function or constructor that must not run."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
        self.calls: list[tuple[tuple[object, ...], dict[str, object]]] = []
        original = getattr(owner, name)

        def spy(*args: object, **kwargs: object) -> object:
            self.calls.append((args, kwargs))
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)


# Finding 1: load_public of a CKKS key whose header says clip=1e308 raised
# ValueError (math domain error) from the scale computation.


@pytest.mark.parametrize("clip", ["1e308", "1e+308", "inf", "nan", "-4.0", "0.0", "1e-300"])
@pytest.mark.parametrize("role", ["public", "aggregation"])
def test_a_ckks_key_whose_header_says_clip_1e308_is_malformed(clip, role):
    public = keys_for("ckks").public
    data = (public if role == "public" else public.aggregation_key()).to_bytes()
    with pytest.raises(MalformedMessage, match="clip"):
        load_public(_with_param(data, "clip", clip))


def test_a_ckks_header_claiming_the_largest_ring_generates_no_context(monkeypatch):
    """Found while fixing finding 1: the loader generated a whole reference context.

    A 300-byte aggregation key whose header claimed N=32768 and an 881-bit modulus
    made the loader generate secret, public and relinearisation keys at that size
    (0.9 s, 520 MiB) only to compare them with a small context and refuse it.
    """
    import tenseal as ts

    data = keys_for("ckks").public.aggregation_key().to_bytes()
    largest = CKKS(poly_modulus_degree=32768, coeff_mod_bit_sizes=(60,) * 14 + (41,))
    context = _Calls(monkeypatch, ts, "context")
    with pytest.raises(MalformedMessage, match="context parameters differ"):
        load_public(_reseal(data, params=largest.with_plan(max_clients=64).params_text()))
    assert context.calls == []


# Finding 2: load_secret of a `paillier` envelope around a CKKS payload raised
# AttributeError inside Paillier's secret-key parser.


@pytest.mark.parametrize("passphrase", [None, "pw"])
def test_a_paillier_envelope_around_a_ckks_secret_key_is_malformed(monkeypatch, passphrase):
    ckks_file = keys_for("ckks").secret.to_bytes(passphrase=passphrase)
    paillier_file = keys_for("paillier").secret.to_bytes(passphrase=passphrase)
    paillier_head = wire.open_envelope(paillier_file)
    derivations = _Calls(monkeypatch, keyfile, "Scrypt")
    parser = _Calls(monkeypatch, _PaillierScheme, "_load_secret")
    relabelled = _reseal(ckks_file, scheme="paillier")  # CKKS parameters under a paillier name
    with pytest.raises(MalformedMessage, match="do not describe a paillier scheme"):
        load_secret(relabelled, passphrase=passphrase, allow_insecure=True)
    assert derivations.calls == []  # refused from the header, before any derivation
    if passphrase is None:
        # A whole paillier header (scheme, parameters, fingerprint) around the CKKS
        # payload: the payload's key is refused for not being of the header's scheme.
        spliced = _reseal(
            ckks_file,
            scheme=paillier_head.scheme,
            params=paillier_head.params,
            fingerprint=paillier_head.fingerprint,
        )
        with pytest.raises(MalformedMessage, match="does not match its header"):
            load_secret(spliced, allow_insecure=True)
    assert parser.calls == []


def test_a_packed_header_around_a_per_value_key_is_malformed():
    """Same material, another scheme class: still not the key the header describes."""
    per_value = keys_for("paillier").secret.to_bytes()
    params = wire.open_envelope(per_value).params.replace("precision_bits=64", "precision_bits=16")
    with pytest.raises(MalformedMessage, match="does not match its header"):
        load_secret(
            _reseal(per_value, scheme="paillier-packed", params=params), allow_insecure=True
        )


# Finding 3: a random odd 8192-bit "modulus" was accepted as a Paillier public key;
# the first encryption built a 256 MiB fixed-base table (6 s), and key_bits=65536,
# the format's maximum, would have asked for about 16 GiB.


def _random_odd(bits: int, rng: random.Random) -> int:
    return rng.getrandbits(bits) | (1 << (bits - 1)) | 1


def test_a_random_odd_8192_bit_modulus_is_refused_before_any_table(monkeypatch):
    """The attacker's file: a random odd number as ``n``, a random ``hs``, a valid fingerprint.

    About 95.6% of such pairs fail a structural check (2,000 at 2048 bits: 87
    passed). Those that pass have no small factor and have a
    plausible ``hs``: without factoring ``n`` they cannot be told from a real key,
    and the next test shows what accepting one costs.
    """
    rng = random.Random(8192)  # seeded: these eight pairs all fail a check
    tables = _Calls(monkeypatch, djn.FixedBase, "__init__")
    for _ in range(8):
        n = _random_odd(8192, rng)
        data = PaillierPublicKey(Paillier(key_bits=8192), n, rng.randrange(2, n * n)).to_bytes()
        with pytest.raises(MalformedMessage, match="paillier"):
            load_public(data)
    assert tables.calls == []


def test_a_forged_8192_bit_modulus_that_passes_every_check_gets_a_bounded_table(monkeypatch):
    """The worst case: a forged key that no check can refuse is loaded and used.

    The first encryption builds its fixed-base table with a window chosen from the
    key's size: 5 bits and 51 MiB, where the old 8-bit window took 256 MiB.
    """
    rng = random.Random(3)
    small_primes = gmpy2.primorial(djn.SMALL_PRIME_BOUND - 1)
    while True:  # what the attacker does: draw until every check passes
        n = _random_odd(8192, rng)
        if n % 4 == 1 and gmpy2.gcd(n, small_primes) == 1 and not gmpy2.is_bpsw_prp(n):
            break
    while True:
        hs = rng.randrange(2, n * n)
        if gmpy2.jacobi(hs % n, n) == 1:
            break
    key = load_public(PaillierPublicKey(Paillier(key_bits=8192), n, hs).to_bytes())
    built: list[djn.FixedBase] = []
    original = djn.FixedBase.__init__

    def spy(self: djn.FixedBase, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        built.append(self)

    monkeypatch.setattr(djn.FixedBase, "__init__", spy)
    key.encrypt(np.array([0.5]))  # type: ignore[attr-defined]
    assert [(t.window, t.nbytes) for t in built] == [(5, djn.table_bytes(16384, 4096, 5))]
    assert built[0].nbytes <= djn.TABLE_BUDGET_BYTES < djn.table_bytes(16384, 4096, 8)


def test_a_key_at_the_formats_old_maximum_size_is_refused_from_its_header(monkeypatch):
    bits = 1 << 16
    n = _random_odd(bits, secrets.SystemRandom())
    n_bytes, hs_bytes = n.to_bytes(bits // 8, "big"), (3).to_bytes(bits // 4, "big")
    body = wire.Writer()
    body.blob(n_bytes)
    body.blob(hs_bytes)
    header = Paillier(key_bits=MAX_KEY_BITS).params_text().replace("8192", str(bits))
    data = wire.seal_envelope(
        wire.Kind.PUBLIC_KEY,
        body.getvalue(),
        scheme="paillier",
        params=header,
        fingerprint=key_fingerprint("he-fed/paillier/v1", n_bytes, hs_bytes),
    )
    tables = _Calls(monkeypatch, djn.FixedBase, "__init__")
    with pytest.raises(MalformedMessage, match="key_bits must be an integer in \\[256, 8192\\]"):
        load_public(data)
    assert tables.calls == []


def test_the_largest_key_accepted_gets_a_table_within_the_budget():
    """Even a well-formed 8192-bit key makes a client allocate at most 64 MiB of table."""
    modulus_bits, exponent_bits = 2 * MAX_KEY_BITS, MAX_KEY_BITS // 2
    window = djn.table_window(modulus_bits, exponent_bits)
    assert window == 5
    assert djn.table_bytes(modulus_bits, exponent_bits, window) == 820 * 32 * 2048  # 51 MiB
    assert djn.table_bytes(modulus_bits, exponent_bits, 8) == 256 << 20  # the old window
    assert djn.table_window(2 * 2048, 1024) == 8  # the default key keeps its fast table
    assert djn.table_bytes(2 * 2048, 1024, 8) == 16 << 20
    assert djn.table_window(2 * 4096, 2048) == 8  # 64 MiB, the budget itself


def test_random_moduli_mostly_fail_a_check_and_the_rest_cannot_be_told_apart():
    """2,000 seeded random odd 2048-bit pairs (n, hs): 87 pass every check.

    Those 87 have no factor below 2^16, and an hs whose Jacobi symbol is that of
    -1 and with no small order: without factoring n, nothing distinguishes them
    from real keys. The table budget above is what bounds them.
    """
    rng = random.Random(1)
    scheme = Paillier(key_bits=2048)
    accepted = 0
    for _ in range(2000):
        n = _random_odd(2048, rng)
        try:
            load_public(PaillierPublicKey(scheme, n, rng.randrange(2, n * n)).to_bytes())
        except MalformedMessage:
            continue
        accepted += 1
    assert accepted == 87


def test_the_table_holds_what_its_size_says():
    keys = Paillier(key_bits=1024, allow_insecure=True).keygen()
    table = djn.FixedBase(int(keys.public.hs), int(keys.public.nsquare), 512)
    entries = sum(len(row) for row in table._table)
    assert entries * (2048 // 8) == table.nbytes == djn.table_bytes(2048, 512, 8)
    assert all(int(v) < int(keys.public.nsquare) for row in table._table for v in row)


@pytest.mark.slow
def test_building_the_largest_table_stays_within_the_budget_in_memory():
    """Measured, not computed: the table for an 8192-bit key in a fresh process."""
    import subprocess
    import sys

    script = (
        "import resource, secrets, gmpy2\n"
        "from he_fed.crypto import _djn as djn\n"
        "m = gmpy2.mpz(secrets.randbits(16384) | (1 << 16383) | 1)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "table = djn.FixedBase(3, m, 4096)\n"
        "print(table.window, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    window, grown_kib = int(out[0]), int(out[1])
    assert window == 5
    assert grown_kib * 1024 < 1.25 * djn.TABLE_BUDGET_BYTES  # the old table: 256 MiB


def test_an_honest_key_still_builds_its_table_once(monkeypatch):
    """The spy above would see a table: encryption under an honest loaded key builds one."""
    keys = Paillier(key_bits=1024, allow_insecure=True).keygen()
    loaded = load_public(keys.public.to_bytes(), allow_insecure=True)
    tables = _Calls(monkeypatch, djn.FixedBase, "__init__")
    loaded.encrypt([0.5, -0.25])  # type: ignore[attr-defined]
    assert len(tables.calls) == 1


# Finding 4: a secret-key file edited to the loader's largest scrypt parameters
# (n = 2^20, r = 16, p = 4) cost 19 s and 2 GiB before its tag was checked.

_COSTS_AT = 1 + 16  # protection byte, salt; then log2(n), r, p


@functools.cache
def _protected_file() -> bytes:
    return keys_for("paillier").secret.to_bytes(passphrase="pw")


@pytest.mark.parametrize(
    "costs",
    [(20, 16, 4), (20, 8, 1), (15, 16, 1), (15, 8, 4), (14, 8, 1), (10, 1, 1), (0, 0, 0)],
    ids=lambda c: "n=2^{},r={},p={}".format(*c),
)
def test_a_secret_file_asking_for_other_scrypt_costs_is_refused_before_deriving(monkeypatch, costs):
    data = _protected_file()
    body = bytearray(wire.open_envelope(data).body)
    assert tuple(body[_COSTS_AT : _COSTS_AT + 3]) == (15, 8, 1)
    body[_COSTS_AT : _COSTS_AT + 3] = bytes(costs)
    derivations = _Calls(monkeypatch, keyfile, "Scrypt")
    with pytest.raises(MalformedMessage, match="scrypt costs .* refused before any key derivation"):
        load_secret(_reseal(data, body=bytes(body)), passphrase="pw", allow_insecure=True)
    assert derivations.calls == []


def test_an_honest_secret_file_derives_once_at_the_written_costs(monkeypatch):
    data = _protected_file()
    derivations = _Calls(monkeypatch, keyfile, "Scrypt")
    load_secret(data, passphrase="pw", allow_insecure=True)
    assert [(c[1]["n"], c[1]["r"], c[1]["p"]) for c in derivations.calls] == [(2**15, 8, 1)]


# Finding 5: `he-fed keygen --force` followed a symlink planted at secret.key, so a
# reader who had opened the target beforehand read the new secret.

FAST = ["--key-bits", "1024", "--allow-insecure"]


def test_keygen_force_replaces_a_planted_symlink_and_never_writes_through_it(tmp_path):
    out = tmp_path / "keys"
    out.mkdir()
    bait = {name: tmp_path / f"bait-{name}" for name in ("public.key", "secret.key")}
    for name, path in bait.items():
        path.write_bytes(b"")
        os.chmod(path, 0o666)  # a file the attacker can read
        (out / name).symlink_to(path)
    with open(bait["secret.key"], "rb") as attacker:  # opened before keygen runs
        result = CliRunner().invoke(main, ["keygen", "--out", str(out), *FAST, "--force"])
        assert result.exit_code == 0, result.output
        assert attacker.read() == b""
    assert all(path.read_bytes() == b"" for path in bait.values())
    secret = out / "secret.key"
    assert not secret.is_symlink() and not (out / "public.key").is_symlink()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    keys = load_secret(secret.read_bytes(), allow_insecure=True)
    assert keys.public.to_bytes() == (out / "public.key").read_bytes()
    assert sorted(os.listdir(out)) == ["aggregator.key", "public.key", "secret.key"]


def test_keygen_without_force_refuses_a_dangling_symlink(tmp_path):
    out = tmp_path / "keys"
    out.mkdir()
    (out / "secret.key").symlink_to(tmp_path / "not-yet-there")
    result = CliRunner().invoke(main, ["keygen", "--out", str(out), *FAST])
    assert result.exit_code != 0 and "--force" in result.output
    assert not (tmp_path / "not-yet-there").exists()


# Structural checks one by one: each crafted modulus or generator fails the check
# it targets (the random moduli above mostly fail the first ones).


def _prime(bits: int, residue: int) -> int:
    while True:  # top two bits set, so products of two have exactly twice the bits
        p = int(gmpy2.next_prime(secrets.randbits(bits) | (3 << (bits - 2))))
        if p % 4 == residue and p.bit_length() == bits:
            return p


def _crafted(n: int, hs: int) -> bytes:
    key_bits = n.bit_length()
    scheme = Paillier(key_bits=key_bits, allow_insecure=True, precision_bits=32)
    return PaillierPublicKey(scheme, n, hs).to_bytes()


def _honest_key() -> tuple[int, int, int]:
    """A real 512-bit DJN key: ``p``, ``n``, ``hs``."""
    p, q = djn.generate_primes(512)
    return p, p * q, djn.djn_generator(p * q)


def test_each_structural_check_refuses_the_modulus_it_targets():
    _, n, hs = _honest_key()
    load_public(_crafted(n, hs), allow_insecure=True)  # the honest key passes them all
    p3 = _prime(256, 3)
    cases = {
        "prime factor below 65536": 65521 * _prime(496, 1),
        "perfect power": p3 * p3,
        "prime: anyone": _prime(512, 1),
    }
    for reason, modulus in cases.items():
        assert modulus.bit_length() == 512 and modulus % 2 == 1
        with pytest.raises(MalformedMessage, match=reason):
            load_public(_crafted(modulus, 2), allow_insecure=True)


def test_each_structural_check_refuses_the_generator_it_targets():
    p, n, hs = _honest_key()
    nsquare = n * n
    jacobi_minus = next(x for x in range(2, 1000) if gmpy2.jacobi(x, n) == -1)
    cases = {
        "not a unit": [0, 1, n, 7 * p, nsquare - n, nsquare + 1],
        "Jacobi symbol is not": [jacobi_minus],
        # -1 has order 2; 1 + n is 1 modulo every factor of n (hs^a = 1 + a·n).
        "small order modulo a factor": [nsquare - 1, 1 + n],
    }
    for reason, values in cases.items():
        for value in values:
            with pytest.raises(MalformedMessage, match=reason):
                load_public(_crafted(n, value), allow_insecure=True)
    load_public(_crafted(n, hs), allow_insecure=True)


def test_a_key_that_passed_is_checked_once_and_a_forged_one_every_time():
    p, n, hs = _honest_key()
    load_public(_crafted(n, hs), allow_insecure=True)
    hits = djn._passed.cache_info().hits
    load_public(_crafted(n, hs), allow_insecure=True)  # a second client of the process
    assert djn._passed.cache_info().hits == hits + 1
    # Remembering the honest (n, hs) lets no other pair through, however often it comes.
    for _ in range(2):
        with pytest.raises(MalformedMessage, match="small order modulo a factor"):
            load_public(_crafted(n, 1 + n), allow_insecure=True)
        with pytest.raises(MalformedMessage, match="prime: anyone"):
            load_public(_crafted(_prime(512, 1), 2), allow_insecure=True)
    assert djn._passed.cache_info().hits == hits + 1
