"""What verifying an OAuth access token costs per request, against a read without authentication.

Run: ``python -m bench tokens`` or ``python bench/tokens.py`` (prints a table, writes
``bench/results/tokens.json``).

One process, a fresh SQLite instance, the real ASGI app through Starlette's test client (no
network), one Patient. Interleaved round by round, so that load on the shared machine hits every
variant alike:

- ``unauthenticated read``: ``GET /bench/Patient/{id}``, a route added for this benchmark that
  does exactly what the FHIR read does (the gate's read as a fixed principal, with its audit
  entry, and the same JSON response) but authenticates nobody: the baseline;
- ``read, OAuth access token``: ``GET /fhir/Patient/{id}`` with a backend service's ES256 JWT
  (signature, claims, the cached grant check, scopes parsed and enforced);
- ``read, API token``: the same with a bootstrap API token (a cached digest lookup);
- ``verify alone``: ``Authenticator.authenticate_bearer`` on the JWT, outside any request, warm
  grant cache; and ``verify, grant cache cold``: the same with the grant looked up in SQLite
  every time (what one request in each 5 s window per grant pays).

Reported: medians, and the ratios of each to the unauthenticated read.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # ``python bench/tokens.py``
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from joserfc import jwt
from joserfc.jwk import ECKey
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from hearth.domain import Principal
from hearth.services.oauth import ClientSpec, Endpoints
from hearth.settings import load_settings
from hearth.web.app import create_app
from hearth.web.responses import fhir_response
from hearth.wiring import ADMIN_ROLE, Container, init_instance

RESULTS = Path(__file__).resolve().parent / "results" / "tokens.json"
ORIGIN = "http://127.0.0.1"
ROUNDS = 400
WARMUP = 30


def _assertion(key: ECKey, kid: str, client_id: str) -> str:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": f"{ORIGIN}/oauth/token",
        "exp": now + 240,
        "jti": f"bench-{time.monotonic_ns()}",
    }
    return jwt.encode({"alg": "ES384", "kid": kid}, claims, key, algorithms=["ES384"])


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 4)


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        result = init_instance(home)
        container = Container(load_settings(home))
        try:
            figures = _measure(container, result.admin_token)
        finally:
            container.close()
    _report(figures)


def _measure(container: Container, api_token: str) -> dict[str, list[float]]:
    admin = Principal("bench", roles=frozenset({ADMIN_ROLE}), source="127.0.0.1")
    patient = container.records(admin).create(
        "Patient", {"resourceType": "Patient", "active": True}
    )
    key = ECKey.generate_key("P-384")
    kid = "bench-key"
    client, _ = container.clients.register(
        ClientSpec(
            name="Benchmark service",
            kind="backend",
            auth_method="private_key_jwt",
            scope="system/Patient.rs",
            jwks={"keys": [{**key.as_dict(private=False), "kid": kid}]},
        ),
        by="bench",
    )

    async def unauthenticated_read(request: Request) -> Response:
        res_id = request.path_params["id"]
        stored = await run_in_threadpool(lambda: container.records(admin).read("Patient", res_id))
        return fhir_response(stored.resource, headers={"ETag": stored.etag})

    app = create_app(container)
    app.router.routes.insert(0, Route("/bench/Patient/{id}", unauthenticated_read))
    with TestClient(app, base_url=ORIGIN) as http:
        issued = http.post(
            "/oauth/token",
            data={
                "grant_type": "client_credentials",
                "scope": "system/Patient.rs",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": _assertion(key, kid, client.client_id),
            },
        )
        issued.raise_for_status()
        access_token = issued.json()["access_token"]
        path = f"Patient/{patient.res_id}"
        jwt_headers = {"Authorization": f"Bearer {access_token}"}
        api_headers = {"Authorization": f"Bearer {api_token}"}
        endpoints = Endpoints(f"{ORIGIN}/fhir")
        authenticator = container.authenticator

        def request(url: str, headers: dict[str, str] | None = None) -> Callable[[], None]:
            def run() -> None:
                response = http.get(url, headers=headers)
                if response.status_code != 200:
                    raise SystemExit(f"{url}: {response.status_code} {response.text[:200]}")

            return run

        def verify() -> None:
            authenticator.authenticate_bearer(access_token, source=None, endpoints=endpoints)

        def verify_cold() -> None:
            # The cold case: drop the cached grant states, so the grant is read from SQLite.
            container.tokens._grants.clear()
            verify()

        variants: dict[str, Callable[[], None]] = {
            "unauthenticated read": request(f"/bench/{path}"),
            "read, OAuth access token": request(f"/fhir/{path}", jwt_headers),
            "read, API token": request(f"/fhir/{path}", api_headers),
            "verify alone": verify,
            "verify, grant cache cold": verify_cold,
        }
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for round_no in range(WARMUP + ROUNDS):
            for name, work in variants.items():
                start = time.perf_counter()
                work()
                elapsed = time.perf_counter() - start
                if round_no >= WARMUP:
                    samples[name].append(elapsed)
    return samples


def _report(samples: dict[str, list[float]]) -> None:
    base = statistics.median(samples["unauthenticated read"])
    rows: list[dict[str, Any]] = []
    for name, values in samples.items():
        median = statistics.median(values)
        rows.append(
            {
                "measure": name,
                "median_ms": _median_ms(values),
                "p90_ms": round(sorted(values)[int(len(values) * 0.9)] * 1000, 4),
                "ratio_to_unauthenticated_read": round(median / base, 3),
            }
        )
    jwt_read = statistics.median(samples["read, OAuth access token"])
    summary = {
        "oauth_read_over_unauthenticated_read": round(jwt_read / base, 3),
        "verify_over_unauthenticated_read": round(
            statistics.median(samples["verify alone"]) / base, 3
        ),
        "rounds": ROUNDS,
    }
    width = max(len(r["measure"]) for r in rows)
    print(f"{'measure':<{width}}  median ms   p90 ms   x unauthenticated read")
    for r in rows:
        print(
            f"{r['measure']:<{width}}  {r['median_ms']:>9.3f} {r['p90_ms']:>8.3f}"
            f"   {r['ratio_to_unauthenticated_read']:>6.3f}"
        )
    print(
        f"an OAuth-authenticated read costs {summary['oauth_read_over_unauthenticated_read']}x "
        f"an unauthenticated one; verification alone is "
        f"{summary['verify_over_unauthenticated_read']}x of it"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "tokens",
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "python": platform.python_version(),
                "machine": platform.machine(),
                "rows": rows,
                "summary": summary,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
