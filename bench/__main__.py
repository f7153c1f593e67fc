"""Run the benchmarks: ``python -m bench [NAME ...]`` (default: every module with a ``main``).

Each module prints its table and writes ``bench/results/NAME.json``. Modules: ``core`` (issue 2)
and the others listed in docs/benchmarks.md.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

SKIP = {"common", "baseline", "hello"}


def available() -> list[str]:
    here = Path(__file__).resolve().parent
    names = []
    for module in pkgutil.iter_modules([str(here)]):
        if module.name in SKIP or module.name.startswith("_"):
            continue
        if hasattr(importlib.import_module(f"bench.{module.name}"), "main"):
            names.append(module.name)
    return sorted(names, key=lambda n: (n != "core", n))


def main() -> None:
    names = sys.argv[1:] or available()
    unknown = set(names) - set(available())
    if unknown:
        raise SystemExit(f"unknown benchmarks: {sorted(unknown)}; available: {available()}")
    for name in names:
        print(f"== bench.{name}")
        importlib.import_module(f"bench.{name}").main()


if __name__ == "__main__":
    main()
