"""RFC 6238 Appendix B test vectors, pinned in totp-rfc6238.json."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from hearth.auth import totp
from hearth.auth.totp import TotpParameters

VECTORS = json.loads((Path(__file__).parent / "totp-rfc6238.json").read_text())


def secret_for(mode: str) -> str:
    return base64.b32encode(VECTORS["seeds"][mode].encode("ascii")).decode("ascii").rstrip("=")


def params_for(mode: str) -> TotpParameters:
    return TotpParameters(digits=8, period=30, algorithm=mode)


@pytest.mark.parametrize("vector", VECTORS["vectors"], ids=lambda v: f"{v['mode']}-{v['time']}")
def test_rfc6238_appendix_b(vector: dict[str, Any]) -> None:
    now = datetime.fromtimestamp(vector["time"], tz=UTC)
    assert now.isoformat().replace("+00:00", "Z") == vector["utc"]
    params = params_for(vector["mode"])
    step = totp.time_step(now, params)
    assert step == int(vector["T"], 16)
    secret = secret_for(vector["mode"])
    assert totp.code_at(secret, step, params) == vector["totp"]
    assert totp.verify(secret, vector["totp"], now=now, last_used_step=None, parameters=params) == (
        step
    )


def test_all_eighteen_vectors_are_present() -> None:
    assert len(VECTORS["vectors"]) == 18
    assert sum(v["mode"] == "SHA1" for v in VECTORS["vectors"]) == 6
