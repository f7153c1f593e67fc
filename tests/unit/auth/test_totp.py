"""TOTP enrolment and verification (RFC 6238; NIST-OTP-01, -02, -05)."""

from __future__ import annotations

import base64
import urllib.parse
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from hearth.auth import totp
from hearth.auth.totp import TotpParameters
from hearth.domain.errors import TOTP_INVALID, TOTP_REPLAYED, TOTP_SECRET_INVALID, HearthError

# RFC 6238 Appendix B's SHA-1 seed, "12345678901234567890", in base32.
SECRET = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
STEP = int(NOW.timestamp()) // 30


def code(step: int) -> str:
    return totp.code_at(SECRET, step)


def error_code(excinfo: pytest.ExceptionInfo[HearthError]) -> object:
    return excinfo.value.code


# -- enrolment ---------------------------------------------------------------------------


def test_secret_has_160_bits_from_the_injected_random(counting_random: Any) -> None:
    secret = totp.generate_secret(counting_random())
    assert len(secret) == 32
    assert len(base64.b32decode(secret)) == 20
    assert secret == totp.generate_secret(counting_random())
    assert secret != totp.generate_secret(counting_random(b"other"))


def test_secret_shorter_than_160_bits_is_refused(random: Any) -> None:
    with pytest.raises(ValueError, match="160"):
        totp.generate_secret(random, nbytes=10)
    assert len(totp.generate_secret(random, nbytes=32)) == 52


def test_manual_key_groups_of_four() -> None:
    assert totp.manual_key("ABCDEFGHIJ") == "ABCD EFGH IJ"


def test_provisioning_uri() -> None:
    uri = totp.provisioning_uri(SECRET, account_name="mary.jones", issuer="Hearth Clinic")
    parsed = urllib.parse.urlparse(uri)
    assert parsed.scheme == "otpauth"
    assert parsed.netloc == "totp"
    assert urllib.parse.unquote(parsed.path) == "/Hearth Clinic:mary.jones"
    query = urllib.parse.parse_qs(parsed.query)
    assert query["secret"] == [SECRET]
    assert query["issuer"] == ["Hearth Clinic"]


def test_provisioning_uri_names_non_default_parameters() -> None:
    params = TotpParameters(digits=8, algorithm="SHA256")
    query = urllib.parse.parse_qs(
        urllib.parse.urlparse(
            totp.provisioning_uri(SECRET, account_name="a", issuer="b", parameters=params)
        ).query
    )
    assert query["digits"] == ["8"]
    assert query["algorithm"] == ["SHA256"]


def test_qr_code_is_an_accessible_inline_svg() -> None:
    uri = totp.provisioning_uri(SECRET, account_name="mary.jones", issuer="Hearth")
    svg = totp.qr_svg(uri)
    root = ET.fromstring(svg)  # noqa: S314 - our own output, not untrusted input
    assert root.tag == "svg"
    assert root.get("class") == "hearth-totp-qr"
    title = root.find("title")
    assert title is not None
    assert title.text
    assert "authenticator" in title.text
    path = root.find("path")
    assert path is not None
    assert path.get("d")
    # Nothing a strict Content-Security-Policy would block, and no raster image.
    for element in root.iter():
        assert element.tag in {"svg", "title", "path"}
        assert "style" not in element.attrib
    # The size grows with the content; a scale of 4 with a 4-module border gives > 100 px.
    assert int(root.get("width", "0")) > 100
    assert totp.qr_svg(uri) == svg  # deterministic


# -- verification ------------------------------------------------------------------------


def test_current_code_is_accepted_and_its_step_returned() -> None:
    assert totp.verify(SECRET, code(STEP), now=NOW, last_used_step=None) == STEP


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_one_step_either_side_is_accepted(offset: int) -> None:
    assert totp.verify(SECRET, code(STEP + offset), now=NOW, last_used_step=None) == STEP + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_two_steps_away_is_refused(offset: int) -> None:
    with pytest.raises(HearthError) as excinfo:
        totp.verify(SECRET, code(STEP + offset), now=NOW, last_used_step=None)
    assert error_code(excinfo) is TOTP_INVALID


