"""``[sessions]`` and ``[oauth]`` in hearth.toml: stricter values are taken as given, looser ones
fail at start-up with the bound named (NIST SP 800-63B-4 AAL2; SMART-TK-02, BS-08)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.domain import HearthError, errors
from hearth.settings import OAuthSettings, SessionSettings, Settings, load_settings

BASE = 'instance_id = "i1"\n[keys]\nsource = "file"\n'
DAY = 86_400


def settings_with(tmp_path: Path, extra: str) -> Settings:
    (tmp_path / "hearth.toml").write_text(BASE + extra, "utf-8")
    return load_settings(tmp_path, {})


def test_defaults(tmp_path: Path) -> None:
    s = settings_with(tmp_path, "")
    assert s.sessions == SessionSettings(15, 12, 5, 5)
    assert s.oauth == OAuthSettings()
    assert s.oauth.offline_seconds == 90 * DAY
    assert s.oauth.online_seconds == 12 * 3600
    assert s.oauth.signing_key_seconds == 30 * DAY


def test_stricter_values_are_taken(tmp_path: Path) -> None:
    s = settings_with(
        tmp_path,
        """
[sessions]
idle_minutes = 5
absolute_hours = 8
step_up_minutes = 2
sign_in_minutes = 3
[oauth]
access_token_seconds = 900
backend_token_seconds = 60
code_seconds = 60
launch_seconds = 120
offline_seconds = 2592000
online_seconds = 28800
signing_key_seconds = 604800
""",
    )
    assert s.sessions == SessionSettings(
        idle_minutes=5, absolute_hours=8, step_up_minutes=2, sign_in_minutes=3
    )
    assert s.oauth == OAuthSettings(
        access_token_seconds=900,
        backend_token_seconds=60,
        code_seconds=60,
        launch_seconds=120,
        offline_seconds=30 * DAY,
        online_seconds=8 * 3600,
        signing_key_seconds=7 * DAY,
    )


@pytest.mark.parametrize(
    ("table", "key", "value", "bound"),
    [
        ("sessions", "idle_minutes", 61, "1 to 60"),
        ("sessions", "idle_minutes", 0, "1 to 60"),
        ("sessions", "absolute_hours", 25, "1 to 24"),
        ("sessions", "step_up_minutes", 61, "1 to 60"),
        ("sessions", "sign_in_minutes", 31, "1 to 30"),
        ("oauth", "access_token_seconds", 3601, "1 to 3600"),
        ("oauth", "access_token_seconds", 0, "1 to 3600"),
        ("oauth", "backend_token_seconds", 301, "1 to 300"),
        ("oauth", "code_seconds", 601, "1 to 600"),
        ("oauth", "launch_seconds", 3601, "1 to 3600"),
        ("oauth", "offline_seconds", 365 * DAY + 1, f"3600 to {365 * DAY}"),
        ("oauth", "offline_seconds", 3599, f"3600 to {365 * DAY}"),
        ("oauth", "online_seconds", DAY + 1, f"300 to {DAY}"),
        ("oauth", "signing_key_seconds", DAY - 1, f"{DAY} to {90 * DAY}"),
        ("oauth", "signing_key_seconds", 90 * DAY + 1, f"{DAY} to {90 * DAY}"),
    ],
)
def test_looser_values_are_refused_at_start(
    tmp_path: Path, table: str, key: str, value: int, bound: str
) -> None:
    with pytest.raises(HearthError) as refused:
        settings_with(tmp_path, f"[{table}]\n{key} = {value}\n")
    assert refused.value.code is errors.BAD_PARAMETER
    assert f"{table}.{key} must be {bound}" in refused.value.detail
