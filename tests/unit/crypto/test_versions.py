"""Batch verification of stored versions (``KeyRing.check_versions``): each kind of damage is
named, a hostile row never stops the batch, and an unknown key id asks for a reload once."""

from __future__ import annotations

from typing import Any

from hearth.crypto import KeyPurpose, KeyRing, LocalKek, WrappedKey, new_wrapped_key
from hearth.crypto.versions import VersionProblem
from hearth.domain import ResourceRef
from tests.support import SeededRandom

Row = tuple[Any, ...]


def ring(random: SeededRandom) -> tuple[KeyRing, LocalKek, list[WrappedKey]]:
    kek = LocalKek(random.token_bytes(32))
    keys = [
        new_wrapped_key(kek, key_id=i + 1, purpose=p, random=random)
        for i, p in enumerate(KeyPurpose)
    ]
    return KeyRing(keys, kek), kek, keys


def version(keys: KeyRing, random: SeededRandom, seq: int, *, deleted: bool = False) -> Row:
    res_type, res_id, number, ts_us = "Patient", f"p{seq}", 1, 1_000 + seq
    body = None if deleted else b'{"resourceType":"Patient"}'
    sealed = (
        None
        if body is None
        else keys.seal_resource(body, aad=ResourceRef(res_type, res_id).aad(number), random=random)
    )
    mac_key_id, tag = keys.mac(
        seq=seq,
        res_type=res_type,
        res_id=res_id,
        version=number,
        deleted=deleted,
        ts_us=ts_us,
        body=body,
    )
    key_id = None if deleted else keys.data_key_id
    return (seq, res_type, res_id, number, ts_us, deleted, key_id, sealed, mac_key_id, tag)


def test_intact_rows_pass_and_kept_bodies_are_returned() -> None:
    random = SeededRandom()
    keys, _kek, _ = ring(random)
    rows = [version(keys, random, 1), version(keys, random, 2, deleted=True)]
    problems, bodies = keys.check_versions(rows, keep={1, 2})
    assert problems == []
    assert bodies == {1: b'{"resourceType":"Patient"}'}


def test_each_kind_of_damage_is_named() -> None:
    random = SeededRandom()
    keys, _kek, _ = ring(random)
    good = [version(keys, random, s) for s in range(1, 9)]
    tomb = version(keys, random, 9, deleted=True)
    sealed = good[0][7]
    rows = [
        (*good[0][:7], sealed[:-1] + bytes([sealed[-1] ^ 1]), *good[0][8:]),  # body edited
        (*good[1][:6], 99, *good[1][7:]),  # key id column edited
        (*good[2][:9], b"\x00" * 32),  # MAC edited
        (*tomb[:7], b"x" * 40, *tomb[8:]),  # a deletion with a body
        (*good[3][:7], "text, not bytes", *good[3][8:]),  # a text value in a blob column
        (*good[4][:7], None, *good[4][8:]),  # a live version without a body
        (*good[5][:8], 999, good[5][9]),  # an unknown MAC key
        (*good[6][:7], b"\x01\x00\x00\x03\xe7" + sealed[5:], *good[6][8:]),  # unknown data key
        (*good[7][:2], None, *good[7][3:]),  # no id at all
    ]
    problems, bodies = keys.check_versions(rows, keep={1, 2, 3})
    assert problems == [
        (1, VersionProblem.SEAL),
        (2, VersionProblem.KEY_ID),
        (3, VersionProblem.MAC),
        (9, VersionProblem.TOMBSTONE_BODY),
        (4, VersionProblem.SEAL),
        (5, VersionProblem.SEAL),
        (6, VersionProblem.MAC),
        (7, VersionProblem.SEAL),
        (8, VersionProblem.UNREADABLE),
    ]
    assert bodies == {}


def test_an_unknown_key_asks_for_a_reload_once() -> None:
    random = SeededRandom()
    keys, kek, wrapped = ring(random)
    old = version(keys, random, 1)
    # Another process rotated the data and MAC keys and wrote with them.
    newer = [
        *wrapped,
        new_wrapped_key(kek, key_id=20, purpose=KeyPurpose.DATA, random=random),
        new_wrapped_key(kek, key_id=21, purpose=KeyPurpose.MAC, random=random),
    ]
    newer = [
        w
        if w.purpose not in (KeyPurpose.DATA, KeyPurpose.MAC) or w.key_id >= 20
        else WrappedKey(w.key_id, w.purpose, type(w.state)("decrypt-only"), w.wrapped, w.kek_id)
        for w in newer
    ]
    other = KeyRing(newer, kek)
    new = version(other, random, 2)
    reloads: list[int] = []

    def reload() -> None:
        reloads.append(1)
        keys.reload(newer, kek, epoch=1)

    keys.on_unknown_key = reload
    problems, _ = keys.check_versions([old, new, new])
    assert problems == []
    assert reloads == [1]
