"""Structure-aware fuzzing: envelopes built field by field, sealed with a valid checksum.

``test_fuzz.py`` mutates bytes, and nearly every mutation dies at the checksum or
the first length, so it never found a hostile header *value* (``clip=1e308``, a
``paillier`` label on a CKKS key, a random odd modulus, large scrypt costs). Here
hypothesis draws each field of an envelope on its own:

* kind and scheme name, the right ones or any other;
* parameters: a real scheme's fields with values replaced by extreme, non-finite,
  non-canonical or foreign ones, fields dropped, duplicated, added or reordered;
* fingerprint: the right one, another length, zeros or random bytes;
* body: the right one, another scheme's or kind's, a mutated one, or one built
  from hostile integers (Paillier moduli and generators, vector shapes and
  ciphertexts, CKKS chunks of another preset), and for secret keys both clear and
  passphrase-protected files whose payload is itself hostile.

Every loader must return or raise an ``HEFedError`` subclass, and its work must stay
bounded: while loading, no CKKS key generation and no fixed-base table; scrypt only
at the costs he-fed writes (a stand-in derives cheaply, so protected payloads are
fuzzed too); every Paillier key that loads is one whose table fits
``djn.TABLE_BUDGET_BYTES``; and the process's peak memory grows by less than
256 MiB over a whole run. The default profile draws 100 examples per test; the
``slow`` runs draw 2,000, like ``test_fuzz.py``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import re
import resource
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import tenseal as ts
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from he_fed.crypto import CKKS, SCHEMES, KeyPair, keyfile, load_public, load_secret, wire
from he_fed.crypto import _djn as djn
from he_fed.crypto.base import key_fingerprint
from he_fed.crypto.paillier import MAX_KEY_BITS, PaillierPublicKey
from he_fed.crypto.stream import FrameWriter
from he_fed.exceptions import HEFedError
from tests.conftest import FAST_SCHEMES, keys_for

#: Examples per test: a quick default run, and the full run marked slow.
RUNS = [pytest.param(100, id="quick"), pytest.param(2000, marks=pytest.mark.slow, id="full")]
#: Most the process's peak memory may grow over one whole run.
MEMORY_BOUND = 256 << 20
_SETTINGS = settings(
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
_PASSPHRASE = b"pw"


@functools.cache
def _keys() -> dict[str, KeyPair]:
    """The fast keys of every scheme, and a second CKKS key under another preset."""
    out = {name: keys_for(name) for name in FAST_SCHEMES}
    out["ckks-compact"] = CKKS(preset="aggregation-compact", max_clients=4, max_weight=4).keygen()
    return out


@functools.cache
def _real() -> dict[str, list[bytes]]:
    """Real bytes of every kind, for headers and bodies to be taken from."""
    keys = _keys()
    rng = np.random.default_rng(0)
    out: dict[str, list[bytes]] = {"public": [], "secret": [], "vector": []}
    for pair in keys.values():
        out["public"] += [pair.public.to_bytes(), pair.public.aggregation_key().to_bytes()]
        out["secret"].append(pair.secret.to_bytes())
        out["vector"] += [
            pair.public.encrypt(rng.uniform(-1, 1, size), weight=w).to_bytes()
            for size, w in ((1, 1), (7, 3))
        ]
    return out


@functools.cache
def _payloads() -> dict[str, list[bytes]]:
    """Honest vector payloads of each scheme, and a CKKS chunk of the other preset.

    Made before the guards go up: encrypting builds the fixed-base table they forbid.
    """
    keys = _keys()
    rng = np.random.default_rng(1)
    out = {
        name: [keys[name].public.encrypt(rng.uniform(-1, 1, size))._payload() for size in _SIZES]
        for name in FAST_SCHEMES
    }
    out["ckks-foreign"] = [keys["ckks-compact"].public.encrypt(np.ones(3))._payload()]
    return out


#: Sizes of the honest payloads above.
_SIZES = (1, 9)


# Field values ---------------------------------------------------------------

_INTS = ["0", "1", "-1", "2", "3", "255", "256", "1024", "2048", "4096", "8192", "8193"]
_INTS += ["32768", "65536", "18446744073709551615", "18446744073709551616", "9" * 30]
_INTS += ["007", " 7", "+7", "7_0", "\u0663", "1.0", ""]
_FLOATS = ["1e308", "1e+308", "1.7976931348623157e+308", "1e300", "3e304", "1e100"]
_FLOATS += ["nan", "inf", "-inf", "1e-308", "5e-324", "0.0", "-0.0", "-4.0", "4", "4.0 "]
_FLOATS += ["18446744073709551616.0", "5.421010862427522e-20", "0x10", "4.0"]
_TUPLES = ["60,49", "40,14", "60,40,40", "", "60", "14", "61,61", "20,14", "0,0", "-1,14"]
_TUPLES += [",".join(["60"] * 14 + ["41"]), ",".join(["20"] * 60), "60,,49"]
_BOOLS = ["0", "1", "2", "", "true"]
_VALUES = st.sampled_from(_INTS + _FLOATS + _TUPLES + _BOOLS) | st.text(max_size=12)
#: Values aimed at each field's type, drawn most of the time.
_AIMED = {"clip": _FLOATS, "coeff_mod_bit_sizes": _TUPLES, "short_randomness": _BOOLS}
_FIELDS = ["clip", "max_clients", "max_weight", "key_bits", "precision_bits"]
_FIELDS += ["short_randomness", "poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits"]


@st.composite
def _params(draw: st.DrawFn, real: str) -> str:
    """A parameter text derived from a real one, field by field.

    Half the time one field's value is replaced, by a value aimed at its type
    (mostly); otherwise each value is replaced with probability ``1 / fields``,
    and then, one time in two, a field is dropped, duplicated, added or moved, or
    the whole text is another scheme's.
    """
    items = [tuple(item.split("=", 1)) for item in real.split(";")] if real else []
    if items and draw(st.booleans()):
        at = draw(st.integers(0, len(items) - 1))
        name = items[at][0]
        aimed = draw(st.sampled_from(_AIMED.get(name, _INTS)))
        items[at] = (name, _sometimes(draw, aimed, _VALUES))
        return ";".join(f"{k}={v}" for k, v in items)
    for at, (name, _) in enumerate(items):
        if draw(st.integers(1, len(items))) == 1:
            aimed = draw(st.sampled_from(_AIMED.get(name, _INTS)))
            items[at] = (name, _sometimes(draw, aimed, _VALUES))
    if draw(st.booleans()):
        op = draw(st.sampled_from(["drop", "duplicate", "add", "swap", "foreign"]))
        at = draw(st.integers(0, max(0, len(items) - 1)))
        if op == "drop" and items:
            del items[at]
        elif op == "duplicate" and items:
            items.insert(at, (items[at][0], draw(_VALUES)))
        elif op == "add":
            items.append((draw(st.sampled_from([*_FIELDS, "extra", ""])), draw(_VALUES)))
        elif op == "swap" and len(items) > 1:
            items[0], items[-1] = items[-1], items[0]
        elif op == "foreign":
            other = draw(st.sampled_from(_real()["public"]))
            return wire.open_envelope(other).params
    return ";".join(f"{k}={v}" for k, v in items)


def _sometimes(draw: st.DrawFn, kept: object, other: st.SearchStrategy, odds: int = 4) -> object:
    """``kept`` most of the time, a value of ``other`` about once in ``odds`` draws.

    So that most inputs are wrong in one or two fields, and get past the others to
    the check that field meets.
    """
    return draw(other) if draw(st.integers(1, odds)) == 1 else kept


def _header(draw: st.DrawFn, real: bytes) -> dict[str, object]:
    """Header fields of a real envelope, some replaced by extreme or foreign values.

    (A plain function taking ``draw``, like :func:`_mutated`: a strategy built
    with large bytes as an argument would be kept in hypothesis's strategy cache.)

    Half the time exactly one field is replaced (so the input gets past every
    other check to the one that field meets); otherwise each field is, one time
    in four.
    """
    envelope = wire.open_envelope(real)
    names = st.sampled_from([*SCHEMES, "", "PAILLIER", "ckks "])
    others: dict[str, st.SearchStrategy] = {
        "kind": st.sampled_from(list(wire.Kind)),
        "scheme": st.integers(1, 4).flatmap(lambda i: names if i > 1 else st.text(max_size=8)),
        "params": _params(envelope.params),
        "fingerprint": st.sampled_from([b"", b"\0" * 32, b"\xff" * 64])
        | st.binary(min_size=32, max_size=32),
    }
    fields = _header_of(real)
    if draw(st.booleans()):
        chosen = {draw(st.sampled_from(sorted(others)))}
    else:
        chosen = {name for name in others if draw(st.integers(1, 4)) == 1}
    return {name: draw(others[name]) if name in chosen else fields[name] for name in fields}


#: Strategies return recipes, not bytes: hypothesis keeps every value drawn in an
#: example for as long as it caches the example, and a CKKS secret-key file is a
#: few hundred kilobytes. A recipe holds only small drawn values and references to
#: the shared fixtures, and the test builds the bytes and drops them.
Build = Callable[[], bytes]


def _const(data: bytes) -> Build:
    return lambda: data


def _seal(fields: dict[str, object], body: Build) -> Build:
    params = str(fields["params"]).encode("utf-8", "replace")[:4000].decode("utf-8", "ignore")

    def build() -> bytes:
        return wire.seal_envelope(
            fields["kind"],  # type: ignore[arg-type]
            body(),
            scheme=str(fields["scheme"]),
            params=params,
            fingerprint=fields["fingerprint"],  # type: ignore[arg-type]
        )

    return build


def _mutated(draw: st.DrawFn, source: Build) -> Build:
    """``source`` with one to three bytes flipped, runs inserted or deleted, or cut short."""
    size = len(source())
    ops: list[tuple[str, int, object]] = []
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, max(0, size - 1)))
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        if op == "flip":
            ops.append((op, at, draw(st.integers(1, 255))))
        elif op == "insert":
            ops.append((op, at, draw(st.binary(min_size=1, max_size=16))))
        elif op == "delete":
            ops.append((op, at, draw(st.integers(1, 16))))
        else:
            ops.append((op, at, None))

    def build() -> bytes:
        out = bytearray(source())
        for op, at, arg in ops:
            at = min(at, len(out))
            if op == "flip" and at < len(out):
                out[at] ^= arg  # type: ignore[operator]
            elif op == "insert":
                out[at:at] = arg  # type: ignore[assignment]
            elif op == "delete":
                del out[at : at + arg]  # type: ignore[operator]
            elif op == "truncate":
                del out[at:]
        return bytes(out)

    return build


def _one_of(draw: st.DrawFn, options: list[Build]) -> Build:
    return options[draw(st.integers(0, len(options) - 1))]


# Bodies -----------------------------------------------------------------------


def _blob(data: bytes) -> bytes:
    w = wire.Writer()
    w.blob(data)
    return w.getvalue()


def _number(value: int, width: int) -> bytes:
    return value.to_bytes(max(width, (value.bit_length() + 7) // 8), "big")


@st.composite
def _paillier_body(draw: st.DrawFn, params: str) -> tuple[Build, bytes]:
    """``n`` and ``hs`` as hostile integers, of the header's size most of the time.

    Returns the body and the fingerprint those integers have, which anyone can
    compute.
    """
    declared = re.search(r"key_bits=([0-9]{3,4})(;|$)", params)
    sizes = st.sampled_from([256, 512, 1024, 2048, 8192])
    bits = _sometimes(draw, int(declared.group(1)), sizes) if declared else draw(sizes)
    honest = keys_for("paillier").public
    n = draw(
        st.sampled_from([0, 1, 3, 2**bits - 1, 2 ** (bits - 1), int(honest.n)])
        | st.integers(2 ** (bits - 1), 2**bits - 1).map(lambda v: v | 1)
    )
    hs = draw(
        st.sampled_from([0, 1, 2, max(n * n - 1, 0), n, n * n, n + 1, int(honest.hs)])
        | st.integers(0, max(n * n, 1))
    )
    n_bytes, hs_bytes = _number(n, 0), _number(hs, (2 * n.bit_length() + 7) // 8)
    fingerprint = key_fingerprint("he-fed/paillier/v1", n_bytes, hs_bytes)
    return _const(_blob(n_bytes) + _blob(hs_bytes)), fingerprint


def _of(kind: str, family: str | None) -> list[bytes]:
    """Real bytes of a kind, of one scheme (all CKKS presets) or of every scheme."""
    return [d for d in _real()[kind] if family in (None, wire.open_envelope(d).scheme)]


@functools.cache
def _secret_parts() -> dict[bytes, tuple[bytes, bytes]]:
    """Each real (clear) secret-key file's inner public key and secret material."""
    out = {}
    for data in _real()["secret"]:
        inner = wire.Reader(wire.open_envelope(data).body[1:], "fixture")
        out[data] = (inner.blob(), inner.blob())
    return out


@st.composite
def _public_envelope(draw: st.DrawFn, family: str | None = None) -> Build:
    real = draw(st.sampled_from(_of("public", family)))
    fields = _header(draw, real)
    if str(fields["scheme"]).startswith("paillier") and draw(st.booleans()):
        body, fingerprint = draw(_paillier_body(str(fields["params"])))
        return _seal({**fields, "fingerprint": _sometimes(draw, fingerprint, st.just(b""))}, body)
    body = _const(wire.open_envelope(real).body)
    if draw(st.integers(1, 3)) == 1:
        other = wire.open_envelope(draw(st.sampled_from(_real()["public"] + _real()["vector"])))
        choice = draw(st.sampled_from(["other", "mutated", "random"]))
        if choice == "other":
            body = _const(other.body)
        elif choice == "mutated":
            body = _mutated(draw, _const(other.body))
        else:
            body = _const(draw(st.binary(max_size=64)))
    return _seal(fields, body)


@st.composite
def _secret_envelope(draw: st.DrawFn, family: str) -> Build:
    """A clear or protected secret-key file whose header, costs and payload are hostile."""
    real = draw(st.sampled_from(_of("secret", family)))
    envelope = wire.open_envelope(real)
    fields = _header(draw, real)
    real_public, real_secret = _secret_parts()[real]
    other_secret = _secret_parts()[draw(st.sampled_from(_real()["secret"]))][1]
    public = _const(real_public) if draw(st.booleans()) else draw(_public_envelope())
    secret = _one_of(draw, [_const(real_secret), _const(other_secret), _const(b"")])
    if draw(st.booleans()):
        if draw(st.booleans()):
            secret = _mutated(draw, _const(real_secret))
        else:
            secret = _const(draw(st.binary(max_size=64)))
    tail = draw(st.sampled_from([b"", b"\0"]))

    def payload() -> bytes:
        return _blob(public()) + _blob(secret()) + tail

    protection = draw(st.sampled_from([0, 0, 0, 1, 1, 1, 2, 255]))
    if protection != 1:
        return _seal(fields, lambda: bytes([protection]) + payload())
    salt = draw(st.binary(min_size=16, max_size=16))
    costs = draw(
        st.sampled_from([(15, 8, 1)] * 4 + [(20, 16, 4), (14, 8, 1), (255, 255, 255), (0, 0, 0)])
        | st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))
    )
    nonce = draw(st.binary(min_size=12, max_size=12))
    # Sealed under the header actually written (a valid tag), or under the real one.
    aad_fields = draw(st.sampled_from([fields, {**fields, **_fields_of(envelope)}]))
    try:
        aad = keyfile._aad(
            str(aad_fields["scheme"]),
            aad_fields["fingerprint"],  # type: ignore[arg-type]
            str(aad_fields["params"]),
        )
    except ValueError:  # a scheme name with ';' or '=': the loader refuses it by name
        aad = b""
    key = keyfile._derive(_PASSPHRASE, salt)

    def sealed() -> bytes:
        return ChaCha20Poly1305(key).encrypt(nonce, payload(), aad)

    ciphertext = _mutated(draw, sealed) if draw(st.booleans()) else sealed
    head = bytes([1]) + salt + bytes(costs) + nonce
    return _seal(fields, lambda: head + ciphertext())


