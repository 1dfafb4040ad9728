"""An N-node ejabberd cluster on loopback, for the tests (throw-away dirs, own ports and names).

Each node gets its own Erlang node name (``igrsN@localhost``), c2s and component ports, spool,
logs and config; the Erlang distribution and epmd are bound to 127.0.0.1 on a port of their own
(``ERL_EPMD_PORT``), so a system ejabberd or epmd is never touched. Nodes 2..N join node 1 with
``ejabberdctl join_cluster`` (Mnesia replication: accounts, rosters, offline messages).
``kill(i)`` is ``SIGKILL`` to that node's beam (PID from ``EJABBERD_PID_PATH``), the crash the
failover test needs; ``close()`` stops every node by PID and removes the directories.

ejabberdctl runs the node as the ``ejabberd`` system user (Debian package), so the directories
live under /tmp with that owner, not under pytest's root-only tmp_path.
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
from dataclasses import dataclass, field
from pathlib import Path

from netbed import free_port, wait_until

EJABBERDCTL = shutil.which("ejabberdctl") or "/usr/sbin/ejabberdctl"
DOMAIN = "localhost"
COMPONENT = "igrs.localhost"

# A minimal ejabberd 23.01 configuration: TLS required, SCRAM, server pings that kill, a short
# XEP-0198 resume window, privacy lists (the strangers rule), offline storage, the component
# port and mod_admin_extra (add_rosteritem / privacy_set for the component).
_CONFIG = """\
hosts: ["{domain}"]
loglevel: warning
log_rotate_count: 0
certfiles: ["{cert}"]
listen:
  - port: {c2s}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
  - port: {component}
    ip: "127.0.0.1"
    module: ejabberd_service
    hosts:
      "{component_domain}":
        password: "{secret}"
auth_method: internal
auth_password_format: scram
s2s_access: none
acl:
  loopback:
    ip: ["127.0.0.0/8"]
access_rules:
  register:
    allow: loopback
api_permissions:
  "console commands":
    from: [ejabberd_ctl]
    who: all
    what: "*"
modules:
  mod_disco: {{}}
  mod_roster: {{}}
  mod_privacy: {{}}
  mod_blocking: {{}}
  mod_admin_extra: {{}}
  mod_offline:
    store_empty_body: true
  mod_ping:
    send_pings: true
    ping_interval: {ping_interval}
    ping_ack_timeout: {ping_ack_timeout}
    timeout_action: kill
  mod_stream_mgmt:
    resume_timeout: {resume}
    max_resume_timeout: {resume}
  mod_register:
    ip_access: register
