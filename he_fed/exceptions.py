"""Every error he-fed raises on purpose.

One tree, so that callers can catch ``HEFedError`` at an edge (the CLI does) and
never see a traceback from deep inside phe or TenSEAL::

    HEFedError
    ├── ConfigurationError            a bad parameter, flag or file (also a ValueError)
    │   ├── InsecureParameters        parameters below the security bar, without opt-in
    │   └── DatasetError              an unknown dataset, unreadable CSV, bad target
    ├── EncodingError                 a value that cannot be encoded (NaN, infinity)
    │   └── EncodingOverflowError     a plan or a sum that does not fit the plaintext
    ├── KeyMismatchError              bytes made under another key, scheme or plan
    ├── InvalidPassphrase             a secret-key file that will not unlock
    ├── MalformedMessage              truncated, garbled or wrongly typed bytes
    │   └── ShapeMismatchError        a vector of the wrong length
    ├── ProtocolError                 a message out of turn: wrong round, duplicate
    │   ├── InvalidSignature          an update whose signature does not verify
    │   └── InvalidPartialDecryption  too few valid threshold partial decryptions
    ├── PolicyViolation               the key holder refuses to decrypt
    │   ├── AggregateRejected         a decryption the key holder will not release
    │   └── SecretMaterialError       secret material offered to a role that must not hold it
    ├── ExecutorError                 an executor lost its workers or its nodes
    │   └── MissingMainGuard          a script started worker processes without the main guard
    ├── StateError                    a role's state file that fails to verify, or was rolled back
    └── TrainingDiverged              gradient descent produced non-finite weights
"""

from __future__ import annotations

__all__ = [
    "AggregateRejected",
    "ConfigurationError",
    "DatasetError",
    "EncodingError",
    "EncodingOverflowError",
    "ExecutorError",
    "HEFedError",
    "InsecureParameters",
    "InvalidPartialDecryption",
    "InvalidPassphrase",
    "InvalidSignature",
    "KeyMismatchError",
    "MalformedMessage",
    "MissingMainGuard",
    "PolicyViolation",
    "ProtocolError",
    "SecretMaterialError",
    "ShapeMismatchError",
    "StateError",
    "TrainingDiverged",
]


class HEFedError(Exception):
    """Base class of every error he-fed raises on purpose."""


class ConfigurationError(HEFedError, ValueError):
    """A parameter, flag or file that he-fed cannot work with."""


class InsecureParameters(ConfigurationError):
    """Cryptographic parameters below the security bar, used without ``allow_insecure``."""


class DatasetError(ConfigurationError):
    """A dataset that does not exist or cannot be read."""


class EncodingError(HEFedError, ValueError):
    """A value that cannot be encoded into a plaintext (NaN or infinity)."""


class EncodingOverflowError(EncodingError):
    """A plan, a value or a sum that does not fit the plaintext space.

    Raised when a plan is built that could overflow, when a value lies outside the
    plan's clip bound, and when more contributions are added than the plan allows.
    """


class KeyMismatchError(HEFedError):
    """Bytes or objects made under another key, scheme or encoding plan."""


class InvalidPassphrase(HEFedError):
    """A protected secret-key file whose passphrase is missing or wrong, or which was altered."""


class MalformedMessage(HEFedError):
    """Bytes that are truncated, garbled, of another format version or of the wrong kind."""


class ShapeMismatchError(MalformedMessage):
    """A vector whose length differs from the one expected."""


class ProtocolError(HEFedError):
    """A message out of turn: a stale or future round, or a duplicate contribution."""


class InvalidSignature(ProtocolError):
    """An update whose signature does not verify, or whose sender is not registered."""


class InvalidPartialDecryption(ProtocolError):
    """Too few threshold partial decryptions whose proofs verify; names the holders refused.

    Parameters
    ----------
    message : str
        What was wrong.
    holders : tuple of int, default=()
        The share holders whose partial decryptions failed their proofs.
    """

    def __init__(self, message: str, *, holders: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.holders = holders


class PolicyViolation(HEFedError):
    """The key holder's cohort policy refuses to decrypt."""


class AggregateRejected(PolicyViolation):
    """A decrypted aggregate the key holder will not release.

    Its values lie outside what the plan lets honest contributions sum to, off the
    encoding grid, or in slots that must be empty: a malicious client or a tampered
    ciphertext. The message never carries a decrypted value.

    Parameters
    ----------
    message : str
        What was wrong, without any decrypted value.
    off_grid : bool, default=False
        True when the refusal came from a check whose outcome can depend on the
        decryption error (a CKKS value off the integer grid), and so on the secret
        key. A key holder counts these and retires the key after a few (see
        ``DESIGN.md``, "CKKS releases").
    """

    def __init__(self, message: str, *, off_grid: bool = False) -> None:
        super().__init__(message)
        self.off_grid = off_grid


class SecretMaterialError(PolicyViolation):
    """Secret material offered to a role (such as the aggregator) that must never hold it."""


class ExecutorError(HEFedError):
    """An executor lost its worker processes, or its nodes did not connect or answer."""


class MissingMainGuard(ExecutorError):
    """A script started worker processes outside ``if __name__ == "__main__":``.

    Worker processes start with the *spawn* method and import the script that
    started them; without the guard, each would run the script's training again.
    """


class StateError(HEFedError):
    """A role's own state file that cannot be trusted, so the role refuses to act.

    It does not verify (edited, torn, or sealed under other keys), it is older
    than a message the role is shown (rolled back), it is missing, or another
    process holds it.
    """


class TrainingDiverged(HEFedError, FloatingPointError):
    """Gradient descent produced non-finite weights; lower the learning rate."""
