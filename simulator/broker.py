"""A throwaway mosquitto on a free loopback port, for the demo and the tests.

It runs with a password file and persistence, configured the way a head-end's broker
must be for no read to be lost: persistent sessions keep every queued message
(max_queued_messages 0 = unlimited) and are saved to disk.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from simulator.ports import free_port


def mosquitto_binary() -> str | None:
    for candidate in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


class Mosquitto:
    def __init__(self, users: dict[str, str] | None = None, port: int = 0,
                 tls: bool = False) -> None:
        """With `tls`, a throwaway CA signs a certificate for 127.0.0.1: `ca_file` is
        what a client must trust."""
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: run ./dev setup")
        self.binary = binary
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="collector-mqtt-"))
        self.users = users or {"collector": "secret"}
        self.proc: subprocess.Popen[bytes] | None = None
        passwd = self.dir / "passwd"
        passwd.write_text("")
        for user, password in self.users.items():
            subprocess.run([shutil.which("mosquitto_passwd") or "mosquitto_passwd", "-b",
                            str(passwd), user, password], check=True, capture_output=True)
        run_as = "user root\n" if os.geteuid() == 0 else ""
        tls_lines = self._make_certificates() if tls else ""
        (self.dir / "mosquitto.conf").write_text(
            f"{run_as}listener {self.port} 127.0.0.1\n{tls_lines}"
            "allow_anonymous false\n"
            f"password_file {passwd}\n"
            "persistence true\n"
            f"persistence_location {self.dir}/\n"
            "autosave_interval 1\n"
            "max_queued_messages 0\n"
            "max_inflight_messages 0\n"
            f"log_dest file {self.dir}/mosquitto.log\n"
        )
        os.chmod(passwd, 0o600)

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.crt")

    def _make_certificates(self) -> str:
        d = self.dir
        (d / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        for args in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
             "ca.crt", "-days", "2", "-subj", "/CN=collector-test-ca"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
             "server.csr", "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf"],
        ):
            subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)
        return f"cafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.dir / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: see {self.dir}/mosquitto.log")
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """SIGTERM saves the persistent sessions; SIGKILL loses what was not yet saved."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)
        self.proc = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
