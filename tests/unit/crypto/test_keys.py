from __future__ import annotations

import os
from pathlib import Path

import pytest

from hearth.crypto import (
    FileKek,
    KeyPurpose,
    KeyRing,
    KeyState,
    LocalKek,
    PassphraseKek,
    WrappedKey,
    create_key_file,
    new_wrapped_key,
    rewrap,
    tokens,
)
from hearth.domain import HearthError, IntegrityError, ResourceRef, Secret
from tests.support import SeededRandom


def ring(kek: LocalKek, random: SeededRandom) -> tuple[KeyRing, list[WrappedKey]]:
    keys = [
        new_wrapped_key(kek, key_id=i + 1, purpose=p, random=random)
        for i, p in enumerate(KeyPurpose)
    ]
    return KeyRing(keys, kek), keys


def test_seal_open_mac_and_sign() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    keys, _ = ring(kek, random)
    aad = ResourceRef("Patient", "p1").aad(1)
    blob = keys.seal(b"body", aad=aad, random=random)
    assert keys.open(blob, aad=aad) == b"body"
    with pytest.raises(IntegrityError):
        keys.open(blob, aad=ResourceRef("Patient", "p2").aad(1))
    fields = {
        "seq": 1,
        "res_type": "Patient",
        "res_id": "p1",
        "version": 1,
        "deleted": False,
        "ts_us": 5,
    }
    tag = keys.mac(body=b"body", **fields)  # type: ignore[arg-type]
    keys.verify_mac(tag, mac_key_id=keys.mac_key_id, body=b"body", **fields)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        keys.verify_mac(tag, mac_key_id=keys.mac_key_id, body=b"other", **fields)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        keys.verify_mac(tag, mac_key_id=999, body=b"body", **fields)  # type: ignore[arg-type]
    key_id, signature = keys.sign(b"message")
    keys.verifier(key_id).verify(signature, b"message")
    with pytest.raises(IntegrityError):
        keys.verifier(key_id).verify(signature, b"other")
    with pytest.raises(IntegrityError):
        keys.verifier(999)
    assert keys.blind("d", "v") != keys.blind("d", "w")


def test_rotated_key_still_opens_and_unknown_key_fails() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    keys, wrapped = ring(kek, random)
    blob = keys.seal(b"old", aad=b"a", random=random)
    old = next(w for w in wrapped if w.purpose is KeyPurpose.DATA)
    rotated = [
        WrappedKey(w.key_id, w.purpose, KeyState.DECRYPT_ONLY, w.wrapped, w.kek_id)
        if w is old
        else w
        for w in wrapped
    ]
    rotated.append(new_wrapped_key(kek, key_id=10, purpose=KeyPurpose.DATA, random=random))
    keys.reload(rotated, kek)
    assert keys.data_key_id == 10
    assert keys.open(blob, aad=b"a") == b"old"
    retired = [
        WrappedKey(w.key_id, w.purpose, KeyState.RETIRED, None, w.kek_id)
        if w.key_id == old.key_id
        else w
        for w in rotated
    ]
    keys.reload(retired, kek)
    with pytest.raises(IntegrityError):
        keys.open(blob, aad=b"a")


def test_ring_refuses_a_wrong_kek_missing_or_doubled_keys() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    _, wrapped = ring(kek, random)
    with pytest.raises(HearthError, match="does not open"):
        KeyRing(wrapped, LocalKek(b"\x01" * 32))
    with pytest.raises(HearthError, match="No active key"):
        KeyRing(wrapped[:2], kek)
    doubled = [*wrapped, new_wrapped_key(kek, key_id=9, purpose=KeyPurpose.MAC, random=random)]
    with pytest.raises(HearthError, match="Two active keys"):
        KeyRing(doubled, kek)


def test_rewrap_moves_keys_to_a_new_kek() -> None:
    random = SeededRandom()
    old, new = LocalKek(random.token_bytes(32)), LocalKek(random.token_bytes(32))
    keys, wrapped = ring(old, random)
    blob = keys.seal(b"x", aad=b"a", random=random)
    moved = [rewrap(w, old, new, random) for w in wrapped]
    assert {w.kek_id for w in moved} == {new.kek_id}
    assert KeyRing(moved, new).open(blob, aad=b"a") == b"x"
    retired = WrappedKey(1, KeyPurpose.DATA, KeyState.RETIRED, None, old.kek_id)
    assert rewrap(retired, old, new, random) is retired


def test_key_file_mode_and_format(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "kek.key"
    create_key_file(path, SeededRandom())
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert FileKek(path).kek_id == FileKek(path).kek_id
    with pytest.raises(FileExistsError):
        create_key_file(path, SeededRandom())
    os.chmod(path, 0o640)
    with pytest.raises(HearthError, match="chmod 600"):
        FileKek(path)
    os.chmod(path, 0o600)
    path.write_text("not hex")
    with pytest.raises(HearthError, match="not a hex key"):
        FileKek(path)
    with pytest.raises(HearthError, match="missing"):
        FileKek(tmp_path / "absent.key")
    with pytest.raises(HearthError, match="32 bytes"):
        LocalKek(b"short")


def test_passphrase_kek_is_deterministic_per_salt() -> None:
    a = PassphraseKek(Secret("correct horse battery staple"), b"salt-salt-salt-1")
    b = PassphraseKek(Secret("correct horse battery staple"), b"salt-salt-salt-1")
    c = PassphraseKek(Secret("correct horse battery staple"), b"salt-salt-salt-2")
    assert a.kek_id == b.kek_id != c.kek_id
    with pytest.raises(HearthError, match="16"):
        PassphraseKek(Secret("short"), b"salt")


def test_wrapped_key_tamper_is_refused() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    wrapped = kek.wrap(b"k" * 32, aad=b"aad", random=random)
    assert kek.unwrap(wrapped, aad=b"aad") == b"k" * 32
    for bad in (b"\x02" + wrapped[1:], wrapped[:10], wrapped[:-1] + bytes([wrapped[-1] ^ 1])):
        with pytest.raises(IntegrityError):
            kek.unwrap(bad, aad=b"aad")
    with pytest.raises(IntegrityError):
        kek.unwrap(wrapped, aad=b"other")


def test_bearer_tokens() -> None:
    issued = tokens.issue(SeededRandom())
    parsed = tokens.parse(issued.token)
    assert parsed is not None
    token_id, secret = parsed
    assert token_id == issued.token_id
    assert tokens.secret_matches(secret, issued.digest)
    assert not tokens.secret_matches(secret + "x", issued.digest)
    for bad in ("", "hrt", "xyz_a_b", "hrt__b", "hrt_a_", "hrt_é_b", "hrt_a_b_c"):
        assert tokens.parse(bad) is None


def test_sealed_key_id_reads_the_header_and_refuses_garbage() -> None:
    from hearth.crypto import sealed_key_id

    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    keys, _ = ring(kek, random)
    blob = keys.seal(b"x", aad=b"a", random=random)
    assert sealed_key_id(blob) == keys.data_key_id
    for bad in (b"", b"\x02" + blob[1:], blob[:20]):
        with pytest.raises(IntegrityError):
            sealed_key_id(bad)
