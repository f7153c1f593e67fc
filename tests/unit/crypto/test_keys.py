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
    sealed_key_id,
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
    blob = keys.seal_resource(b"body", aad=aad, random=random)
    assert keys.open_resource(blob, aad=aad) == b"body"
    with pytest.raises(IntegrityError):
        keys.open_resource(blob, aad=ResourceRef("Patient", "p2").aad(1))
    fields = {
        "seq": 1,
        "res_type": "Patient",
        "res_id": "p1",
        "version": 1,
        "deleted": False,
        "ts_us": 5,
    }
    mac_key_id, tag = keys.mac(body=b"body", **fields)  # type: ignore[arg-type]
    assert mac_key_id == keys.mac_key_id
    keys.verify_mac(tag, mac_key_id=mac_key_id, body=b"body", **fields)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        keys.verify_mac(tag, mac_key_id=mac_key_id, body=b"other", **fields)  # type: ignore[arg-type]
    with pytest.raises(IntegrityError):
        keys.verify_mac(tag, mac_key_id=999, body=b"body", **fields)  # type: ignore[arg-type]
    key_id, signature = keys.sign(b"message")
    keys.verifier(key_id).verify(signature, b"message")
    with pytest.raises(IntegrityError):
        keys.verifier(key_id).verify(signature, b"other")
    with pytest.raises(IntegrityError):
        keys.verifier(999)
    assert keys.blind("d", "v") != keys.blind("d", "w")


def test_each_purpose_seals_under_its_own_key_and_opens_only_its_own() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    keys, _ = ring(kek, random)
    resource = keys.seal_resource(b"r", aad=b"a", random=random)
    detail = keys.seal_audit_detail(b"d", aad=b"a", random=random)
    secret = keys.seal_secret(b"s", aad=b"a", random=random)
    assert sealed_key_id(resource) == keys.active_id(KeyPurpose.DATA)
    assert sealed_key_id(detail) == keys.active_id(KeyPurpose.AUDIT_SEAL)
    assert sealed_key_id(secret) == keys.active_id(KeyPurpose.SECRETS)
    assert len({sealed_key_id(b) for b in (resource, detail, secret)}) == 3
    assert keys.open_audit_detail(detail, aad=b"a") == b"d"
    assert keys.open_secret(secret, aad=b"a") == b"s"
    # A secret or an audit detail is never opened as a resource, nor the other way round.
    for wrong_purpose in (
        lambda: keys.open_resource(secret, aad=b"a"),
        lambda: keys.open_resource(detail, aad=b"a"),
        lambda: keys.open_secret(detail, aad=b"a"),
        lambda: keys.open_audit_detail(secret, aad=b"a"),
    ):
        with pytest.raises(IntegrityError):
            wrong_purpose()
    # Made before audit-seal and secrets keys existed: a data key sealed both, and still opens.
    assert keys.open_secret(resource, aad=b"a") == b"r"
    assert keys.open_audit_detail(resource, aad=b"a") == b"r"
    assert keys.take_seal_counts() == {
        keys.active_id(KeyPurpose.DATA): 1,
        keys.active_id(KeyPurpose.AUDIT_SEAL): 1,
        keys.active_id(KeyPurpose.SECRETS): 1,
    }
    assert keys.take_seal_counts() == {}
    assert keys.purpose_of(keys.active_id(KeyPurpose.SECRETS)) is KeyPurpose.SECRETS
    assert keys.purpose_of(999) is None


def test_rotated_key_still_opens_and_unknown_key_fails() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    keys, wrapped = ring(kek, random)
    blob = keys.seal_resource(b"old", aad=b"a", random=random)
    old = next(w for w in wrapped if w.purpose is KeyPurpose.DATA)
    rotated = [
        WrappedKey(w.key_id, w.purpose, KeyState.DECRYPT_ONLY, w.wrapped, w.kek_id)
        if w is old
        else w
        for w in wrapped
    ]
    rotated.append(new_wrapped_key(kek, key_id=10, purpose=KeyPurpose.DATA, random=random))
    generation = keys.generation
    keys.reload(rotated, kek, epoch=2)
    assert (keys.epoch, keys.data_key_id) == (2, 10)
    assert keys.generation == generation + 1
    assert keys.open_resource(blob, aad=b"a") == b"old"
    retired = [
        WrappedKey(w.key_id, w.purpose, KeyState.RETIRED, None, w.kek_id)
        if w.key_id == old.key_id
        else w
        for w in rotated
    ]
    keys.reload(retired, kek, epoch=3)
    with pytest.raises(IntegrityError):
        keys.open_resource(blob, aad=b"a")


