"""The public facade ``igrs``: cheap to import, and every name it lists resolves."""

from __future__ import annotations

import json
import subprocess
import sys

import igrs


def test_import_igrs_loads_nothing_else() -> None:
    code = "import igrs, json, sys; print(json.dumps(sorted(m for m in sys.modules if m.startswith('igrs'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout) == ["igrs"]


def test_every_public_name_resolves() -> None:
    for name in igrs.__all__:
        assert getattr(igrs, name) is not None, name
    assert set(dir(igrs)) >= {"GroupManager", "ServiceProxy", "RemoteError", "DeviceNotFound", "current_peer",
                              "attach_file_server", "attach_dnssd", "DeviceExtension", "DiscoverySource"}
    assert issubclass(igrs.DeviceLost, igrs.SubscriptionEnded)
    assert issubclass(igrs.RemoteError, igrs.IGRSError)
