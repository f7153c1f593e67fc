"""How long structural validation and strict parsing take on real R4 resources.

Run: ``python bench/fhir_validation.py`` (prints a table, writes
``bench/results/fhir_validation.json``). Figures are medians of repeated timed runs on this
machine; the baseline column is ``orjson.loads`` alone, measured side by side, so the ratio
shows what validation adds to the cheapest possible parse.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from hearth.fhir.jsonbody import parse_json_body
from hearth.fhir.validation import collect_issues

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "tests" / "unit" / "fhir" / "examples"
RESULTS = ROOT / "bench" / "results" / "fhir_validation.json"

# A typical Patient: the R4 "example" patient's content (names, identifiers, telecom, address,
# contact, a primitive extension, a reference).
PATIENT: dict[str, Any] = orjson.loads(
    (EXAMPLES / "r4" / "Bundle-bundle-response-medsallergies.json").read_bytes()
)["entry"][0]["resource"]


def per_call(fn: Any, arg: Any, *, rounds: int = 7, budget: float = 0.2) -> float:
    """Median seconds per call over ``rounds`` rounds of about ``budget`` seconds each."""
    n = 1
    while True:
        start = time.perf_counter()
        for _ in range(n):
            fn(arg)
        if time.perf_counter() - start > budget / 10:
            break
        n *= 2
    loops = max(1, int(n * (budget / 10) / (time.perf_counter() - start) * 10))
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(loops):
            fn(arg)
        samples.append((time.perf_counter() - start) / loops)
    return statistics.median(samples)


def main() -> None:
    cases: list[tuple[str, bytes]] = [("Patient (typical)", orjson.dumps(PATIENT))]
    for name in (
        "r4/Observation-vitals-panel.json",
        "r4/MedicationRequest-medrx0311.json",
        "r4/Claim-100153.json",
        "r4/Bundle-bundle-transaction.json",
        "r4/QuestionnaireResponse-3141.json",
        "core/StructureDefinition-Period.json",
    ):
        cases.append((name.split("/", 1)[1].removesuffix(".json"), (EXAMPLES / name).read_bytes()))
    collect_issues(PATIENT)  # compile the schema once, outside the timings
    rows = []
    for label, raw in cases:
        resource = orjson.loads(raw)
        assert collect_issues(resource) == []
        loads = per_call(orjson.loads, raw)
        validate = per_call(collect_issues, resource)
        parse = per_call(parse_json_body, raw)
        rows.append(
            {
                "resource": label,
                "bytes": len(raw),
                "orjson_loads_us": round(loads * 1e6, 1),
                "parse_json_body_us": round(parse * 1e6, 1),
                "validate_us": round(validate * 1e6, 1),
                "validate_over_loads": round(validate / loads, 1),
            }
        )
    header = (
        f"{'resource':34} {'bytes':>7} {'loads µs':>9} {'parse µs':>9} {'valid. µs':>10}"
        f" {'ratio':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['resource']:34} {r['bytes']:>7} {r['orjson_loads_us']:>9} "
            f"{r['parse_json_body_us']:>9} {r['validate_us']:>10} {r['validate_over_loads']:>6}"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"benchmark": "fhir_validation", "python": platform.python_version(), "rows": rows},
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
