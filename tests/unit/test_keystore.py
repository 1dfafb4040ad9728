"""Persistent identity and pairing records."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from igrs.core.security import LocalIdentity, PairingResult, PipeInitiator, PipeResponder
from igrs.node import keystore as keystore_mod
from igrs.node.keystore import KeyStore, KeyStoreError, PairedDevice, default_state_dir
from igrs.wire.ids import DeviceId


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> object:
    old = os.umask(0o022)
    yield
    os.umask(old)


def record(name: str = "TV", seed: int = 1) -> PairedDevice:
    other = LocalIdentity.generate(DeviceId.new(), os.urandom)
    return PairedDevice(other.device_id, other.public_key, name, 1_700_000_000.0 + seed)


def test_default_dir_honours_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IGRS_STATE_DIR", str(tmp_path / "s"))
    assert default_state_dir() == tmp_path / "s"
    assert KeyStore().directory == tmp_path / "s"
    monkeypatch.delenv("IGRS_STATE_DIR")
    assert default_state_dir() == Path("~/.local/state/igrs").expanduser()


def test_identity_created_once_with_private_permissions(tmp_path: Path, loose_umask: object) -> None:
    store = KeyStore(tmp_path / "state")
    wanted = DeviceId.new()
    ident = store.load_or_create_identity(wanted)
    assert ident.device_id == wanted
    assert mode(tmp_path / "state") == 0o700
    assert mode(tmp_path / "state" / "identity.key") == 0o600
    assert mode(tmp_path / "state" / "device.json") == 0o600
    again = KeyStore(tmp_path / "state").load_or_create_identity(DeviceId.new())
    assert again.device_id == wanted and again.public_key == ident.public_key


def test_identity_readable_by_others_is_refused(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    store.load_or_create_identity()
    os.chmod(tmp_path / "identity.key", 0o644)
    with pytest.raises(KeyStoreError):
        store.load_or_create_identity()


def test_add_list_get_remove(tmp_path: Path, loose_umask: object) -> None:
    store = KeyStore(tmp_path / "s")
    assert store.peers() == []
    tv, pc = record("TV", 1), record("PC", 2)
    store.add(tv)
    store.add(pc)
    assert mode(tmp_path / "s" / "peers.json") == 0o600
    assert [r.name for r in store.peers()] == ["PC", "TV"]
    assert store.get(tv.device_id) == tv
    assert store.peer_key(tv.device_id) == tv.public_key
    renamed = PairedDevice(tv.device_id, tv.public_key, "Living room TV", 5.0)
    store.add(renamed)  # re-pairing replaces
    assert len(store.peers()) == 2 and store.get(tv.device_id) == renamed
    assert store.remove(tv.device_id) is True
    assert store.remove(tv.device_id) is False
    assert store.peer_key(tv.device_id) is None
    doc = json.loads((tmp_path / "s" / "peers.json").read_text())
    assert doc["version"] == 1
    assert doc["peers"][0]["device_id"].startswith("urn:IGRS:Device:DeviceId:")
    assert doc["peers"][0]["fingerprint"] == pc.fingerprint


def test_atomic_write_keeps_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path)
    tv = record()
    store.add(tv)
    before = (tmp_path / "peers.json").read_bytes()

    def crash(src: str, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(keystore_mod.os, "replace", crash)
    with pytest.raises(OSError):
        store.add(record("PC"))
    monkeypatch.undo()
    assert (tmp_path / "peers.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "peers.json"]  # no temp left


def test_corrupt_records_are_reported(tmp_path: Path) -> None:
    store = KeyStore(tmp_path)
    tv = record()
    store.add(tv)
    path = tmp_path / "peers.json"
    doc = json.loads(path.read_text())
    doc["peers"][0]["fingerprint"] = "0000"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyStoreError):
        store.peers()
    for text in ("not json", '{"version": 2, "peers": []}', '{"version": 1, "peers": [{}]}'):
        path.write_text(text)
        with pytest.raises(KeyStoreError):
            store.peers()


def test_pairing_result_feeds_pipe_handshake(tmp_path: Path) -> None:
    a_store, b_store = KeyStore(tmp_path / "a"), KeyStore(tmp_path / "b")
    a, b = a_store.load_or_create_identity(), b_store.load_or_create_identity()
    a_store.add(PairedDevice.from_pairing(PairingResult(b.device_id, b.public_key, "TV"), 1.0))
    b_store.add(PairedDevice.from_pairing(PairingResult(a.device_id, a.public_key, "PC"), 1.0))
    ini = PipeInitiator(a, b.device_id, peers=a_store.peer_key)
    res = PipeResponder(b, peers=b_store.peer_key)
    msg = res.on_create_pipe_request(ini.create_pipe_request())
    msg = res.on_authenticate_request(ini.on_create_pipe_response(msg))
    msg = res.on_authenticate_result_request(ini.on_authenticate_response(msg))
    msg = res.on_create_pipe_result_request(ini.on_authenticate_result_response(msg, pipe_id=1))
    assert ini.on_create_pipe_result_response(msg).peer_key == b.public_key


_KILLED_WRITER = r"""
import os, sys, time
from igrs.node.keystore import KeyStore, PairedDevice
from igrs.wire.ids import DeviceId

real_fsync = os.fsync
def stuck_fsync(fd):  # the write is in its temporary file when the process is killed
    print("writing", flush=True)
    time.sleep(60)
os.fsync = stuck_fsync
KeyStore(sys.argv[1]).add(PairedDevice(DeviceId.new(), b"k" * 32, "TV", 1.0))
"""


def test_temporary_files_of_a_killed_write_are_removed_at_start(tmp_path: Path) -> None:
    """issue 12 item 11: SIGKILL during a write leaves .peers.json.<random>; the next start
    (the first locked access) removes it, and the stored records are intact."""
    import signal
    import subprocess
    import sys

    store = KeyStore(tmp_path)
    kept = record("kept")
    store.add(kept)
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "writing"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.wait(timeout=10)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".peers.json.")]
    assert leftovers, "the killed write left no temporary file"
    fresh = KeyStore(tmp_path)
    fresh.device_id()  # what a device or control point does first when it starts
    assert fresh.peers() == [kept]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".peers.json.")]
    assert (tmp_path / ".lock").exists()