def test_reload_unwraps_only_new_keys_so_a_rewrap_needs_nothing_from_the_new_kek() -> None:
    random = SeededRandom()
    old, new = LocalKek(random.token_bytes(32)), LocalKek(random.token_bytes(32))
    keys, wrapped = ring(old, random)
    blob = keys.seal_resource(b"x", aad=b"a", random=random)
    moved = [rewrap(w, old, new, random) for w in wrapped]
    keys.reload(moved, old, epoch=2)  # the old KEK opens none of these, and needs not
    assert keys.open_resource(blob, aad=b"a") == b"x"
    added = [*moved, new_wrapped_key(new, key_id=20, purpose=KeyPurpose.SECRETS, random=random)]
    added = [
        WrappedKey(w.key_id, w.purpose, KeyState.DECRYPT_ONLY, w.wrapped, w.kek_id)
        if w.purpose is KeyPurpose.SECRETS and w.key_id != 20
        else w
        for w in added
    ]
    with pytest.raises(HearthError, match="does not open"):
        keys.reload(added, old, epoch=3)
    assert keys.epoch == 2  # unchanged after a failed reload
    keys.reload(added, new, epoch=3)
    assert keys.active_id(KeyPurpose.SECRETS) == 20


def test_forget_drops_keys_and_an_active_one_stops_sealing() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    keys, _ = ring(kek, random)
    blob = keys.seal_resource(b"x", aad=b"a", random=random)
    keys.forget([999])  # unknown ids change nothing
    data = keys.data_key_id
    keys.forget([data])
    assert not keys.has_active(KeyPurpose.DATA)
    with pytest.raises(IntegrityError):
        keys.open_resource(blob, aad=b"a")
    with pytest.raises(HearthError) as exc:
        keys.seal_resource(b"y", aad=b"a", random=random)
    assert exc.value.code.code == "HRT-0505"
    with pytest.raises(HearthError):
        _ = keys.data_key_id
    keys.forget([keys.mac_key_id, keys.sign_key_id])
    fields = {"seq": 1, "res_type": "P", "res_id": "1", "version": 1, "deleted": False}
    with pytest.raises(HearthError):
        keys.mac(ts_us=0, body=None, **fields)  # type: ignore[arg-type]
    with pytest.raises(HearthError):
        keys.sign(b"m")


