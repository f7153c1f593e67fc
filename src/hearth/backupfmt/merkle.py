"""The Merkle tree over resource versions' (sequence, MAC) pairs (RFC 6962 section 2.1).

Construction, version 1 (``"rfc6962-sha256"`` with leaf context ``hearth.backup.leaf.v1``)::

    leaf(seq, mac) = SHA-256(0x00 || "hearth.backup.leaf.v1" || u64be(seq) || u8(len(mac)) || mac)
    node(l, r)     = SHA-256(0x01 || l || r)
    MTH([])        = SHA-256("")
    MTH(D[n])      = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of two below n

The 0x00/0x01 prefixes are RFC 6962's domain separation of leaves from interior nodes, so no
leaf can be passed off as a node (second-preimage). Leaves are added in ascending sequence order.

A tree of ``n`` leaves is a run of perfect subtrees ("peaks") whose sizes are the set bits of
``n``, largest first; the root folds them from the right: ``node(p0, node(p1, ... p_last))``.
Manifests carry the peaks of the whole chain so that an incremental backup extends its
predecessor's tree without reading old segments, and a restore of the chain compares one root.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Sequence

from hearth.domain import HearthError
from hearth.domain.errors import BACKUP_ARGUMENT

__all__ = [
    "CONSTRUCTION",
    "LEAF_CONTEXT",
    "MerkleBuilder",
    "leaf_hash",
    "node_hash",
    "rfc6962_root",
]

CONSTRUCTION = "rfc6962-sha256"
LEAF_CONTEXT = b"hearth.backup.leaf.v1"
_SEQ_LEN = struct.Struct(">QB")
EMPTY_ROOT = hashlib.sha256(b"").digest()
#: SHA-256 state after the leaf prefix, copied for each leaf (a full backup hashes one leaf per
#: resource version).
_LEAF_PREFIX = hashlib.sha256(b"\x00" + LEAF_CONTEXT)


def leaf_hash(sequence: int, mac: bytes) -> bytes:
    """The leaf hash of one resource version (sequence number and its stored MAC)."""
    if not 0 <= sequence < 2**64 or not 0 < len(mac) < 256:
        raise HearthError(BACKUP_ARGUMENT, "A Merkle leaf needs a u64 sequence and a MAC.")
    state = _LEAF_PREFIX.copy()
    state.update(_SEQ_LEN.pack(sequence, len(mac)))
    state.update(mac)
    return state.digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def rfc6962_root(leaf_data: Sequence[bytes]) -> bytes:
    """MTH of raw leaf inputs, recursively as RFC 6962 states it (reference for the tests)."""
    n = len(leaf_data)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashlib.sha256(b"\x00" + leaf_data[0]).digest()
    k = 1 << ((n - 1).bit_length() - 1)
    return node_hash(rfc6962_root(leaf_data[:k]), rfc6962_root(leaf_data[k:]))


def _peak_sizes(leaves: int) -> list[int]:
    return [1 << bit for bit in range(leaves.bit_length() - 1, -1, -1) if leaves >> bit & 1]


class MerkleBuilder:
    """An append-only RFC 6962 tree kept as its peaks: O(log n) memory for any number of leaves.

    ``MerkleBuilder.resume(leaves, peaks)`` continues a tree from a manifest's chain summary.
    ``add`` enforces strictly ascending sequence numbers.
    """

    __slots__ = ("_last_sequence", "_leaves", "_peaks")

    def __init__(self) -> None:
        self._peaks: list[tuple[int, bytes]] = []
        self._leaves = 0
        self._last_sequence: int | None = None

    @classmethod
    def resume(
        cls, leaves: int, peaks: Sequence[bytes], last_sequence: int | None = None
    ) -> MerkleBuilder:
        sizes = _peak_sizes(leaves)
        if leaves < 0 or len(sizes) != len(peaks) or any(len(p) != 32 for p in peaks):
            raise HearthError(BACKUP_ARGUMENT, "Merkle peaks do not match the leaf count.")
        builder = cls()
        builder._peaks = list(zip(sizes, peaks, strict=True))
        builder._leaves = leaves
        builder._last_sequence = last_sequence
        return builder

    def copy(self) -> MerkleBuilder:
        return MerkleBuilder.resume(self._leaves, self.peaks, self._last_sequence)

    @property
    def leaves(self) -> int:
        return self._leaves

    @property
    def peaks(self) -> list[bytes]:
        return [digest for _, digest in self._peaks]

    def add(self, sequence: int, mac: bytes) -> None:
        self.add_hashed(sequence, leaf_hash(sequence, mac))

    def add_hashed(self, sequence: int, digest: bytes) -> None:
        """``add`` with the leaf hash already computed (one hash fed to several trees)."""
        if self._last_sequence is not None and sequence <= self._last_sequence:
            raise HearthError(BACKUP_ARGUMENT, "Merkle leaves must come in ascending sequence.")
        self._last_sequence = sequence
        self.add_leaf_hash(digest)

    def add_all(self, pairs: Iterable[tuple[int, bytes]]) -> None:
        for sequence, mac in pairs:
            self.add(sequence, mac)

    def add_leaf_hash(self, digest: bytes) -> None:
        peaks = self._peaks
        peaks.append((1, digest))
        # Two perfect subtrees of equal size merge into one twice as large (binary carry);
        # node_hash inline, as this runs once per resource version.
        sha256 = hashlib.sha256
        while len(peaks) >= 2 and peaks[-1][0] == peaks[-2][0]:
            size, right = peaks.pop()
            _, left = peaks.pop()
            peaks.append((size * 2, sha256(b"\x01" + left + right).digest()))
        self._leaves += 1

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        acc = self._peaks[-1][1]
        for _, digest in reversed(self._peaks[:-1]):
            acc = node_hash(digest, acc)
        return acc