def _own_vector(name: str) -> bytes:
    """A real vector made under the fuzzed key itself (not another preset's)."""
    fingerprint = _keys()[name].public.fingerprint
    return next(d for d in _of("vector", name) if wire.open_envelope(d).fingerprint == fingerprint)


def _header_of(real: bytes) -> dict[str, object]:
    envelope = wire.open_envelope(real)
    return _fields_of(envelope) | {"kind": envelope.kind}


def _fields_of(envelope: wire.Envelope) -> dict[str, object]:
    return {
        "scheme": envelope.scheme,
        "params": envelope.params,
        "fingerprint": envelope.fingerprint,
    }


def _ciphertexts(draw: st.DrawFn, name: str, payload: bytes) -> Build:
    """A scheme's vector payload: an honest one, or one built from hostile pieces."""
    pair = _keys()[name]
    if name == "plain":
        w = wire.Writer()
        w.uint(draw(st.sampled_from([0, 1, 3, 2**64 - 1])))
        values = draw(
            st.lists(
                st.sampled_from([0.0, 1.0, -1.0, np.nan, np.inf, 1e308, -1e308]),
                max_size=10,
            )
        )
        w.array(np.array(values, dtype=np.float64))
        return _one_of(draw, [_const(payload), _const(w.getvalue())])
    if name.startswith("paillier"):
        key = pair.public
        width = key._width  # type: ignore[attr-defined]
        n = int(key.n)  # type: ignore[attr-defined]
        pieces = draw(
            st.lists(
                st.sampled_from([0, 1, n, n * n - 1, n * n, 256**width - 1, n + 1])
                | st.integers(0, 256**width - 1),
                max_size=12,
            )
        )
        built = b"".join(v.to_bytes(width, "big") for v in pieces)
        return _one_of(draw, [_const(payload), _const(built), lambda: payload + built])
    foreign = _payloads()["ckks-foreign"][0]  # a chunk of another preset
    options = [payload, foreign, b"", _blob(b"")]
    return _one_of(draw, [*map(_const, options), lambda: payload + foreign])


