"""Throw-away XMPP servers for tests: Prosody and ejabberd on loopback, own dirs, stopped by PID.

Each server gets its own directory (config rendered from the shipped templates in
igrs/xmpp/deploy, data, logs, a self-signed certificate for its domain) and free non-default
ports. ejabberd runs as the ``ejabberd`` user (ejabberdctl switches to it), so its directory
is made traversable and chowned; its Erlang port mapper is started here on a private port and
stopped by PID too. Several ejabberd nodes (``EjabberdServer(node="ejabberd2", epmd=...)``)
can share one ``Epmd`` and be joined with ``join_cluster``.

Reusable by other test modules: ``make_cert``, ``ProsodyServer``, ``EjabberdServer``,
``Epmd``, ``start_server(kind, ...)``; a missing binary skips (CI fails, tests/support.py).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import skip_or_fail

from igrs.xmpp.deploy import render_ejabberd, render_prosody

LOOPBACK = "127.0.0.1"
START_TIMEOUT = 20.0  # s
STOP_TIMEOUT = 15.0  # s
RESUME_WINDOW = 4  # s, XEP-0198 window of test servers: an unclean disconnect shows within a test


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float = START_TIMEOUT, proc: subprocess.Popen[bytes] | None = None,
                   log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        with contextlib.suppress(OSError), socket.create_connection((LOOPBACK, port), 0.2):
            return
        time.sleep(0.03)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise RuntimeError(f"server did not listen on {port} within {timeout} s\n{tail}")


def wait_pid_gone(pid: int, timeout: float = STOP_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.03)
    return False


def make_workdir(prefix: str) -> Path:
    """A directory every user may traverse (pytest's tmp_path is 0700, ejabberd runs as its user)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def make_cert(directory: Path, hostname: str) -> tuple[Path, Path, Path]:
    """Self-signed P-256 certificate for ``hostname`` (and its subdomains); (cert, key, bundle)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname), x509.DNSName("*." + hostname)]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    paths = directory / "cert.pem", directory / "key.pem", directory / "bundle.pem"
    paths[0].write_bytes(cert_pem)
    paths[1].write_bytes(key_pem)
    paths[2].write_bytes(key_pem + cert_pem)
    return paths


def need(binary: str) -> str:
    path = shutil.which(binary) or next((p for p in (f"/usr/sbin/{binary}", f"/usr/bin/{binary}")
                                         if os.path.exists(p)), None)
    if path is None:
        skip_or_fail(f"{binary} is not installed (Debian package; .ci/run installs it)")
        raise AssertionError  # unreachable: skip_or_fail raises
    return path


class ProsodyServer:
    """One Prosody process in the foreground, PID kept; ``restart`` keeps data and ports."""

    kind = "prosody"

    def __init__(self, root: Path | None = None, *, domain: str = "localhost",
                 component_domain: str | None = None, component_secret: str | None = None,
                 allow_registration: bool = True, resume_window: int = 20,
                 data_dir: Path | None = None) -> None:
        """``data_dir``: share another server's accounts and rosters (client failover tests)."""
        self.binary = need("prosody")
        self.ctl = need("prosodyctl")
        self.root = root or make_workdir("igrs-prosody-")
        self.domain = domain
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.component_domain = component_domain or f"igrs.{domain}"
        self.component_secret = component_secret
        self.cert, self.key, self.bundle = make_cert(self.root, domain)
        self.data_dir = data_dir or self.root / "data"
        self.data_dir.mkdir(exist_ok=True)
        (self.root / "certs").mkdir(exist_ok=True)  # Prosody indexes it next to the config
        self.config = self.root / "prosody.cfg.lua"
        self.log = self.root / "prosody.log"
        self.config.write_text(render_prosody(
            domain=domain, data_dir=self.data_dir, cert=self.cert, key=self.key,
            c2s_port=self.c2s_port, interface=LOOPBACK, component_port=self.component_port,
            component_domain=self.component_domain, component_secret=component_secret,
            allow_registration=allow_registration, registration_throttle_max=100000,
            resume_window=resume_window, log=f'info = "{self.log}"', run_as_root=os.geteuid() == 0,
        ))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--config", str(self.config), "-F"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_listening(self.c2s_port, proc=self.proc, log=self.log)
        if self.component_secret:
            wait_listening(self.component_port, proc=self.proc, log=self.log)

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def register(self, user: str, password: str) -> None:
        subprocess.run([self.ctl, "--config", str(self.config), "register", user, self.domain, password],
                       check=True, capture_output=True, timeout=30)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class Epmd:
    """A private Erlang port mapper on loopback (the shared default port 4369 stays untouched)."""

    def __init__(self) -> None:
        self.binary = need("epmd")
        self.port = free_port()
        self.proc = subprocess.Popen([self.binary, "-port", str(self.port), "-address", LOOPBACK],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        wait_listening(self.port, proc=self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class EjabberdServer:
    """One ejabberd node started with ``ejabberdctl start``; its beam PID is read from the pid file."""

    kind = "ejabberd"

    def __init__(self, root: Path | None = None, *, node: str = "ejabberd1", domain: str = "localhost",
                 epmd: Epmd | None = None, component_domain: str | None = None,
                 component_secret: str | None = None, allow_registration: bool = True,
                 resume_window: int = 20, cert: tuple[Path, Path, Path] | None = None) -> None:
        self.ctl = need("ejabberdctl")
        self.root = root or make_workdir(f"igrs-{node}-")
        self.node = f"{node}@localhost"
        self.domain = domain
        self.own_epmd = epmd is None
        self.epmd = epmd or Epmd()
        self.c2s_port = free_port()
        self.component_port = free_port()
        self.api_port = free_port()  # HTTP API (bind component's roster writes), loopback
        self.component_domain = component_domain or f"igrs.{domain}"
        self.component_secret = component_secret or "igrs-test-component"
        self.cert, self.key, self.bundle = cert or make_cert(self.root, domain)
        self.config = self.root / "ejabberd.yml"
        self.ctl_config = self.root / "ejabberdctl.cfg"
        self.spool = self.root / "spool"
        self.logs = self.root / "logs"
        self.pidfile = self.root / "ejabberd.pid"
        for d in (self.spool, self.logs):
            d.mkdir(exist_ok=True)
        self.config.write_text(render_ejabberd(
            domain=domain, certbundle=self.bundle, c2s_port=self.c2s_port, interface=LOOPBACK,
            component_domain=self.component_domain, component_secret=self.component_secret,
            component_port=self.component_port, allow_registration=allow_registration,
            resume_window=resume_window, registration_timeout="infinity", api_port=self.api_port,
        ))
        self.ctl_config.write_text(
            f'ERLANG_NODE={self.node}\nINET_DIST_INTERFACE={LOOPBACK}\nERL_EPMD_ADDRESS={LOOPBACK}\n'
            f'EJABBERD_PID_PATH={self.pidfile}\nERL_OPTIONS="-env ERL_CRASH_DUMP_BYTES 0"\n'
        )
        if os.geteuid() == 0:
            user = pwd.getpwnam("ejabberd")
            for p in [self.root, *self.root.rglob("*")]:
                os.chown(p, user.pw_uid, user.pw_gid)
        self.pid = 0

    def ctl_cmd(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "ERL_EPMD_PORT": str(self.epmd.port)}
        as_user: dict[str, Any] = {}
        if os.geteuid() == 0:
            # As the ejabberd user ourselves, not through ejabberdctl's su: su's PAM session sets
            # the node's soft open-file limit back to 1,024 (pam_limits starts from init's), so
            # a node could not hold the benchmark's 2,000 clients ("too many open files").
            user = pwd.getpwnam("ejabberd")
            as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
            env["HOME"] = user.pw_dir  # the Erlang cookie, as su gave it
        return subprocess.run(
            [self.ctl, "-c", str(self.ctl_config), "-f", str(self.config), "-s", str(self.spool),
             "-l", str(self.logs), "-n", self.node, *args],
            env=env, capture_output=True, text=True, timeout=timeout, cwd=self.root, **as_user,
        )

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        r = self.ctl_cmd("start")
        if r.returncode != 0:
            raise RuntimeError(f"ejabberdctl start: {r.stdout}{r.stderr}")
        deadline = time.monotonic() + START_TIMEOUT
        while not self.pidfile.exists() or not self.pidfile.read_text().strip():
            if time.monotonic() > deadline:
                raise RuntimeError("ejabberd wrote no pid file\n" + self._log_tail())
            time.sleep(0.03)
        self.pid = int(self.pidfile.read_text().strip())
        wait_listening(self.c2s_port, log=self.logs / "ejabberd.log")

    def _log_tail(self) -> str:
        out = []
        for f in self.logs.glob("*.log"):
            out.append(f.read_text(errors="replace")[-3000:])
        return "\n".join(out)

    def stop(self, *, kill: bool = False) -> None:
        if not self.pid:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL if kill else signal.SIGTERM)
        if not wait_pid_gone(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            wait_pid_gone(self.pid)
        self.pid = 0

    def restart(self) -> None:
        self.stop()
        self.start()

    def register(self, user: str, password: str) -> None:
        r = self.ctl_cmd("register", user, self.domain, password)
        if r.returncode != 0:
            raise RuntimeError(f"ejabberdctl register: {r.stdout}{r.stderr}")

    def join_cluster(self, other: EjabberdServer) -> None:
        r = self.ctl_cmd("join_cluster", other.node)
        if r.returncode != 0:
            raise RuntimeError(f"ejabberdctl join_cluster: {r.stdout}{r.stderr}")

    def close(self) -> None:
        self.stop()
        if self.own_epmd:
            self.epmd.stop()
        shutil.rmtree(self.root, ignore_errors=True)


Server = ProsodyServer | EjabberdServer


def start_server(kind: str, prepare: Callable[[Server], None] | None = None, **options: object) -> Server:
    """Start a server of ``kind`` ("prosody" or "ejabberd"); the caller closes it. ``prepare``
    may change its files (its config) before it starts (benchmarks/bench_xmpp.py lifts limits)."""
    server: Server = ProsodyServer(**options) if kind == "prosody" else EjabberdServer(**options)  # type: ignore[arg-type]
    try:
        if prepare is not None:
            prepare(server)
        server.start()
    except BaseException:
        server.close()
        raise
    return server
