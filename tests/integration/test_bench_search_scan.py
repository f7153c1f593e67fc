"""``bench search`` scans what it loaded before it serves (``bench.search._scan``): the count it
reports is what ``hearth integrity scan`` checked, and a second scan finds nothing new to check,
which is where the server's own scanner then starts."""

from __future__ import annotations

import json
from pathlib import Path

from bench.search import _hearth, _scan


def test_the_scan_checks_what_was_loaded_and_leaves_nothing_to_catch_up(tmp_path: Path) -> None:
    home = tmp_path / "home"
    _hearth(home, "init", "--quiet")
    patients = tmp_path / "patients.ndjson"
    patients.write_text(
        "".join(
            json.dumps({"resourceType": "Patient", "id": f"p{i}", "gender": "female"}) + "\n"
            for i in range(25)
        )
    )
    _hearth(home, "import", str(patients), "--json")

    first = _scan(home, None)
    assert first["versions"] == 25
    assert first["per_s"] > 0
    assert _scan(home, None)["versions"] == 0
