"""Architecture rules that import contracts cannot express, checked over the source."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "hearth"


def constructions(name: str) -> list[str]:
    """Every place that calls ``name(...)`` directly, as ``module:line``."""
    found = []
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if called == name:
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    return found


def test_repositories_are_built_only_in_the_composition_root() -> None:
    """The gate and the loud system repository are constructed in one place (STYLE rule 6)."""
    for name in ("RecordRepository", "SystemRepository"):
        places = constructions(name)
        assert places, name
        assert all(p.startswith("wiring.py:") for p in places), (name, places)
