"""The scheme value object: parameters, encoding plan, and their header text.

Private: :mod:`he_fed.crypto.base` re-exports everything here. The keys and vectors
a scheme makes live in :mod:`he_fed.crypto.base`; this module names them only in
annotations, so it sits below them and imports nothing that imports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from he_fed._validation import check_float, check_int
from he_fed.crypto import wire
from he_fed.exceptions import (
    ConfigurationError,
    EncodingOverflowError,
    InsecureParameters,
    MalformedMessage,
)

if TYPE_CHECKING:  # pragma: no cover
    from he_fed.crypto.base import AggregationKey, KeyPair, SecretKey

__all__ = [
    "DEFAULT_CLIP",
    "DEFAULT_MAX_CLIENTS",
    "DEFAULT_MAX_WEIGHT",
    "MAX_CLIP",
    "MAX_COUNT",
    "MIN_CLIP",
    "Scheme",
    "key_fingerprint",
]

#: Default clip bound on each value of a contribution. Model updates of
#: standardised linear models rarely exceed it; clients clip before encrypting.
DEFAULT_CLIP = 4.0
#: Default cap on the number of contributions in one sum.
DEFAULT_MAX_CLIENTS = 1024
#: Default cap on one contribution's weight: 1, i.e. unweighted sums. Weighted
#: protocols (FedAvg weights by sample count) declare their own bound, because a
#: loose bound costs CKKS precision.
DEFAULT_MAX_WEIGHT = 1
#: Range of ``clip``. Within it, ``clip * max_clients * max_weight`` (at most
#: 2**192) and every quantization scale stay finite doubles, so a plan read from a
#: header can never turn into an infinity, a NaN or a math domain error.
MIN_CLIP = 2.0**-64
MAX_CLIP = 2.0**64
#: Largest ``max_clients`` and ``max_weight``: contribution counts and weights
#: travel as u64 fields, so a larger bound could never be written.
MAX_COUNT = 2**64 - 1
#: Longest integer a header may spell (MAX_COUNT has 20 digits).
_MAX_DIGITS = 24
_INTEGER = re.compile(rf"-?[0-9]{{1,{_MAX_DIGITS}}}")

_S = TypeVar("_S", bound="Scheme")


def key_fingerprint(domain: str, *parts: bytes) -> bytes:
    """SHA-256 over a domain label and length-prefixed parts."""
    h = hashlib.sha256(domain.encode())
    for part in parts:
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.digest()


def _parse_int(raw: str) -> int:
    # ASCII digits only: int() would also take " 7", "+7", "7_0" and other scripts'
    # digits, which params_to_text never writes.
    if not _INTEGER.fullmatch(raw):
        raise ValueError(raw)
    return int(raw)


def _parse_field(field: dataclasses.Field[Any], raw: str) -> object:
    kind = str(field.type)
    try:
        if kind == "int":
            return _parse_int(raw)
        if kind == "float":
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(raw)
            return value
        if kind == "bool":
            if raw not in ("0", "1"):
                raise ValueError(raw)
            return raw == "1"
        if kind == "str":
            return raw
        if kind == "tuple[int, ...]":
            return tuple(_parse_int(v) for v in raw.split(",")) if raw else ()
    except ValueError:
        raise MalformedMessage(
            f"parameter {field.name}={raw[:40]!r} is not a valid {kind}"
        ) from None
    raise TypeError(f"unsupported parameter type {kind}")  # pragma: no cover


@dataclass(frozen=True, kw_only=True)
class Scheme(ABC):
    """Parameters of a homomorphic scheme and its encoding plan.

    Parameters
    ----------
    clip : float
        Largest magnitude of any value in a contribution, from ``2**-64`` to
        ``2**64``. ``encrypt`` refuses values beyond it (clients clip first, and
        count what they clipped).
    max_clients : int
        Most contributions one sum may hold, from 1 to ``2**64 - 1``. Adding more
        raises :class:`~he_fed.exceptions.EncodingOverflowError`.
    max_weight : int
        Largest weight of one contribution (for FedAvg, a client's sample count),
        from 1 to ``2**64 - 1``.
    """

    clip: float = DEFAULT_CLIP
    max_clients: int = DEFAULT_MAX_CLIENTS
    max_weight: int = DEFAULT_MAX_WEIGHT

    #: Registry name, written in every header.
    name: ClassVar[str]
    #: True only for the no-encryption baseline.
    insecure: ClassVar[bool] = False

    def __post_init__(self) -> None:
        clip = check_float(
            "clip",
            self.clip,
            low=MIN_CLIP,
            high=MAX_CLIP,
            types=(int, float),
            bounds="from 2**-64 to 2**64",
        )
        object.__setattr__(self, "clip", clip)
        for name in ("max_clients", "max_weight"):
            check_int(
                name, getattr(self, name), low=1, high=MAX_COUNT, bounds="from 1 to 2**64 - 1"
            )

    @abstractmethod
    def keygen(self) -> KeyPair:
        """Generate a fresh key pair under these parameters."""

    @property
    def bound(self) -> float:
        """Largest magnitude a decrypted sum may reach: ``clip * max_clients * max_weight``."""
        return self.clip * self.max_clients * self.max_weight

    @property
    def reach(self) -> float:
        """Largest magnitude one value of a contribution whose range proofs verify can
        have, per unit of weight: the clip (a little above it for CKKS plans of several
        digits, whose digits are proven one by one)."""
        return self.clip

    def params(self) -> dict[str, object]:
        """The public parameters written in every header (not opt-in flags).

        A field whose metadata has ``"omit"`` is left out while it holds that value,
        so that adding such a field leaves existing headers byte for byte as they were.
        """
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.metadata.get("wire", True)
            and not ("omit" in f.metadata and getattr(self, f.name) == f.metadata["omit"])
        }

    def params_text(self) -> str:
        """Canonical text of :meth:`params`."""
        return wire.params_to_text(self.params())

    def with_plan(self: _S, **changes: Any) -> _S:
        """The same scheme with other encoding-plan fields (``clip``, ``max_clients``...)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_params(cls: type[_S], text: str, *, allow_insecure: bool = False) -> _S:
        """Rebuild a scheme from header parameters: the one place a header is validated.

        Every field must be present exactly once, parse as its type, pass the
        scheme's own checks (the ranges and plan checks of ``__post_init__``), and
        be written exactly as :meth:`params_text` writes it, so that one scheme has
        one header.

        Raises
        ------
        MalformedMessage
            If the parameters are malformed, out of range, not in canonical form, or
            describe an impossible plan.
        InsecureParameters
            If they are below the security bar and ``allow_insecure`` is false.
        """
        raw = wire.params_from_text(text)
        wired = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("wire", True)}
        required = {name for name, f in wired.items() if "omit" not in f.metadata}
        if not required <= set(raw) <= set(wired):
            raise MalformedMessage(f"parameters {sorted(raw)} do not describe a {cls.name} scheme")
        kwargs: dict[str, Any] = {k: _parse_field(wired[k], v) for k, v in raw.items()}
        for name in set(wired) - required:
            if name not in kwargs:
                kwargs[name] = wired[name].metadata["omit"]
            elif kwargs[name] == wired[name].metadata["omit"]:  # one text per plan
                raise MalformedMessage(f"parameter {name}={raw[name]} is implied, not written")
        if any(f.name == "allow_insecure" for f in dataclasses.fields(cls)):
            kwargs["allow_insecure"] = allow_insecure
        try:
            scheme = cls(**kwargs)
        except InsecureParameters:
            raise
        except (ConfigurationError, EncodingOverflowError) as exc:
            raise MalformedMessage(f"invalid {cls.name} parameters: {exc}") from None
        if scheme.params_text() != text:
            raise MalformedMessage(
                f"{cls.name} parameters are not in canonical form: {text[:200]!r}"
            )
        return scheme

    @classmethod
    @abstractmethod
    def _load_key(cls, envelope: wire.Envelope, scheme: Any) -> AggregationKey:
        """Build the public or aggregation key an envelope holds."""

    @classmethod
    @abstractmethod
    def _load_secret(cls, public: Any, body: bytes) -> SecretKey:
        """Rebuild the secret key from :meth:`SecretKey._secret_body` output."""
