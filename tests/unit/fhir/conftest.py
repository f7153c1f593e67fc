"""Shared fixtures for the FHIR unit tests: the committed R4 example resources."""

from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).parent / "examples"


def example_paths() -> list[Path]:
    return sorted(EXAMPLES.glob("*/*.json"))
