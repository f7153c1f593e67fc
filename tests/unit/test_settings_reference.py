"""docs/operations.md lists every setting Hearth reads from hearth.toml.

The keys are collected from the code, not from a list kept beside it: every literal key that
``hearth.settings`` looks up in a table, and every field of the settings classes that are read
field by field from their table. A setting added without a line in the reference fails here.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import hearth.settings as settings_module
from hearth.settings import Limits, OAuthSettings, SessionSettings

ROOT = Path(__file__).resolve().parents[2]
# Lookups in settings.py that are not hearth.toml keys: environment variables and the
# names of sub-tables written as ``[section.sub]`` headings in the reference.
NOT_KEYS = {"tls", "log", "webhook", "email", "syslog", "targets"}


def setting_keys() -> set[str]:
    source = Path(settings_module.__file__).read_text("utf-8")
    keys = set(
        re.findall(
            r"""\b(?:raw|table|server|database|keys|auth|scanner|log_table|tls|"""
            r"""limits|sessions)\.get\("([a-z_]+)\"""",
            source,
        )
    )
    keys |= set(re.findall(r'_required\(table, "([a-z_]+)"', source))
    keys |= set(re.findall(r'table\["([a-z_]+)"\]', source))
    for cls in (Limits, OAuthSettings, SessionSettings):
        keys |= {f.name for f in dataclasses.fields(cls)}
    return keys - NOT_KEYS


def _mention(key: str) -> str:
    """How the reference may name a key: in backticks, in a TOML example (``key = ...``), or
    as a table (``[key]``, ``[section.key]``, ``[[section.key]]``)."""
    k = re.escape(key)
    return rf"`{k}`|\] {k}[`,]|^\s*{k}\s*=|\[{k}[\].]|\.{k}\]"


def test_the_reference_names_every_setting() -> None:
    reference = (ROOT / "docs" / "operations.md").read_text("utf-8")
    keys = setting_keys()
    assert len(keys) > 60  # the extraction found the settings, not nothing
    missing = sorted(k for k in keys if not re.search(_mention(k), reference, re.MULTILINE))
    assert not missing, f"settings missing from docs/operations.md: {missing}"