def test_window_edges_follow_the_clock() -> None:
    # At the first second of a step the previous step's code is still good, and the code of
    # two steps back is not; 30 s later the window has moved by one.
    start = datetime.fromtimestamp(STEP * 30, tz=UTC)
    assert totp.verify(SECRET, code(STEP - 1), now=start, last_used_step=None) == STEP - 1
    later = start + timedelta(seconds=30)
    with pytest.raises(HearthError):
        totp.verify(SECRET, code(STEP - 1), now=later, last_used_step=None)


def test_a_code_is_accepted_only_once() -> None:
    used = totp.verify(SECRET, code(STEP), now=NOW, last_used_step=None)
    with pytest.raises(HearthError) as excinfo:
        totp.verify(SECRET, code(STEP), now=NOW, last_used_step=used)
    assert error_code(excinfo) is TOTP_REPLAYED
    assert excinfo.value.code.code != TOTP_INVALID.code


def test_an_earlier_code_after_a_later_one_is_a_replay() -> None:
    with pytest.raises(HearthError) as excinfo:
        totp.verify(SECRET, code(STEP - 1), now=NOW, last_used_step=STEP)
    assert error_code(excinfo) is TOTP_REPLAYED


def test_the_next_code_after_a_used_one_is_accepted() -> None:
    assert totp.verify(SECRET, code(STEP + 1), now=NOW, last_used_step=STEP) == STEP + 1


@pytest.mark.parametrize(
    "entered",
    ["{c}", " {c} ", "{c3} {c4}", "{c3}-{c4}", "{full}"],
    ids=["plain", "spaces", "grouped", "hyphen", "fullwidth"],
)
def test_spaces_hyphens_and_full_width_digits_are_accepted(entered: str) -> None:
    c = code(STEP)
    full = "".join(chr(0xFF10 + int(d)) for d in c)
    typed = entered.format(c=c, c3=c[:3], c4=c[3:], full=full)
    assert totp.verify(SECRET, typed, now=NOW, last_used_step=None) == STEP


@pytest.mark.parametrize("entered", ["", "12345", "1234567", "12345a", "abcdef", "\u0661" * 6])
def test_malformed_codes_are_invalid(entered: str) -> None:
    with pytest.raises(HearthError) as excinfo:
        totp.verify(SECRET, entered, now=NOW, last_used_step=None)
    assert error_code(excinfo) is TOTP_INVALID


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        totp.verify(SECRET, code(STEP), now=NOW.replace(tzinfo=None), last_used_step=None)


def test_time_zone_of_now_does_not_matter() -> None:
    elsewhere = NOW.astimezone(timezone(timedelta(hours=-7)))
    assert totp.verify(SECRET, code(STEP), now=elsewhere, last_used_step=None) == STEP


def test_step_zero_has_no_negative_neighbour() -> None:
    epoch = datetime.fromtimestamp(0, tz=UTC)
    assert totp.verify(SECRET, totp.code_at(SECRET, 0), now=epoch, last_used_step=None) == 0


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "not base32!",
        "gezdgnbvgy3tqojq",  # lower case is not what Hearth stores
        "GEZDGNBV",  # 40 bits, below NIST-OTP-01's 112
        "GEZDGNBVGY3TQOJ1",  # 1 is not in the base32 alphabet
    ],
)
def test_malformed_stored_secret(secret: str) -> None:
    with pytest.raises(HearthError) as excinfo:
        totp.verify(secret, "123456", now=NOW, last_used_step=None)
    assert error_code(excinfo) is TOTP_SECRET_INVALID
    assert excinfo.value.status == 500


@pytest.mark.parametrize(
    "kwargs",
    [{"digits": 5}, {"digits": 9}, {"period": 0}, {"period": 121}, {"algorithm": "MD5"}],
)
def test_parameters_are_bounded(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="TOTP"):
        TotpParameters(**kwargs)


def test_verify_with_other_parameters() -> None:
    params = TotpParameters(digits=8, period=60, algorithm="SHA512")
    step = int(NOW.timestamp()) // 60
    entered = totp.code_at(SECRET, step, params)
    assert len(entered) == 8
    assert totp.verify(SECRET, entered, now=NOW, last_used_step=None, parameters=params) == step
