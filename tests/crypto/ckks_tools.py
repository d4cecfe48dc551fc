"""What CKKS tests need beyond the API: the key holder's unrounded decryption, and a shift.

* :func:`unrounded` decrypts with SEAL directly, from the secret context, and
  decodes every value without rounding: what the key holder computes before it
  rounds, and what it must never release.
* :func:`shifted` is the aggregator's active move: add a known plaintext to ``c0``
  of every ciphertext, leaving ``c1`` (the commitment the key holder checks)
  unchanged. It needs the encryption parameters only, as an aggregator holds.
"""

from __future__ import annotations

import numpy as np
import tenseal.sealapi as sealapi

from he_fed.crypto import _seal_format as seal_format
from he_fed.crypto import _seal_io as seal_io
from he_fed.crypto._ckks_keys import CKKSSecretKey, CKKSVector, _slots_for


def unrounded(secret: CKKSSecretKey, vector: CKKSVector) -> np.ndarray:
    """Every decoded value of every ciphertext, in grid units, before any rounding."""
    context = secret._ctx.seal_context().data
    decryptor = sealapi.Decryptor(context, secret._ctx.secret_key().data)
    encoder = sealapi.CKKSEncoder(context)
    out = []
    for part in vector.parts:
        plain = sealapi.Plaintext()
        decryptor.decrypt(part.ciphertext()[0], plain)
        out.append(np.array(encoder.decode_complex(plain)).view(np.float64))
    return np.concatenate(out)


def encode(key, values: np.ndarray) -> sealapi.Plaintext:
    """``values`` (one ciphertext's worth, in grid units) as a plaintext at the plan's scale."""
    plain = sealapi.Plaintext()
    encoder = sealapi.CKKSEncoder(key.context.seal_context().data)
    pairs = np.asarray(values, dtype=np.float64).view(np.complex128)
    encoder.encode(pairs.tolist(), 2.0**key.scheme.encode_scale_bits, plain)
    return plain


def shifted(key, vector: CKKSVector, offsets: np.ndarray) -> CKKSVector:
    """``vector`` with ``encode(offsets)`` added to ``c0`` of each ciphertext.

    ``offsets`` holds ``N`` values (grid units) per ciphertext, empty slots included.
    """
    per = key.scheme.values_per_ciphertext
    evaluator = sealapi.Evaluator(key.context.seal_context().data)
    scale = 2.0**key.scheme.encode_scale_bits
    blobs = []
    lengths = key._chunk_lengths(vector.size)
    for index, (part, length) in enumerate(zip(vector.parts, lengths, strict=True)):
        ciphertext = part.ciphertext()[0]
        evaluator.add_plain_inplace(
            ciphertext, encode(key, offsets[index * per : (index + 1) * per])
        )
        blobs.append(
            seal_format.write_ckks_vector(seal_io.save(ciphertext), _slots_for(length), scale)
        )
    return CKKSVector(key, vector.size, vector.count, blobs=blobs)
