"""Audit the locked dependencies for known vulnerabilities with pip-audit.

pip-audit asks PyPI's per-release JSON API (``/pypi/NAME/VERSION/json``). Where that API is not
reachable (an air-gapped build machine, a registry mirror that serves only the simple index),
no audit can be made; this script then says so loudly and, unless ``HEARTH_REQUIRE_DEP_AUDIT=1``,
exits 0 so that an offline build still runs the rest of the suite. Anywhere the service answers,
a known vulnerability fails the build.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request

PROBE = "https://pypi.org/pypi/pip/24.0/json"


def service_reachable() -> bool:
    try:
        with urllib.request.urlopen(PROBE, timeout=10) as response:
            return bool(response.read(1))
    except (urllib.error.URLError, TimeoutError, OSError):
        return False


def main() -> int:
    if not service_reachable():
        required = os.environ.get("HEARTH_REQUIRE_DEP_AUDIT") == "1"
        print(
            "pip-audit: PyPI's vulnerability API is not reachable from this machine; "
            "the locked dependencies were NOT audited."
            + (" Failing because HEARTH_REQUIRE_DEP_AUDIT=1." if required else ""),
            file=sys.stderr,
        )
        return 1 if required else 0
    command = [
        sys.executable, "-m", "pip_audit", "--strict", "--progress-spinner", "off",
        "--disable-pip", "--no-deps", "-r", "requirements.lock",
    ]  # fmt: skip
    return subprocess.call(command)


if __name__ == "__main__":
    sys.exit(main())
