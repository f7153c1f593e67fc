"""The RFC 6962 Merkle tree and its incremental builder."""

from __future__ import annotations

import hashlib

import pytest

from hearth.backupfmt import MerkleBuilder, leaf_hash, node_hash, rfc6962_root
from hearth.backupfmt.merkle import LEAF_CONTEXT
from hearth.domain import HearthError

# The Certificate Transparency reference leaves and roots (RFC 6962 implementations' tests).
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


@pytest.mark.parametrize(("n", "root"), sorted(CT_ROOTS.items()))
def test_reference_implementation_matches_rfc6962_vectors(n: int, root: str) -> None:
    assert rfc6962_root(CT_LEAVES[:n]).hex() == root


def test_builder_matches_ct_vectors_through_raw_leaves() -> None:
    builder = MerkleBuilder()
    for data in CT_LEAVES:
        builder.add_leaf_hash(hashlib.sha256(b"\x00" + data).digest())
    assert builder.root().hex() == CT_ROOTS[8]


def _leaf_data(seq: int) -> bytes:
    mac = hashlib.sha256(b"%d" % seq).digest()
    return LEAF_CONTEXT + seq.to_bytes(8, "big") + bytes((32,)) + mac


@pytest.mark.parametrize("n", [*range(40), 63, 64, 65, 127, 128, 129, 1000])
def test_builder_equals_the_recursive_definition(n: int) -> None:
    builder = MerkleBuilder()
    for seq in range(1, n + 1):
        builder.add(seq, hashlib.sha256(b"%d" % seq).digest())
    assert builder.leaves == n
    assert builder.root() == rfc6962_root([_leaf_data(s) for s in range(1, n + 1)])
    assert len(builder.peaks) == bin(n).count("1")


@pytest.mark.parametrize(("split", "total"), [(0, 5), (1, 2), (3, 4), (7, 19), (16, 33), (40, 40)])
def test_resume_from_peaks_continues_the_same_tree(split: int, total: int) -> None:
    whole = MerkleBuilder()
    part = MerkleBuilder()
    for seq in range(1, total + 1):
        whole.add(seq, b"m%d" % seq)
        if seq <= split:
            part.add(seq, b"m%d" % seq)
    resumed = MerkleBuilder.resume(part.leaves, part.peaks)
    for seq in range(split + 1, total + 1):
        resumed.add(seq, b"m%d" % seq)
    assert resumed.root() == whole.root()
    assert resumed.peaks == whole.peaks


def test_leaves_and_nodes_are_domain_separated() -> None:
    mac = bytes(32)
    leaf = leaf_hash(1, mac)
    payload = LEAF_CONTEXT + (1).to_bytes(8, "big") + bytes((32,)) + mac
    assert leaf == hashlib.sha256(b"\x00" + payload).digest()
    assert leaf != hashlib.sha256(b"\x01" + payload).digest()
    assert node_hash(leaf, leaf) == hashlib.sha256(b"\x01" + leaf + leaf).digest()


def test_sequences_must_ascend() -> None:
    builder = MerkleBuilder()
    builder.add(5, b"m")
    with pytest.raises(HearthError):
        builder.add(5, b"m")
    with pytest.raises(HearthError):
        builder.add(4, b"m")


@pytest.mark.parametrize(("leaves", "npeaks"), [(3, 1), (4, 2), (1, 0), (-1, 0)])
def test_resume_refuses_peaks_that_do_not_fit(leaves: int, npeaks: int) -> None:
    with pytest.raises(HearthError):
        MerkleBuilder.resume(leaves, [bytes(32)] * npeaks)


@pytest.mark.parametrize(("seq", "mac"), [(-1, b"m"), (2**64, b"m"), (1, b""), (1, bytes(256))])
def test_leaf_inputs_are_bounded(seq: int, mac: bytes) -> None:
    with pytest.raises(HearthError):
        leaf_hash(seq, mac)
