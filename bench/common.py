"""What the benchmarks share: servers on loopback, a wrk driver, RSS sampling, tables, JSON.

Figures are ratios measured side by side in one run plus medians over repeats: these machines
are shared and noisy, so a single time means little.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2 as httpx

RESULTS = Path(__file__).resolve().parent / "results"
POSTGRES_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    base: str
    rss_peak_kb: int = 0
    #: the peak of the server's resident set plus its children's (the index workers)
    rss_peak_with_children_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def sample_rss(self) -> None:
        """Track the peak resident set size of the server process while it runs, alone and
        with its child processes."""

        def rss_kb(pid: int) -> int:
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                return 0
            match = re.search(r"VmRSS:\s+(\d+) kB", text)
            return int(match.group(1)) if match else 0

        def children(pid: int) -> list[int]:
            """Children of every thread of ``pid`` (a worker is started by a request's)."""
            out: list[int] = []
            for listing in Path(f"/proc/{pid}/task").glob("*/children"):
                try:
                    out.extend(int(c) for c in listing.read_text().split())
                except OSError:
                    continue
            return out

        def run() -> None:
            pid = self.process.pid
            while not self._stop.is_set() and self.process.poll() is None:
                own = rss_kb(pid)
                if not own:
                    return
                self.rss_peak_kb = max(self.rss_peak_kb, own)
                total = own + sum(rss_kb(child) for child in children(pid))
                self.rss_peak_with_children_kb = max(self.rss_peak_with_children_kb, total)
                time.sleep(0.2)

        threading.Thread(target=run, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def hearth_serve(home: Path, port: int) -> list[str]:
    """The command line of ``hearth serve`` for ``home`` on ``port``, logging warnings only."""
    return [
        sys.executable,
        "-m",
        "hearth",
        "--home",
        str(home),
        "serve",
        "--log-level",
        "warning",
        "--port",
        str(port),
    ]


@contextmanager
def serve(
    argv: Sequence[str], port: int, ready_path: str, env: dict[str, str] | None = None
) -> Iterator[Server]:
    process = subprocess.Popen(
        list(argv),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early: {' '.join(argv)}")
        try:
            httpx.get(base + ready_path, timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("server did not start") from None
            time.sleep(0.1)
    server = Server(process, base)
    server.sample_rss()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    requests: int


def _ms(value: str) -> float:
    number = float(re.match(r"[\d.]+", value).group(0))  # type: ignore[union-attr]
    if value.endswith("us"):
        return number / 1000
    if value.endswith("ms"):
        return number
    if value.endswith("s"):
        return number * 1000
    return number


def wrk(
    url: str, lua: str, *, duration: float, connections: int = 16, timeout: float | None = None
) -> WrkResult:
    """Drive ``url`` with wrk (one thread: the other core serves) and parse its report.
    ``timeout``: seconds before wrk counts a request as an error (its default is 2)."""
    tool = shutil.which("wrk")
    if tool is None:
        raise SystemExit("the benchmarks need wrk: apt-get install wrk")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua)
    try:
        out = subprocess.run(
            [
                tool,
                "-t1",
                f"-c{connections}",
                f"-d{int(duration)}s",
                "--latency",
                *([f"--timeout={int(timeout)}s"] if timeout else []),
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 60 + (timeout or 0),
        ).stdout
    finally:
        os.unlink(script.name)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"\s+(50|90|99)%\s+(\S+)", out))
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in re.findall(r"\d+", socket_errors.group(1)))
    return WrkResult(rps, _ms(latency["50"]), _ms(latency["90"]), _ms(latency["99"]), errors, total)


def lua_requests(
    method: str,
    paths: Sequence[str],
    body: str | None,
    token: str,
    content_type: str = "application/fhir+json",
) -> str:
    """A wrk script cycling through ``paths``; ``{id}`` in a body is replaced by the path's id."""
    quoted = ",".join(json.dumps(p) for p in paths)
    body_lua = "nil" if body is None else json.dumps(body)
    return f"""
local paths = {{{quoted}}}
local body = {body_lua}
local n = 0
wrk.headers["Authorization"] = "Bearer {token}"
wrk.headers["Content-Type"] = "{content_type}"
wrk.headers["Prefer"] = "return=minimal"
request = function()
  n = n + 1
  local path = paths[(n % #paths) + 1]
  local b = nil
  if body ~= nil then
    local id = string.match(path, "/([^/]+)$")
    b = string.gsub(body, "{{id}}", id or "")
  end
  return wrk.format("{method}", path, nil, b)
end
"""


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def temp_postgres_database() -> tuple[str, str]:
    """Create a throwaway PostgreSQL database; returns (url, name)."""
    from sqlalchemy import create_engine, text

    name = f"hearth_bench_{secrets.token_hex(4)}"
    engine = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return f"postgresql://postgres@127.0.0.1:5432/{name}", name


def drop_postgres_database(name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(POSTGRES_ADMIN, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


def machine() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit,
    }


def write_results(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=_json) + "\n")
    return path


def _json(value: object) -> object:
    if hasattr(value, "__dataclass_fields__"):
        return asdict(value)  # type: ignore[call-overload]
    raise TypeError(type(value))


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in header]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if value < 100 else f"{value:,.0f}"
    return str(value)
