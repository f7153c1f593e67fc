"""The password blocklist: common, expected and breached passwords (NIST-PW-08, NIST-PW-09).

NIST SP 800-63B-4 sec. 3.1.1.2 requires new passwords to be compared, whole, against a list of
values "known to be commonly used, expected, or compromised". Hearth ships such a list inside the
package (``data/password-blocklist.bin``, built by ``scripts/gen_password_blocklist.py``; the
sources, versions, licences and counts are in ``data/password-blocklist.json`` and
docs/design.md), and adds two rules that no list can enumerate: a password made of one short unit
repeated (``abcabcabcabc``) and a straight run of consecutive characters (``abcdefghijklmnop``).

File format, version 1 (all integers little-endian)::

    magic        8 bytes   b"HRTPWBL" followed by the format version, 0x01
    bucket_bits  u8        b: entries are grouped into 2**b buckets
    rem_bits     u8        r: bits kept per entry beyond the bucket number (16)
    sample       u16       S: one offset is stored for every S buckets
    count        u32       n: number of entries
    digest       32 bytes  SHA-256 of everything after this field
    counts       2**b u8   entries per bucket
    offsets      2**b/S u32  index of the first entry of buckets 0, S, 2S, ...
    remainders   n u16 (big-endian) in bucket order, sorted within each bucket

An entry is the first ``b + r`` bits of SHA-256 of the UTF-8 of the folded password (NFKC, then
case folding); its top ``b`` bits pick the bucket and the next ``r`` are stored. A lookup is O(1):
one SHA-256, at most ``S`` byte additions and a scan of one bucket (four entries on average). The
cost is a false positive rate of about ``n / 2**(b + r)`` (about 6e-5 for the shipped list): one
acceptable password in some 16,000 is refused as listed, and the user simply picks another.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import itertools
import struct
from collections.abc import Iterable

from hearth.auth.normalise import fold

__all__ = [
    "BLOCKLIST_RESOURCE",
    "MIN_ENTRY_LENGTH",
    "Blocklist",
    "encode_blocklist",
    "is_trivial_pattern",
    "shipped_blocklist",
]

BLOCKLIST_RESOURCE = "password-blocklist.bin"

#: Only entries of at least 8 characters are kept: Hearth refuses anything shorter for its
#: length alone (NIST-PW-01), so shorter entries could never change a decision.
MIN_ENTRY_LENGTH = 8

_MAGIC = b"HRTPWBL\x01"
_HEADER = struct.Struct("<8sBBHI32s")
_REM_BITS = 16
_SAMPLE = 256


def _fingerprint(folded: str, bits: int) -> int:
    digest = hashlib.sha256(folded.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - bits)


def _bucket_bits(count: int) -> int:
    # About four entries per bucket: the bucket counts then cost two bits per entry, and the
    # fingerprint is b + 16 bits, with b growing with the list so the false positive rate stays
    # near 4 / 2**16 whatever its size.
    return max(8, count.bit_length() - 2)


def encode_blocklist(entries: Iterable[str]) -> bytes:
    """Encode already folded ``entries`` in format version 1 (module docstring).

    Used by ``scripts/gen_password_blocklist.py`` and by tests, so that the format is written and
    read in this one module. Entries equal after folding, or equal in fingerprint, count once.
    """
    distinct = sorted(set(entries))
    bucket_bits = _bucket_bits(len(distinct))
    bits = bucket_bits + _REM_BITS
    fingerprints = sorted({_fingerprint(e, bits) for e in distinct})
    buckets = 1 << bucket_bits
    counts = bytearray(buckets)
    for fp in fingerprints:
        bucket = fp >> _REM_BITS
        if counts[bucket] == 255:
            raise ValueError("a bucket overflowed; the list is too skewed for this format")
        counts[bucket] += 1
    offsets = bytearray()
    running = 0
    for bucket in range(buckets):
        if bucket % _SAMPLE == 0:
            offsets += struct.pack("<I", running)
        running += counts[bucket]
    remainders = b"".join((fp & 0xFFFF).to_bytes(2, "big") for fp in fingerprints)
    body = bytes(counts) + bytes(offsets) + remainders
    header = _HEADER.pack(
        _MAGIC,
        bucket_bits,
        _REM_BITS,
        _SAMPLE,
        len(fingerprints),
        hashlib.sha256(body).digest(),
    )
    return header + body


class Blocklist:
    """A read-only set of folded passwords, encoded as in the module docstring.

    ``password in blocklist`` folds ``password`` (NFKC, case folding) and looks it up.
    """

    __slots__ = ("_bucket_bits", "_count", "_counts", "_offsets", "_remainders", "_sample")

    def __init__(self, data: bytes) -> None:
        if len(data) < _HEADER.size:
            raise ValueError("the blocklist file is truncated")
        magic, bucket_bits, rem_bits, sample, count, digest = _HEADER.unpack_from(data)
        body = memoryview(data)[_HEADER.size :]
        if magic != _MAGIC or rem_bits != _REM_BITS or sample != _SAMPLE or bucket_bits > 32:
            raise ValueError("not a version 1 Hearth password blocklist")
        if hashlib.sha256(body).digest() != digest:
            raise ValueError("the blocklist file is damaged (digest mismatch)")
        buckets = 1 << bucket_bits
        samples = (buckets + sample - 1) // sample
        if len(body) != buckets + 4 * samples + 2 * count:
            raise ValueError("the blocklist file has the wrong size for its header")
        self._bucket_bits = int(bucket_bits)
        self._sample = int(sample)
        self._count = int(count)
        self._counts = body[:buckets]
        self._offsets = body[buckets : buckets + 4 * samples]
        self._remainders = body[buckets + 4 * samples :]

    def __len__(self) -> int:
        return self._count

    def __contains__(self, password: object) -> bool:
        if not isinstance(password, str):
            return False
        return self.contains_folded(fold(password))

    def contains_folded(self, folded: str) -> bool:
        """Look up a password already folded with :func:`hearth.auth.normalise.fold`."""
        fp = _fingerprint(folded, self._bucket_bits + _REM_BITS)
        bucket = fp >> _REM_BITS
        wanted = (fp & 0xFFFF).to_bytes(2, "big")
        base = bucket - bucket % self._sample
        at = 4 * (base // self._sample)
        start = int.from_bytes(self._offsets[at : at + 4], "little")
        start += sum(self._counts[base:bucket])
        remainders = self._remainders
        for i in range(start, start + self._counts[bucket]):
            if remainders[2 * i : 2 * i + 2] == wanted:
                return True
        return False


@functools.cache
def shipped_blocklist() -> Blocklist:
    """The blocklist shipped with Hearth, read from the package once, on first use."""
    data = importlib.resources.files("hearth.auth").joinpath("data", BLOCKLIST_RESOURCE)
    return Blocklist(data.read_bytes())


def is_trivial_pattern(folded: str) -> bool:
    """Whether ``folded`` is one unit of at most four characters repeated, or a straight run.

    NIST SP 800-63B-4 sec. 3.1.1.2 names "repetitive or sequential characters (e.g. 'aaaaaa',
    '1234abcd')" among the values a blocklist should hold. A list cannot hold every length of
    them, so they are recognised here: ``aaaaaaaaaaaaaaaa``, ``abcabcabcabcabc``, ``0123456789``,
    ``zyxwvutsrqponmlk`` (consecutive code points, rising or falling).
    """
    length = len(folded)
    for unit in range(1, 5):
        if length >= 2 * unit and length % unit == 0 and folded == folded[:unit] * (length // unit):
            return True
    if length < 2:
        return True
    step = ord(folded[1]) - ord(folded[0])
    return step in (1, -1) and all(ord(b) - ord(a) == step for a, b in itertools.pairwise(folded))