@st.composite
def _vector_envelope(draw: st.DrawFn, name: str) -> Build:
    """A vector under the fuzzed key: its header mostly intact, its body hostile.

    The header must match the key for the body to be read at all, so it is the
    key's own three times in four; the shape is the payload's own or an extreme.
    """
    real = _own_vector(name)
    fields = _header(draw, real) if draw(st.integers(1, 4)) == 1 else _header_of(real)
    index = draw(st.integers(0, len(_SIZES) - 1))
    extremes = st.sampled_from([0, 1, 2, 4095, 4096, 2**32, 2**63, 2**64 - 1])
    size = _sometimes(draw, _SIZES[index], extremes, odds=3)
    count = _sometimes(draw, draw(st.sampled_from([1, 2, 64])), st.sampled_from([0, 65, 2**64 - 1]))
    shape = wire.Writer()
    shape.uint(size)
    shape.uint(count)
    head = shape.getvalue()
    payload = _ciphertexts(draw, name, _payloads()[name][index])

    def body() -> bytes:
        return head + payload()

    return _seal(fields, _mutated(draw, body) if draw(st.booleans()) else body)


# Guards -------------------------------------------------------------------------


class _BoundedScrypt:
    """Stands in for scrypt: refuses any cost but the written one, derives cheaply."""

    def __init__(self, *, salt: bytes, length: int, n: int, r: int, p: int) -> None:
        assert (n, r, p) == (2**15, 8, 1), f"scrypt asked for n={n}, r={r}, p={p}"
        self._salt, self._length = salt, length

    def derive(self, passphrase: bytes) -> bytes:
        return hashlib.blake2b(passphrase + self._salt, digest_size=self._length).digest()