def test_an_unknown_key_asks_the_loader_once() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    keys, wrapped = ring(kek, random)
    rotated = {KeyPurpose.DATA: 30, KeyPurpose.MAC: 31, KeyPurpose.AUDIT_SIGN: 32}
    newer = [
        WrappedKey(w.key_id, w.purpose, KeyState.DECRYPT_ONLY, w.wrapped, w.kek_id)
        if w.purpose in rotated
        else w
        for w in wrapped
    ] + [new_wrapped_key(kek, key_id=i, purpose=p, random=random) for p, i in rotated.items()]
    writer = KeyRing(newer, kek)
    blob = writer.seal_resource(b"new", aad=b"a", random=random)
    fields = {"seq": 1, "res_type": "P", "res_id": "1", "version": 1, "deleted": False}
    mac_key_id, tag = writer.mac(ts_us=0, body=b"new", **fields)  # type: ignore[arg-type]
    sign_key_id, signature = writer.sign(b"m")
    with pytest.raises(IntegrityError):
        keys.open_resource(blob, aad=b"a")  # no loader: refused at once
    calls: list[int] = []

    def loader() -> None:
        calls.append(1)
        keys.reload(newer, kek, epoch=5)

    keys.on_unknown_key = loader
    assert keys.open_resource(blob, aad=b"a") == b"new"
    assert calls == [1]
    # Known now: no further calls.
    keys.verify_mac(tag, mac_key_id=mac_key_id, ts_us=0, body=b"new", **fields)  # type: ignore[arg-type]
    keys.verifier(sign_key_id).verify(signature, b"m")
    assert calls == [1]
    keys.on_unknown_key = lambda: calls.append(2)
    with pytest.raises(IntegrityError):
        keys.verifier(77)
    with pytest.raises(IntegrityError):
        keys.verify_mac(tag, mac_key_id=78, ts_us=0, body=b"new", **fields)  # type: ignore[arg-type]
    assert calls == [1, 2, 2]
    assert keys.token_key_id in keys.token_signing_keys()
    # A MAC or a signature may be the first thing to name a new key.
    for check in (
        lambda r: r.verify_mac(tag, mac_key_id=mac_key_id, ts_us=0, body=b"new", **fields),
        lambda r: r.verifier(sign_key_id).verify(signature, b"m"),
    ):
        stale, _ = ring(kek, SeededRandom())
        stale.reload(wrapped, kek, epoch=1)
        stale.on_unknown_key = lambda stale=stale: stale.reload(newer, kek, epoch=5)
        check(stale)


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
    blob = keys.seal_resource(b"x", aad=b"a", random=random)
    moved = [rewrap(w, old, new, random) for w in wrapped]
    assert {w.kek_id for w in moved} == {new.kek_id}
    assert KeyRing(moved, new).open_resource(blob, aad=b"a") == b"x"
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
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    keys, _ = ring(kek, random)
    blob = keys.seal_resource(b"x", aad=b"a", random=random)
    assert sealed_key_id(blob) == keys.data_key_id
    for bad in (b"", b"\x02" + blob[1:], blob[:20]):
        with pytest.raises(IntegrityError):
            sealed_key_id(bad)


def test_a_blind_memo_gives_the_same_tokens_bounded_and_per_key() -> None:
    random = SeededRandom()
    kek = LocalKek(random.token_bytes(32))
    plain, wrapped = ring(kek, random)
    memo = KeyRing(wrapped, kek, blind_memo=2)
    pairs = [("Patient.name", "ann"), ("Patient.name", "bob"), ("Observation.code", "c")]
    for _ in range(2):  # the second pass is answered from the memo (emptied at its limit)
        assert memo.blind_many(pairs) == plain.blind_many(pairs)
        assert memo.blind_many(pairs[:1]) == {plain.blind(*pairs[0])}
        assert memo.blind_many([]) == set()
    # Another blind key: tokens remembered under the old one are not reused.
    other = [
        new_wrapped_key(kek, key_id=100, purpose=KeyPurpose.BLIND, random=random)
        if w.purpose is KeyPurpose.BLIND
        else w
        for w in wrapped
    ]
    memo.reload(other, kek, epoch=1)
    fresh = KeyRing(other, kek)
    assert memo.blind_many(pairs) == fresh.blind_many(pairs)
    assert fresh.blind_many(pairs) != plain.blind_many(pairs)


def test_the_blinder_gives_the_reference_tokens() -> None:
    """``Blinder`` copies one keyed HMAC context per message; its tokens are the one-shot
    HMAC-SHA-256 of ``blind_index`` (which the core vectors pin), for any domain and value,
    including the empty value and text outside ASCII, and the same pair twice in a row."""
    from hearth.crypto.blind import Blinder, blind_index

    random = SeededRandom(b"blinder")
    key = random.token_bytes(32)
    blinder = Blinder(key)
    pairs = [
        ("Patient.name", "smith"),
        ("Patient.name", "smith"),
        ("Observation.code", "http://loinc.org|8867-4"),
        ("Patient.address", ""),
        ("Patient.family", "ñúñez 山田"),
    ] + [(f"d{i}", random.token_bytes(i).hex()) for i in range(40)]
    for domain, value in pairs:
        assert blinder.token(domain, value) == blind_index(key, domain, value)
    assert blinder.tokens(pairs) == {blind_index(key, d, v) for d, v in pairs}
    memo: dict[tuple[str, str], bytes] = {}
    assert blinder.tokens_memo(pairs, memo, 8) == blinder.tokens(pairs)
    assert len(memo) <= 8
    assert Blinder(random.token_bytes(32)).tokens(pairs).isdisjoint(blinder.tokens(pairs))
