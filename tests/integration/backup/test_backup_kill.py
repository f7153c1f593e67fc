"""``hearth backup create`` killed with SIGKILL at 20 points never leaves a backup that verifies
but restores wrong, and the next run succeeds (issue 6 item 9).

The kill points are random delays drawn from a seeded generator (``HEARTH_TEST_SEED``, printed
on failure) across the measured length of a run, so they land in start-up, the snapshot, segment
uploads, the manifest and the head's recording.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hearth.services.backup import BackupService
from hearth.targets import LocalDirectoryTarget
from hearth.wiring import backup_decryptor, backup_service, create_backup_recipient
from tests.integration.backup.conftest import rows, seed
from tests.support import Instance, make_instance

KILLS = 20


def create_process(home: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HEARTH_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "hearth", "--home", str(home), "backup", "create"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def started_run(home: Path, lock: Path, kill_after: float | None) -> tuple[int, float]:
    """Run ``hearth backup create``; ``kill_after`` seconds after it takes the backup lock,
    SIGKILL it. Returns its exit code and how long it ran after taking the lock."""
    lock.unlink(missing_ok=True)
    proc = create_process(home)
    while not lock.exists() and proc.poll() is None:
        time.sleep(0.005)
    locked = time.monotonic()
    try:
        code = proc.wait(timeout=kill_after if kill_after is not None else 120)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        code = proc.wait(timeout=60)
    return code, time.monotonic() - locked


@pytest.fixture
def instance(tmp_path: Path) -> Instance:
    inst = make_instance(tmp_path / "home", None)
    yield inst  # type: ignore[misc]
    inst.container.close()


def test_sigkill_never_leaves_a_backup_that_restores_wrong(
    instance: Instance, tmp_path: Path
) -> None:
    seed_value = int(os.environ.get("HEARTH_TEST_SEED", "6"))
    rng = random.Random(seed_value)
    settings = instance.container.settings
    made = create_backup_recipient(settings)
    identity = tmp_path / "id.key"
    identity.write_text(made.identity_file.reveal())
    decryptor = backup_decryptor(identity)
    target = LocalDirectoryTarget(settings.home / "backups", label="local")
    service: BackupService = backup_service(settings, instance.container, targets=[target])
    seed(instance, 10)
    # Kill points are drawn across the backup's own work: from the moment the run takes the
    # backup lock (after start-up, which tests nothing of ours) to its end, measured on the
    # latest run that finished (machines here are shared and their speed varies). Runs that
    # finish first do not count: the loop goes on until 20 runs were really killed.
    lock = settings.home / ".backup" / "backup.lock"
    length = started_run(settings.home, lock, None)[1]
    checked: set[str] = set()
    kills = attempts = 0
    while kills < KILLS:
        attempts += 1
        assert attempts <= 3 * KILLS, f"runs kept finishing before their kill point ({kills})"
        seed(instance, 2, tag=f"K{attempts}")
        delay = rng.uniform(0.0, 1.0) * length
        code, work = started_run(settings.home, lock, delay)
        if code == -signal.SIGKILL:
            kills += 1
        else:
            assert code == 0
            length = work
        # Every manifest, link and segment hash; the restores below read every new segment.
        report = service.verify()
        assert report.ok, (seed_value, attempts, delay, report.to_json())
        source = rows(instance.settings_url, "resource_version", "seq")
        for info in service.list_backups():
            if info.backup_id in checked:
                continue
            url = f"sqlite:///{tmp_path / f'{info.backup_id}.db'}"
            restored = service.restore(info.backup_id, into=url, decryptor=decryptor)
            assert restored.sequence == info.sequence_to
            assert rows(url, "resource_version", "seq") == source[: info.sequence_to]
            checked.add(info.backup_id)
    # The next run succeeds and continues the chain.
    proc = create_process(settings.home)
    assert proc.wait(timeout=60) == 0
    assert service.verify(decryptor=decryptor).ok
    newest = service.list_backups()[-1]
    url = f"sqlite:///{tmp_path / 'final.db'}"
    service.restore(newest.backup_id, into=url, decryptor=decryptor)
    assert rows(url, "resource_version", "seq") == rows(
        instance.settings_url, "resource_version", "seq"
    )
