"""OpenSSH's sshd (Debian openssh-server) as a real SFTP server on a loopback port.

Runs as the current user with its own host key, its own authorized key and an in-process
``internal-sftp`` subsystem: ``/usr/sbin/sshd -D -e -f CONFIG -p PORT``. Keys are made with
``cryptography`` in OpenSSH format, so no ssh-keygen is needed.
"""

from __future__ import annotations

import getpass
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from tests.servers.common import free_port, port_open, require, wait_until

__all__ = ["SSHD", "SshServer", "make_ed25519_key"]

SSHD = "/usr/sbin/sshd"


def make_ed25519_key(path: Path) -> str:
    """Write an OpenSSH private key to ``path`` (mode 0600); return its public key line."""
    key = Ed25519PrivateKey.generate()
    path.write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.OpenSSH, NoEncryption()))
    path.chmod(0o600)
    return key.public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()


@dataclass
class SshServer:
    workdir: Path
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    host_key_line: str = ""
    client_key_path: Path = Path()
    sftp_root: Path = Path()
    startup_seconds: float = 0.0

    @property
    def username(self) -> str:
        return getpass.getuser()

    def client_key(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key_file(str(self.client_key_path))

    def start(self) -> None:
        require(Path(SSHD).is_file(), "OpenSSH server (sshd)", "apt-get install -y openssh-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        host_key = self.workdir / "ssh_host_ed25519_key"
        self.host_key_line = make_ed25519_key(host_key)
        self.client_key_path = self.workdir / "client_ed25519"
        client_public = make_ed25519_key(self.client_key_path)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(client_public + "\n")
        authorized.chmod(0o600)
        self.sftp_root = self.workdir / "sftp-root"
        self.sftp_root.mkdir()
        # sshd's privilege separation needs this directory when it runs as root.
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        self.port = free_port()
        config = self.workdir / "sshd_config"
        config.write_text(
            "\n".join(
                [
                    "ListenAddress 127.0.0.1",
                    f"HostKey {host_key}",
                    f"PidFile {self.workdir / 'sshd.pid'}",
                    f"AuthorizedKeysFile {authorized}",
                    "AuthenticationMethods publickey",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    f"AllowUsers {self.username}",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        start = time.monotonic()
        log = (self.workdir / "sshd.log").open("wb")
        self.process = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(config), "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        process = self.process
        wait_until(lambda: port_open(self.port) or process.poll() is not None, 20, "sshd")
        if process.poll() is not None:
            raise RuntimeError("sshd exited: " + (self.workdir / "sshd.log").read_text()[-2000:])
        self.startup_seconds = time.monotonic() - start

    def stop(self) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.process = None
