"""An N-node ejabberd cluster on loopback for the tests, built from servers.EjabberdServer.

Every node runs the shipped configuration (igrs/xmpp/deploy/ejabberd.yml) with its own Erlang
node name, c2s and component ports, spool and logs; all share one private epmd and one
certificate. Nodes 2..N join node 1 with ``ejabberdctl join_cluster`` (Mnesia replication:
accounts, rosters, offline messages). ``kill(node)`` is SIGKILL to that node's beam, the crash
the failover test needs; ``close()`` stops every node by PID and removes the directories.
"""

from __future__ import annotations

import os
import shutil
import signal
import time

from netbed import wait_until
from servers import EjabberdServer, Epmd, make_cert, make_workdir


class EjabberdCluster:
    """``with EjabberdCluster(2) as c:`` -- nodes started and joined; ``c.nodes[i]``."""

    def __init__(self, size: int = 2, *, component_secret: str = "igrs-test-component",
                 resume_window: int = 5) -> None:  # fmt: skip
        self.size = size
        self.component_secret = component_secret
        self.resume_window = resume_window
        self.epmd: Epmd | None = None
        self.nodes: list[EjabberdServer] = []
        self._certdir = make_workdir("igrs-ejabberd-cert-")

    def __enter__(self) -> EjabberdCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.epmd = Epmd()
        cert = make_cert(self._certdir, "localhost")
        for path in cert:
            os.chmod(path, 0o644)
        tag = f"{os.getpid()}x{self.epmd.port}"
        for i in range(1, self.size + 1):
            node = EjabberdServer(node=f"igrs{i}_{tag}", epmd=self.epmd, cert=cert,
                                  component_secret=self.component_secret,
                                  resume_window=self.resume_window)  # fmt: skip
            self.nodes.append(node)
            node.start()
        for node in self.nodes[1:]:
            node.join_cluster(self.nodes[0])
        want = {n.node for n in self.nodes}
        if not wait_until(lambda: want <= set(self.list_cluster(self.nodes[0])), 15):
            raise RuntimeError(f"cluster did not form: {self.list_cluster(self.nodes[0])}")

    @staticmethod
    def list_cluster(node: EjabberdServer) -> list[str]:
        return [w.strip("'") for w in node.ctl_cmd("list_cluster").stdout.split()]

    def kill(self, node: EjabberdServer) -> float:
        """SIGKILL the node's beam (a crash: no presence retracted); the monotonic time of the kill."""
        os.kill(node.pid, signal.SIGKILL)
        t = time.monotonic()
        node.stop(kill=True)  # reaps/waits until the PID is gone
        return t

    def close(self) -> None:
        for node in self.nodes:
            node.close()
        if self.epmd is not None:
            self.epmd.stop()
        shutil.rmtree(self._certdir, ignore_errors=True)