def _forbidden(what: str) -> Callable[..., object]:
    def refuse(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"{what} while loading hostile bytes")

    return refuse


@pytest.fixture
def bounded(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Loading may not generate CKKS keys or build tables; scrypt only at the written cost."""
    _real(), _payloads()  # key generation and encryption happen here, before the guards
    monkeypatch.setattr(keyfile, "Scrypt", _BoundedScrypt)
    monkeypatch.setattr(ts, "context", _forbidden("CKKS key generation"))
    monkeypatch.setattr(djn.FixedBase, "__init__", _forbidden("a fixed-base table"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    yield
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    assert grown < MEMORY_BOUND, f"peak memory grew by {grown >> 20} MiB"


def _check_loaded_key(key: object) -> None:
    """A Paillier key that loads has a supported size, so its table fits the budget."""
    if isinstance(key, PaillierPublicKey):
        bits = int(key.n).bit_length()
        assert bits == key.scheme.key_bits <= MAX_KEY_BITS
        window = djn.table_window(2 * bits, key.scheme.randomness_bits)
        assert djn.table_bytes(2 * bits, key.scheme.randomness_bits, window) <= (
            djn.TABLE_BUDGET_BYTES
        )


def _frames_of(body: bytes) -> list[bytes]:
    """A vector body as stream frames: the shape, then each length-prefixed chunk.

    A payload that is not a sequence of chunks (Paillier, plain, or garbled) goes
    as one frame, as those schemes write it.
    """
    frames = [body[:16], body[16:]]
    try:
        r = wire.Reader(body[16:], "payload")
        chunks = []
        while r.remaining:
            chunks.append(r.blob())
        frames = [body[:16], *chunks]
    except HEFedError:
        pass
    return [frame for frame in frames if frame]


def _only_hefed(load: Callable[[], object]) -> object | None:
    with contextlib.suppress(HEFedError):
        return load()
    return None


# Tests ---------------------------------------------------------------------------


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("family", sorted(FAST_SCHEMES))
def test_load_public_field_by_field(bounded, examples, family):
    @settings(_SETTINGS, max_examples=examples)
    @given(recipe=_public_envelope(family))
    def run(recipe: Build) -> None:
        data = recipe()
        _check_loaded_key(_only_hefed(lambda: load_public(data, allow_insecure=True)))
        _check_loaded_key(_only_hefed(lambda: load_public(data)))

    run()


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("family", sorted(FAST_SCHEMES))
def test_load_secret_field_by_field(bounded, examples, family):
    @settings(_SETTINGS, max_examples=examples)
    @given(
        recipe=_secret_envelope(family), passphrase=st.sampled_from([_PASSPHRASE, b"wrong", None])
    )
    def run(recipe: Build, passphrase: bytes | None) -> None:
        data = recipe()
        loaded = _only_hefed(lambda: load_secret(data, passphrase=passphrase, allow_insecure=True))
        if loaded is not None:
            _check_loaded_key(loaded.public)  # type: ignore[attr-defined]

    run()


@pytest.mark.parametrize("examples", RUNS)
@pytest.mark.parametrize("name", sorted(FAST_SCHEMES))
def test_load_vector_field_by_field(bounded, examples, name):
    """Envelopes and streams of every scheme; what loads must also decrypt or refuse."""
    pair = _keys()[name]
    aggregation = load_public(pair.public.aggregation_key().to_bytes(), allow_insecure=True)

    def use(vector: object) -> None:
        pair.secret.decrypt_weighted(vector)  # type: ignore[arg-type]
        aggregation.sum_commitments([vector.commitment()], vector.size)  # type: ignore[attr-defined]

    @settings(_SETTINGS, max_examples=examples)
    @given(recipe=_vector_envelope(name), streamed=st.booleans())
    def run(recipe: Build, streamed: bool) -> None:
        data = recipe()
        if streamed:  # the same header fields and pieces, as a stream of frames
            envelope = wire.open_envelope(data)
            buffer = io.BytesIO()
            frames = FrameWriter(buffer, envelope.kind, **_fields_of(envelope))  # type: ignore[arg-type]
            for piece in _frames_of(envelope.body):
                frames.write(piece)
            frames.close()
            buffer.seek(0)
            for key in (aggregation, pair.public):
                vector = _only_hefed(lambda k=key: k.read_vector_from(buffer))
                buffer.seek(0)
                if vector is not None:
                    _only_hefed(lambda v=vector: use(v))
            return
        for key in (aggregation, pair.public):
            vector = _only_hefed(lambda k=key: k.load_vector(data))
            if vector is not None:
                _only_hefed(lambda v=vector: use(v))

    run()
