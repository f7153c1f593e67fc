"""Concurrent writes over HTTP, on every engine: clients racing with ``If-Match`` on a few shared
Patients while others create, through a real server whose single writes share transactions
(docs/design.md, "Group commit for writes"). No update is lost, every stale one is refused,
and the records and the audit chain verify afterwards."""

from __future__ import annotations

import random
import threading
from typing import Any

import httpx2 as httpx
import pytest

from hearth.services.integrity import verify_audit, verify_integrity
from tests.integration.conftest import LiveServer

pytestmark = pytest.mark.engines

CLIENTS = 12
EACH = 15


def patient(**extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": "Racer"}], **extra}


def test_racing_clients_lose_no_update_and_everything_verifies(
    engine_live_server: LiveServer,
) -> None:
    server = engine_live_server
    groups = server.instance.container.write_groups
    real = groups._run
    sizes: list[int] = []

    def counted(members: list[Any]) -> None:
        sizes.append(len(members))
        real(members)

    groups._run = counted
    headers = {
        "Authorization": f"Bearer {server.token}",
        "Content-Type": "application/fhir+json",
    }
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as setup:
        shared = [setup.post("/Patient", json=patient()).json()["id"] for _ in range(3)]
    updated = dict.fromkeys(shared, 0)
    created: list[str] = []
    stale = 0
    failures: list[str] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        try:
            race(n)
        except Exception as exc:  # noqa: BLE001 - reported by the assertion on ``failures``
            failures.append(repr(exc))

    def race(n: int) -> None:
        nonlocal stale
        rnd = random.Random(n)
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
            for k in range(EACH):
                if rnd.random() < 0.4:
                    response = http.post("/Patient", json=patient(gender="other"))
                    if response.status_code != 201:
                        failures.append(f"create {response.status_code}")
                        continue
                    with lock:
                        created.append(response.json()["id"])
                    continue
                res_id = rnd.choice(shared)
                etag = http.get(f"/Patient/{res_id}").headers["etag"]
                body = patient(id=res_id, birthDate=f"19{10 + n}-01-{1 + k:02d}")
                response = http.put(f"/Patient/{res_id}", json=body, headers={"If-Match": etag})
                with lock:
                    if response.status_code == 200:
                        updated[res_id] += 1
                    elif response.status_code == 412:
                        stale += 1
                    else:
                        failures.append(f"update {response.status_code}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []
    assert max(sizes) > 1  # the racing writes did share transactions
    assert len(created) == len(set(created))
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as check:
        for res_id, count in updated.items():
            assert check.get(f"/Patient/{res_id}").json()["meta"]["versionId"] == str(count + 1)
        for res_id in created:
            assert check.get(f"/Patient/{res_id}").status_code == 200
    assert sum(updated.values()) + stale + len(created) == CLIENTS * EACH
    container = server.instance.container
    assert verify_integrity(container.system_repository("test")).ok
    assert verify_audit(container.system_repository("test")).ok