"""

_CTL_CONFIG = """\
INET_DIST_INTERFACE=127.0.0.1
ERL_EPMD_ADDRESS=127.0.0.1
EJABBERD_PID_PATH={pidfile}
"""


def self_signed_pem(path: Path, host: str = DOMAIN) -> Path:
    """A P-256 certificate and key for ``host`` in one PEM (ejabberd's certfiles format)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host), x509.DNSName(f"*.{host}")]), False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key_pem)
    return path


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class EjabberdNode:
    index: int
    name: str  # Erlang node name, igrsN@localhost
    c2s_port: int
    component_port: int
    root: Path
    env: dict[str, str] = field(repr=False)

    @property
    def pidfile(self) -> Path:
        return self.root / "ejabberd.pid"

    def ctl_argv(self, *args: str) -> list[str]:
        return [
            EJABBERDCTL, "-c", str(self.root / "ejabberdctl.cfg"), "-n", self.name,
            "-f", str(self.root / "ejabberd.yml"), "-s", str(self.root / "spool"),
            "-l", str(self.root / "logs"), *args,
        ]  # fmt: skip

    def ctl(self, *args: str, timeout: float = 30.0, check: bool = True) -> subprocess.CompletedProcess[str]:
        p = subprocess.run(self.ctl_argv(*args), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError(f"ejabberdctl {' '.join(args)} -> {p.returncode}: {p.stdout}{p.stderr}")
        return p

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    def alive(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def log_text(self) -> str:
        try:
            return (self.root / "logs" / "ejabberd.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""


class EjabberdCluster:
    """``with EjabberdCluster(2) as c:`` -- nodes started and joined; ``c.nodes[i]``."""

    def __init__(
        self,
        size: int = 2,
        *,
        component_secret: str = "component-secret",
        resume_window: int = 5,
        ping_interval: int = 10,
        ping_ack_timeout: int = 5,
    ) -> None:
        self.size = size
        self.component_secret = component_secret
        self.base = Path(tempfile.mkdtemp(prefix="igrs-ejabberd-"))
        self.epmd_port = free_port("tcp")
        self.env = dict(os.environ, ERL_EPMD_PORT=str(self.epmd_port))
        self.resume_window = resume_window
        self.ping_interval = ping_interval
        self.ping_ack_timeout = ping_ack_timeout
        self.nodes: list[EjabberdNode] = []
        self._ejuser = pwd.getpwnam("ejabberd")
        self._tag = f"{os.getpid()}x{self.epmd_port}"
        self.cert = self_signed_pem(self.base / "cert.pem")

    def __enter__(self) -> EjabberdCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _own(self, path: Path) -> None:
        os.chown(path, self._ejuser.pw_uid, self._ejuser.pw_gid)

    def _make_node(self, i: int) -> EjabberdNode:
        root = self.base / f"n{i}"
        for d in (root, root / "spool", root / "logs"):
            d.mkdir(parents=True, exist_ok=True)
            self._own(d)
        node = EjabberdNode(
            index=i, name=f"igrs{i}_{self._tag}@localhost", c2s_port=free_port("tcp"),
            component_port=free_port("tcp"), root=root, env=self.env,
        )  # fmt: skip
        (root / "ejabberd.yml").write_text(
            _CONFIG.format(
                domain=DOMAIN, cert=self.cert, c2s=node.c2s_port, component=node.component_port,
                component_domain=COMPONENT, secret=self.component_secret, resume=self.resume_window,
                ping_interval=self.ping_interval, ping_ack_timeout=self.ping_ack_timeout,
            )
        )  # fmt: skip
        (root / "ejabberdctl.cfg").write_text(_CTL_CONFIG.format(pidfile=node.pidfile))
        return node

    def start(self) -> None:
        os.chmod(self.base, 0o755)
        self._own(self.cert)
        for i in range(1, self.size + 1):
            node = self._make_node(i)
            self.nodes.append(node)
            self.start_node(node)
        for node in self.nodes[1:]:
            self.join(node)

    def start_node(self, node: EjabberdNode, timeout: float = 30.0) -> None:
        node.ctl("start")
        def up() -> bool | None:
            if "Failed to start ejabberd" in node.log_text():
                return None if not port_open(node.c2s_port) else True
            return port_open(node.c2s_port) and node.alive()

        if not wait_until(lambda: up() or "Failed to start" in node.log_text(), timeout) or not up():
            raise RuntimeError(f"ejabberd {node.name} did not listen on {node.c2s_port}:\n{node.log_text()}")

    def join(self, node: EjabberdNode) -> None:
        node.ctl("join_cluster", self.nodes[0].name, timeout=60)
        names = {n.name for n in self.nodes if n.alive()}
        ok = wait_until(lambda: names <= set(self.list_cluster(node)), 15)
        if not ok:
            raise RuntimeError(f"{node.name} did not join: {self.list_cluster(node)}")

    def list_cluster(self, node: EjabberdNode) -> list[str]:
        out = node.ctl("list_cluster", check=False).stdout
        return [w.strip("'") for w in out.split()]

    def register(self, user: str, password: str, node: EjabberdNode | None = None) -> None:
        (node or self.nodes[0]).ctl("register", user, DOMAIN, password)

    def kill(self, node: EjabberdNode) -> float:
        """SIGKILL the node's beam; returns the monotonic time of the kill."""
        pid = node.pid()
        if pid is None:
            raise RuntimeError(f"no pid for {node.name}")
        os.kill(pid, signal.SIGKILL)
        t = time.monotonic()
        wait_until(lambda: not node.alive(), 5)
        node.pidfile.unlink(missing_ok=True)
        return t

    def close(self) -> None:
        for node in self.nodes:
            pid = node.pid()
            if pid is None or not node.alive():
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            if not wait_until(lambda n=node: not n.alive(), 5):  # type: ignore[misc]
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        # epmd was started by the first beam on our own port: stop it (it names no node now).
        epmd = shutil.which("epmd") or "/usr/bin/epmd"
        subprocess.run([epmd, "-port", str(self.epmd_port), "-kill"], env=self.env,
                       capture_output=True, timeout=10, check=False)  # fmt: skip
        shutil.rmtree(self.base, ignore_errors=True)

