"""CKKS on TenSEAL, for aggregation only.

Secure aggregation only adds ciphertexts, so nothing here pays for multiplication:

* the aggregation presets use the shortest modulus chain SEAL allows (one data
  prime and a special prime), so ciphertexts are small and encryption and
  decryption are quick;
* clients get a public context with the encryption key and no Galois or
  relinearization keys;
* the aggregator gets the encryption parameters alone: TenSEAL loads and adds
  CKKS ciphertexts with nothing more, and such a context holds no key at all.

Presets, all at the 128-bit level of the HE standard (checked when a scheme is
built; SEAL enforces it too). For a 100-client sum of values in [-1, 1] (plan
``clip=1, max_clients=100``): the scale ``Delta`` and the grid step the plan gets,
and, from one run of ``benchmarks/ckks_speed.py``
(``benchmarks/results/ckks_speed.json``), bytes per value and the largest error
of the released sum against the real one; the RMS error is
:attr:`CKKS.error_budget`'s prediction, which that run matches. Every release is
exactly the sum of the values on the grid, so what is left is the clients'
rounding onto it (before the grid, with CKKS's error released as it was: RMS
6.2e-9, 1.6e-6 and 1.2e-8, largest 5.8e-8, 1.0e-5 and 7.9e-8):

====================  =====  ============  ======  =====  ======  ===========  ======  =========
preset                N      primes        values  Delta  step    bytes/value  RMS     max error
====================  =====  ============  ======  =====  ======  ===========  ======  =========
aggregation-fast      4096   [60, 49]      4096    2^21   2^-24   16.0         1.7e-7  6.4e-7
aggregation-compact   2048   [40, 14]      2048    2^20   2^-11   12.0         1.4e-3  5.4e-3
compat-nvflare        8192   [60, 40, 40]  8192    2^22   2^-23   28.7         3.4e-7  1.2e-6
====================  =====  ============  ======  =====  ======  ===========  ======  =========

(``values``: per ciphertext. The key holder refuses a value further than
``tau = 1/4`` from its integer; an honest sum has one with probability at most
``2**-40`` per release.)

``aggregation-fast`` is the default. ``aggregation-compact`` spends its 54-bit
budget on one 40-bit data prime and the smallest special prime SEAL can find
(12289): the special prime only divides the encryption noise, which needs no more
for additions. Its ciphertexts are smaller (fewer bytes per value, and half as many
values each), but its 40-bit modulus leaves little room for a grid once the scale
has room for rounding: coarse for a hundred clients, and in one slot none for the
wide plans of standardisation statistics (a clip of ``(max_clients * max_weight)**2``), which take
digits (below). ``compat-nvflare`` is
NVIDIA FLARE's parameter set, for comparison; its larger modulus buys nothing,
since every sum times the scale stays below ``2**52`` anyway.

Encoding. Each value ``x`` becomes the integer ``round(x * 2**grid_bits)``
(:attr:`CKKS.quantizer`), which is multiplied by the contribution's integer
weight; the weight rides as one extra value, and the integers are split into
chunks of ``N`` values, one ciphertext each: consecutive values ``(a, b)`` fill
one complex slot ``a + bi`` (TenSEAL's vectors take reals only, one per slot, so
encoding and encryption go through ``tenseal.sealapi``, and the SEAL ciphertext is
wrapped in TenSEAL's format, which loads and adds it unchanged). All clients use
one scale, ``2**encode_scale_bits``: the smallest at which the key holder can
round every decrypted value of every sum the plan allows to its integer, except
with probability ``2**-40`` per release. The grid is then the finest that keeps
every such sum, times the scale, below a quarter of the data modulus and below
``2**52``. ``grid_bits`` is written in every header, so bytes of the unrounded
encoding (format version 2 without it) are refused. A plan that cannot fit, or
whose grid would resolve fewer than 16 levels up to the clip bound, is refused
when it is built, with the knob to turn.

Digits. A slot carries at most ``capacity = min(q/4, 2**52) // (max_clients *
max_weight * Delta)`` per contribution, which caps the grid of wide plans: the
standardisation moments (five clients of weight up to 128: ``clip=409600``) would
get 2^-5 at aggregation-fast and no grid at aggregation-compact, and their variance
``m2 - m1**2`` cancels most of that away. A plan may ask for ``precision_bits``
(the moments round asks for 44, :func:`he_fed.protocol.tasks.plan_for`). When
one slot's finest grid is coarser, each grid integer is written as ``digits``
balanced digits of base ``B = 2**digit_bits`` (the largest with ``B/2 <=
capacity``), one slot each, a value's digits side by side, on the finest grid the
fewest sufficient digits hold (:class:`~he_fed.crypto._ckks_grid.GridQuantizer`).
For those moments:

====================  ==========  ======  =====  ============================
preset                digit_bits  digits  step   columns in one ciphertext
====================  ==========  ======  =====  ============================
aggregation-fast      24          3       2^-53  680
aggregation-compact   11          6       2^-47  169
compat-nvflare        23          3       2^-50  1363
====================  ==========  ======  =====  ============================

Each digit slot is an integer sum like any other, at the same scale, under the
same checks; the key holder also checks each digit total against the weight times
its digit's bound, recombines the totals exactly in Python integers, checks the
value against ``weight * levels`` and releases it rounded once to a double. The
cost is slots: ``n`` values take ``ceil((digits * n + 1 + r) / N)`` ciphertexts,
``r`` the blinding's slots (:meth:`CKKS.ciphertexts_for`). The moments take two
values per column, so up to the columns above they fit one ciphertext; beyond,
``digits`` times as many. Training plans keep one digit, and every byte.

Decryption. The key holder decodes every value of every ciphertext, rounds each
to the nearest integer, refuses the aggregate if any lies off the grid, fills an
empty slot, or leaves the plan's range, and releases the integer sums (recombined
from their digits) times the grid step: the exact sum of what the clients
encoded, like Paillier's, and a function of the plaintext alone, so the
Li-Micciancio key-recovery attack has nothing to work on
(:mod:`he_fed.crypto._ckks_grid`; ``DESIGN.md``, "CKKS releases").
:attr:`CKKS.error_budget` predicts the decryption error that rounding removes and
the grid's rounding that remains (:mod:`he_fed.crypto.ckks_budget`).

Bytes. ``to_bytes`` writes one envelope; ``write_to`` streams one frame per
ciphertext (:mod:`he_fed.crypto.stream`), and ``PublicKey.encrypt_to`` encrypts
straight into such a stream, one ciphertext in memory at a time (for a million
values, 8 MiB above the client's start, against 17 to 47 MiB in runs of
``benchmarks/ckks_large.py`` when every ciphertext is held before streaming).
Loaders accept a chunk only if it has the expected length, two polynomials, a
non-transparent form, the first data level and the plan's scale; another level or
scale raises ``KeyMismatchError``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import tenseal as ts
import tenseal.sealapi as sealapi

from he_fed._validation import check_int
from he_fed.crypto import _ckks_binding, wire
from he_fed.crypto._ckks_grid import (
    MAX_DIGITS,
    MAX_GRID_BITS,
    MIN_GRID_BITS,
    GridQuantizer,
    digits_for,
    finest_grid,
)
from he_fed.crypto._ckks_keys import (
    CKKSAggregationKey,
    CKKSPublicKey,
    CKKSSecretKey,
    CKKSVector,
    _load_secret_context,
    _seal_public,
)
from he_fed.crypto._exact_cache import exact_cache
from he_fed.crypto.base import (
    AggregationKey,
    KeyPair,
    Scheme,
)
from he_fed.crypto.ckks_budget import EXACT_FLOAT, ErrorBudget, scale_bits_for
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    InsecureParameters,
    MalformedMessage,
)

__all__ = [
    "CKKS",
    "CKKSAggregationKey",
    "CKKSPublicKey",
    "CKKSSecretKey",
    "CKKSVector",
    "PRESETS",
]


@dataclass(frozen=True)
class _Preset:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: tuple[int, ...]
    scale_bits: int
    summary: str


#: Named parameter sets (see the module docstring for sizes and errors).
PRESETS: dict[str, _Preset] = {
    "aggregation-fast": _Preset(
        4096, (60, 49), 40, "N=4096, one 60-bit data prime; the default for aggregation"
    ),
    "aggregation-compact": _Preset(
        2048, (40, 14), 40, "N=2048, one 40-bit data prime; smaller ciphertexts, ~1e-5 error"
    ),
    "compat-nvflare": _Preset(8192, (60, 40, 40), 40, "NVIDIA FLARE's parameters, for comparison"),
}


@exact_cache(maxsize=64)
def _primes(poly_modulus_degree: int, bit_sizes: tuple[int, ...]) -> tuple[int, ...]:
    """The primes SEAL picks for these bit sizes (TenSEAL calls the same function)."""
    try:
        moduli = sealapi.CoeffModulus.Create(poly_modulus_degree, list(bit_sizes))
    except (RuntimeError, ValueError) as exc:
        raise ConfigurationError(
            f"SEAL cannot find primes of {list(bit_sizes)} bits for N={poly_modulus_degree}: "
            f"{exc} (each prime must be 1 mod 2N; use larger bit sizes)"
        ) from None
    return tuple(int(m.value()) for m in moduli)


@dataclass(frozen=True, kw_only=True)
class CKKS(Scheme):
    """CKKS encryption of integers on a grid (TenSEAL), with addition-only contexts.

    Parameters
    ----------
    preset : str, default="aggregation-fast"
        Named parameters (see :data:`PRESETS`). Explicit ``poly_modulus_degree``,
        ``coeff_mod_bit_sizes`` and ``scale_bits`` override it.
    poly_modulus_degree : int, optional
        Ring dimension ``N``, a power of two from 1024 to 32768; a ciphertext holds
        ``N`` integers, two per complex slot: ``N`` values, or ``N / digits``.
    coeff_mod_bit_sizes : tuple of int, optional
        Bit sizes of the coefficient-modulus primes. The last is the special prime
        (14 to 60 bits); the others (20 to 60 bits) form the data modulus that sums
        must fit in. Their total must meet the 128-bit bound for ``N`` (54 bits at
        N=2048, 109 at 4096, 218 at 8192), or :class:`InsecureParameters` is raised.
    scale_bits : int, optional
        Largest encoding scale allowed, ``2**scale_bits`` (20 to 60). The plan uses
        the smallest scale at which its sums round correctly (see
        :attr:`encode_scale_bits`).
    grid_bits : int, default=0
        Values are quantized to multiples of ``2**-grid_bits`` (see
        :attr:`quantizer`). 0 picks the finest grid the plan fits in
        :attr:`digits` slots per value, which is what headers then carry; an
        explicit value must fit too. :meth:`with_plan` picks it afresh unless given.
    precision_bits : int, default=0
        The grid must be at least this fine: ``grid_bits >= precision_bits``. 0
        asks for nothing, and each value takes one slot. When one slot's grid is
        coarser, each value is split into the fewest digits that reach it
        (:attr:`digits`), on the finest grid those digits hold. Written in headers
        when not 0. The statistics rounds ask for 40
        (:func:`he_fed.protocol.tasks.plan_for`).
    clip, max_clients, max_weight
        The encoding plan (see :class:`~he_fed.crypto.base.Scheme`).

    Raises
    ------
    InsecureParameters
        If the modulus is too large for 128-bit security at this ``N``.
    EncodingOverflowError
        If the plan's sums cannot fit the data modulus on a fine enough grid.
    ConfigurationError
        For any other invalid parameter.
    """

    preset: str = field(default="aggregation-fast", compare=False, metadata={"wire": False})
    poly_modulus_degree: int = 0
    coeff_mod_bit_sizes: tuple[int, ...] = ()
    scale_bits: int = 0
    grid_bits: int = 0
    precision_bits: int = field(default=0, metadata={"omit": 0})

    name: ClassVar[str] = "ckks"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset not in PRESETS:
            raise ConfigurationError(
                f"unknown CKKS preset {self.preset!r}; choose one of {sorted(PRESETS)}"
            )
        preset = PRESETS[self.preset]
        for name in ("poly_modulus_degree", "coeff_mod_bit_sizes", "scale_bits"):
            if not getattr(self, name):
                object.__setattr__(self, name, getattr(preset, name))
        object.__setattr__(self, "coeff_mod_bit_sizes", tuple(self.coeff_mod_bit_sizes))
        self._check_parameters()
        object.__setattr__(self, "grid_bits", self._fit_grid())

    def _check_parameters(self) -> None:
        n, bits = self.poly_modulus_degree, self.coeff_mod_bit_sizes
        if isinstance(n, bool) or not isinstance(n, int) or not 1024 <= n <= 32768 or n & (n - 1):
            raise ConfigurationError(
                "poly_modulus_degree must be a power of two from 1024 to 32768"
            )
        if (
            len(bits) < 2
            or not all(isinstance(b, int) and not isinstance(b, bool) for b in bits)
            or not all(20 <= b <= 60 for b in bits[:-1])
            or not 14 <= bits[-1] <= 60
        ):
            raise ConfigurationError(
                "coeff_mod_bit_sizes needs data primes of 20 to 60 bits and a last, special "
                f"prime of 14 to 60 bits, got {list(bits)}"
            )
        allowed = sealapi.CoeffModulus.MaxBitCount(n, sealapi.SEC_LEVEL_TYPE.TC128)
        if sum(bits) > allowed:
            raise InsecureParameters(
                f"primes of {list(bits)} bits ({sum(bits)} in all) exceed the {allowed} bits "
                f"the HE standard allows at N={n} for 128-bit security; SEAL refuses them "
                "(use fewer or smaller primes, or a larger poly_modulus_degree)"
            )
        limits = (
            ("scale_bits", 20, 60),
            ("grid_bits", 0, MAX_GRID_BITS),
            ("precision_bits", 0, MAX_GRID_BITS),
        )
        for name, low, high in limits:
            check_int(name, getattr(self, name), low=low, high=high, bounds=f"from {low} to {high}")
        _primes(n, bits)

    @cached_property
    def _capacity(self) -> int:
        """Largest magnitude one contribution may put in a slot.

        Every slot of every sum, times the scale, must stay below a quarter of the
        data modulus, so that decoding (which centres modulo ``q``) never wraps
        around, and below ``2**52``, where doubles hold every integer and SEAL's
        double-precision decoding is as exact as the error budget assumes.
        """
        room = min((self.data_modulus - 1) // 4, EXACT_FLOAT - 1)
        return room // (self.max_clients * self.max_weight << self.encode_scale_bits)

    @property
    def digit_bits(self) -> int:
        """Bits of the digit base ``B``: the largest with ``B/2 <= capacity`` (balanced digits)."""
        return self._capacity.bit_length()

    @cached_property
    def digits(self) -> int:
        """Slots per value: 1, unless the finest one-slot grid is coarser than ``precision_bits``.

        Then the fewest digits whose finest grid reaches it
        (:func:`~he_fed.crypto._ckks_grid.digits_for`).
        """
        digits = digits_for(self.clip, self._capacity, self.precision_bits)
        if not digits:
            raise EncodingOverflowError(
                f"precision_bits={self.precision_bits} is out of reach: sums of up to "
                f"{self.max_clients} contributions of weight up to {self.max_weight}, at the "
                f"scale 2^{self.encode_scale_bits} that rounding them needs, leave room for "
                f"digits of {self.digit_bits} bits (at least {MIN_GRID_BITS + 1} are needed), "
                f"and a value takes {MAX_DIGITS} at most; lower precision_bits, clip, "
                "max_clients or max_weight"
            )
        return digits

    def _fit_grid(self) -> int:
        """The grid bits: the finest grid on which every sum the plan allows fits.

        Every slot of such a sum must stay within :attr:`_capacity` per contribution:
        with one slot per value, the grid integer ``levels`` itself; with
        :attr:`digits` above 1, every digit (:attr:`GridQuantizer.digit_bounds`).
        """
        if self.encode_scale_bits > self.scale_bits:
            raise EncodingOverflowError(
                f"rounding sums of max_clients={self.max_clients} contributions needs a "
                f"scale of 2^{self.encode_scale_bits}, above scale_bits={self.scale_bits}; "
                "raise scale_bits or lower max_clients"
            )
        digits = self.digits
        finest = finest_grid(self.clip, self._capacity, digits, self.digit_bits)
        if finest < 0:
            limit = (
                "2^52"
                if self.data_modulus // 4 >= EXACT_FLOAT
                else f"a quarter of the {self.data_bits}-bit data modulus"
            )
            raise EncodingOverflowError(
                f"sums of up to {self.max_clients} contributions of weight up to "
                f"{self.max_weight} and values up to {self.clip:g}, at the scale "
                f"2^{self.encode_scale_bits} that rounding them needs, do not stay below "
                f"{limit} on a grid of at least {2**MIN_GRID_BITS} levels up to the clip "
                "bound; lower clip, max_clients or max_weight, ask for precision_bits (which "
                "splits values into digits), or use a preset with a larger data modulus "
                "(aggregation-fast)"
            )
        chosen = self.grid_bits or finest
        if not (
            self.precision_bits <= chosen <= finest
            and GridQuantizer(chosen, self.clip).levels >= 2**MIN_GRID_BITS
        ):
            raise EncodingOverflowError(
                f"grid_bits={chosen} does not suit this plan: its sums fit grids of "
                f"{finest} bits or fewer in {digits} slot(s) per value, with at least "
                f"{2**MIN_GRID_BITS} levels up to the clip bound and at least "
                f"precision_bits={self.precision_bits}; change grid_bits, or leave it 0 to "
                "pick the finest"
            )
        return chosen

    def with_plan(self, **changes: Any) -> CKKS:
        """The same parameters under another plan, on the finest grid it fits.

        ``grid_bits`` is picked afresh unless ``changes`` sets it.
        """
        changes.setdefault("grid_bits", 0)
        return super().with_plan(**changes)

    @property
    def slots(self) -> int:
        """CKKS slots per ciphertext, ``poly_modulus_degree / 2`` (complex numbers)."""
        return self.poly_modulus_degree // 2

    @property
    def values_per_ciphertext(self) -> int:
        """Integers per ciphertext, ``poly_modulus_degree``: two per complex slot.

        A vector's values, and its weight, when each value takes one slot; with
        :attr:`digits` above 1, a value's digits are what fill them (see
        :meth:`encoded_length`).
        """
        return self.poly_modulus_degree

    def encoded_length(self, size: int) -> int:
        """Integers a vector of ``size`` values encrypts: its digits, weight and blinding."""
        return self.digits * size + 1 + _ckks_binding.blinding_slots(self)

    def ciphertexts_for(self, size: int) -> int:
        """Ciphertexts a vector of ``size`` values takes: ``ceil(encoded_length / N)``."""
        return -(-self.encoded_length(size) // self.values_per_ciphertext)

    @property
    def data_bits(self) -> int:
        """Bits of the data modulus (all primes but the special one)."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def primes(self) -> tuple[int, ...]:
        """The primes SEAL picks for ``coeff_mod_bit_sizes``; the last is the special prime."""
        return _primes(self.poly_modulus_degree, self.coeff_mod_bit_sizes)

    @property
    def data_modulus(self) -> int:
        """The data modulus ``q``: the product of SEAL's data primes."""
        return math.prod(self.primes[:-1])

    @cached_property
    def encode_scale_bits(self) -> int:
        """Scale actually used, ``Delta = 2**encode_scale_bits``.

        The smallest at which every decrypted value of every sum of up to
        ``max_clients`` contributions lies within 1/4 of its integer, except with
        probability ``2**-40`` per release (:func:`~he_fed.crypto.ckks_budget.scale_bits_for`):
        a larger scale would only leave room for a coarser grid.
        """
        return scale_bits_for(self.poly_modulus_degree, self.primes[-1], self.max_clients)

    @property
    def reach(self) -> float:
        """The digits' reach (:attr:`GridQuantizer.reach`) in real units."""
        return self.quantizer.reach * self.quantizer.step

    @cached_property
    def quantizer(self) -> GridQuantizer:
        """How values become integers: ``round(x * 2**grid_bits)``, within the clip bound.

        In :attr:`digits` digits of base ``2**digit_bits`` when more than one.
        """
        if self.digits == 1:
            return GridQuantizer(self.grid_bits, self.clip)
        return GridQuantizer(self.grid_bits, self.clip, self.digits, self.digit_bits)

    @cached_property
    def error_budget(self) -> ErrorBudget:
        """The errors of this plan's sums: the decryption's, rounded away, and the grid's."""
        return ErrorBudget(
            poly_modulus_degree=self.poly_modulus_degree,
            special_prime=self.primes[-1],
            scale_bits=self.encode_scale_bits,
            grid_bits=self.grid_bits,
            clip=self.clip,
        )

    def _new_context(self) -> ts.Context:
        try:
            ctx = ts.context(
                ts.SCHEME_TYPE.CKKS,
                poly_modulus_degree=self.poly_modulus_degree,
                coeff_mod_bit_sizes=list(self.coeff_mod_bit_sizes),
            )
        except (ValueError, RuntimeError) as exc:  # __post_init__ checks what SEAL does
            raise ConfigurationError(
                f"SEAL refused N={self.poly_modulus_degree} with primes "
                f"{list(self.coeff_mod_bit_sizes)}: {exc}"
            ) from None
        ctx.global_scale = 2.0**self.scale_bits
        return ctx

    def keygen(self) -> KeyPair:
        """Generate a secret context; the public side gets keys for encryption only."""
        secret_ctx = self._new_context()
        public = CKKSPublicKey(self, _seal_public(secret_ctx))
        return KeyPair(public, CKKSSecretKey(public, secret_ctx))

    @classmethod
    def _load_secret(cls, public: CKKSPublicKey, body: bytes) -> CKKSSecretKey:
        if not body:
            raise MalformedMessage("empty ckks secret context")
        return CKKSSecretKey(public, _load_secret_context(public, body))

    @classmethod
    def _load_key(cls, envelope: wire.Envelope, scheme: Any) -> AggregationKey:
        r = wire.Reader(envelope.body, "ckks key")
        blob = r.blob()
        r.finish()
        if envelope.kind is wire.Kind.PUBLIC_KEY:
            key: AggregationKey = CKKSPublicKey(scheme, blob)
            if key.fingerprint != envelope.fingerprint:
                raise MalformedMessage("ckks key fingerprint does not match its context")
            return key
        if len(envelope.fingerprint) != 32:
            raise MalformedMessage("ckks aggregation key lacks a fingerprint")
        return CKKSAggregationKey(scheme, blob, envelope.fingerprint)
