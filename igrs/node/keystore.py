"""Persistent security state: this device's identity and its paired devices.

Layout of the state directory (specs/security.md §8), created 0700:

* ``identity.key`` — the Ed25519 private key, PKCS#8 PEM, 0600;
* ``device.json`` — ``{"device_id": "urn:IGRS:Device:DeviceId:<uuid>"}``, 0600;
* ``peers.json`` — ``{"version": 1, "peers": [PairedDevice...]}``, 0600;
* ``locations.json`` — devices located recently (igrs.node.locations; a cache), 0600.

Every file is written atomically (temporary file in the same directory, fsync, rename) under an
advisory lock, so the CLI (``igrs pair``/``igrs unpair``) and a running device can share it.
A running device also *claims* its directory (``owner.pid``, an exclusive ``flock`` held while
it runs): a second device on the same directory — the same identity — is refused.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from igrs.errors import IGRSError, ProtocolError
from igrs.wire.ids import DeviceId

if TYPE_CHECKING:  # the key modules are imported when a key is first needed
    from igrs.core.security import LocalIdentity, PairingResult

log = logging.getLogger(__name__)

STATE_DIR_ENV = "IGRS_STATE_DIR"
IDENTITY_FILE = "identity.key"
DEVICE_FILE = "device.json"
PEERS_FILE = "peers.json"
LOCATIONS_FILE = "locations.json"
LOCK_FILE = ".lock"
OWNER_FILE = "owner.pid"
FORMAT_VERSION = 1
DIR_MODE = 0o700
FILE_MODE = 0o600


class KeyStoreError(IGRSError):
    """The state directory holds something unreadable or inconsistent."""


class StateDirInUse(KeyStoreError):
    """Another running device holds this state directory (and so this identity)."""

    def __init__(self, directory: Path, pid: int | None) -> None:
        self.directory, self.pid = directory, pid
        super().__init__(f"state folder {directory} is in use by "
                         f"{f'pid {pid}' if pid else 'another process'}")


class Claim:
    """A device's hold on its state directory: an exclusive ``flock`` on ``owner.pid`` (which
    names the holder's pid for the message of a refused second device). The kernel drops the
    lock when the process dies, so a stale ``owner.pid`` of a dead process is simply taken
    over. ``release()`` (or process exit) gives it up."""

    def __init__(self, fd: int | None = None) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def default_state_dir() -> Path:
    env = os.environ.get(STATE_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path("~/.local/state/igrs").expanduser()


@dataclass(frozen=True, slots=True)
class PairedDevice:
    """One pairing record."""

    device_id: DeviceId
    public_key: bytes
    name: str
    paired_at: float  # seconds since the epoch

    @property
    def fingerprint(self) -> str:
        from igrs.core.security.identity import fingerprint

        return fingerprint(self.public_key)

    @classmethod
    def from_pairing(cls, result: PairingResult, paired_at: float) -> PairedDevice:
        return cls(result.peer, result.public_key, result.name, paired_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": str(self.device_id),
            "public_key": base64.b64encode(self.public_key).decode("ascii"),
            "fingerprint": self.fingerprint,
            "name": self.name,
            "paired_at": self.paired_at,
        }

    @classmethod
    def from_json(cls, data: Any) -> PairedDevice:
        try:
            key = base64.b64decode(data["public_key"], validate=True)
            if len(key) != 32:
                raise ValueError("public key is not 32 bytes")
            record = cls(
                DeviceId.parse(data["device_id"]),
                key,
                str(data.get("name", "")),
                float(data["paired_at"]),
            )
            stored = data.get("fingerprint")
            if stored is not None and stored != record.fingerprint:
                raise KeyStoreError(f"fingerprint mismatch for {record.device_id}")
            return record
        except (KeyError, TypeError, ValueError, ProtocolError) as exc:
            raise KeyStoreError(f"malformed pairing record: {exc}") from exc


class KeyStore:
    """File-backed identity and pairing records in ``directory`` (default: $IGRS_STATE_DIR or
    ~/.local/state/igrs)."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_state_dir()
        self._swept = False  # temporary files of interrupted writes removed (first lock)

    # --- files -------------------------------------------------------------------------
    def _ensure_dir(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(parents=True, mode=DIR_MODE)
            os.chmod(self.directory, DIR_MODE)  # mkdir's mode is filtered by the umask
        elif self.directory.stat().st_mode & 0o077:
            log.warning("state directory %s is accessible by other users", self.directory)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._ensure_dir()
        fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self._swept:
                self._sweep_temporaries()
                self._swept = True
            yield
        finally:
            os.close(fd)

    def _sweep_temporaries(self) -> None:
        """Remove the temporary files of writes a crash interrupted (``.peers.json.*``, ...).
        Runs under the lock, which every write holds: any such file left is stale."""
        prefixes = tuple(f".{name}." for name in (IDENTITY_FILE, DEVICE_FILE, PEERS_FILE, LOCATIONS_FILE))
        with os.scandir(self.directory) as entries:
            stale = [e.path for e in entries
                     if e.name.startswith(prefixes) and not e.is_dir(follow_symlinks=False)]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            log.info("removed %s, left by an interrupted write", path)

    def claim(self) -> Claim:
        """Hold the directory for this process (a running device); ``StateDirInUse`` when a
        live process holds it."""
        self._ensure_dir()
        fd = os.open(self.directory / OWNER_FILE, os.O_RDWR | os.O_CREAT, FILE_MODE)  # not inherited
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                text = os.read(fd, 32).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            raise StateDirInUse(self.directory, int(text) if text.isdigit() else None) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return Claim(fd)

    def _create_unique(self, name: str) -> tuple[int, Path]:
        """A new file ``.<name>.<random>`` in the folder, mode FILE_MODE, as tempfile.mkstemp
        makes it (not imported: with shutil, bz2 and lzma it is 0.9 MB of an idle device's RSS)."""
        for _ in range(100):
            tmp = self.directory / f".{name}.{os.urandom(6).hex()}"
            try:
                return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE), tmp
            except FileExistsError:
                continue
        raise FileExistsError(f"no free temporary name for {name} in {self.directory}")

    def _write_atomic(self, name: str, data: bytes) -> None:
        fd, tmp = self._create_unique(name)
        try:
            os.fchmod(fd, FILE_MODE)  # whatever the umask
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.directory / name)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        dfd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # --- identity ----------------------------------------------------------------------
    def device_id(self, default: DeviceId | None = None) -> DeviceId:
        """The stored device id; on first use ``default`` (or a new one) is stored. Reads no
        key, so a device that never pairs never loads the key modules."""
        with self._locked():
            dev_path = self.directory / DEVICE_FILE
            stored = self._stored_device_id(dev_path)
            if stored is not None:
                return stored
            device_id = default or DeviceId.new()
            self._write_atomic(DEVICE_FILE, _dump({"device_id": str(device_id)}))
            return device_id

    @staticmethod
    def _stored_device_id(dev_path: Path) -> DeviceId | None:
        try:
            return DeviceId.parse(json.loads(dev_path.read_bytes())["device_id"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
            raise KeyStoreError(f"cannot read {dev_path}: {exc}") from exc

    def load_or_create_identity(self, device_id: DeviceId | None = None) -> LocalIdentity:
        """This device's identity; created on first use, for the stored device id if there is
        one, else for ``device_id``."""
        from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

        from igrs.core.security.identity import LocalIdentity

        with self._locked():
            key_path = self.directory / IDENTITY_FILE
            dev_path = self.directory / DEVICE_FILE
            if key_path.exists():
                return self._load_identity(key_path, dev_path)
            identity = LocalIdentity.generate(self._stored_device_id(dev_path) or device_id)
            pem = identity.private_key.private_bytes(
                Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
            )
            self._write_atomic(DEVICE_FILE, _dump({"device_id": str(identity.device_id)}))
            self._write_atomic(IDENTITY_FILE, pem)
            log.info("created identity %s (%s)", identity.device_id, identity.fingerprint)
            return identity

    def _load_identity(self, key_path: Path, dev_path: Path) -> LocalIdentity:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import load_pem_private_key

        from igrs.core.security.identity import LocalIdentity

        if key_path.stat().st_mode & 0o077:
            raise KeyStoreError(f"{key_path} is readable by other users; fix with chmod 600")
        try:
            key = load_pem_private_key(key_path.read_bytes(), password=None)
            device_id = DeviceId.parse(json.loads(dev_path.read_bytes())["device_id"])
        except (OSError, ValueError, KeyError, TypeError, ProtocolError) as exc:
            raise KeyStoreError(f"cannot load identity from {self.directory}: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyStoreError(f"{key_path} is not an Ed25519 key")
        return LocalIdentity.from_key(device_id, key)

    # --- paired devices ----------------------------------------------------------------
    def _read_peers(self) -> dict[DeviceId, PairedDevice]:
        path = self.directory / PEERS_FILE
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return {}
        try:
            doc = json.loads(raw)
        except ValueError as exc:
            raise KeyStoreError(f"{path} is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
            raise KeyStoreError(f"{path} has an unknown format")
        peers = doc.get("peers")
        if not isinstance(peers, list):
            raise KeyStoreError(f"{path} has no peer list")
        records = (PairedDevice.from_json(item) for item in peers)
        return {r.device_id: r for r in records}

    def _write_peers(self, records: dict[DeviceId, PairedDevice]) -> None:
        ordered = sorted(records.values(), key=lambda r: str(r.device_id))
        doc = {"version": FORMAT_VERSION, "peers": [r.to_json() for r in ordered]}
        self._write_atomic(PEERS_FILE, _dump(doc))

    def peers(self) -> list[PairedDevice]:
        return sorted(self._read_peers().values(), key=lambda r: (r.name, str(r.device_id)))

    def get(self, device_id: DeviceId) -> PairedDevice | None:
        return self._read_peers().get(device_id)

    def peer_key(self, device_id: DeviceId) -> bytes | None:
        """A :data:`igrs.core.security.PeerLookup` for the pipe handshake."""
        record = self.get(device_id)
        return record.public_key if record else None

    def add(self, record: PairedDevice) -> None:
        """Store a pairing record, replacing an older one for the same device."""
        with self._locked():
            records = self._read_peers()
            records[record.device_id] = record
            self._write_peers(records)

    def remove(self, device_id: DeviceId) -> bool:
        with self._locked():
            records = self._read_peers()
            if records.pop(device_id, None) is None:
                return False
            self._write_peers(records)
            return True

    # --- the folder's other files (``LOCATIONS_FILE``) ----------------------------------
    def read_private(self, name: str) -> bytes | None:
        """The content of the folder's file ``name``; None if it is absent, unreadable, or
        not ours alone (another user could have written it: ignored, with a warning)."""
        path = self.directory / name
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                if st.st_uid != os.getuid() or st.st_mode & 0o022:
                    log.warning("ignoring %s: writable by other users", path)
                    return None
                return f.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.info("cannot read %s: %s", path, exc)
            return None

    def update_private(self, name: str, update: Callable[[bytes | None], bytes]) -> None:
        """Replace the folder's file ``name`` with ``update(its content or None)``: under the
        folder's lock, written atomically, mode 0600."""
        if name not in (LOCATIONS_FILE,):
            raise ValueError(f"{name!r} is not one of the state folder's files")
        with self._locked():
            self._write_atomic(name, update(self.read_private(name)))


def _dump(doc: object) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


class MemoryKeyStore:
    """The KeyStore interface without files: identity and pairings live as long as the object.

    The default for a Device or ControlPoint given no state directory (tests, demos); pass
    ``state_dir`` to keep the identity and the paired devices across restarts.
    """

    def __init__(self) -> None:
        self._identity: LocalIdentity | None = None
        self._device_id: DeviceId | None = None
        self._peers: dict[DeviceId, PairedDevice] = {}

    def claim(self) -> Claim:
        """Nothing to hold: the identity lives in this object only."""
        return Claim()

    def device_id(self, default: DeviceId | None = None) -> DeviceId:
        if self._identity is not None:
            return self._identity.device_id
        if self._device_id is None:
            self._device_id = default or DeviceId.new()
        return self._device_id

    def load_or_create_identity(self, device_id: DeviceId | None = None) -> LocalIdentity:
        from igrs.core.security.identity import LocalIdentity

        if self._identity is None:
            self._identity = LocalIdentity.generate(self._device_id or device_id)
        return self._identity

    def peers(self) -> list[PairedDevice]:
        return sorted(self._peers.values(), key=lambda r: (r.name, str(r.device_id)))

    def get(self, device_id: DeviceId) -> PairedDevice | None:
        return self._peers.get(device_id)

    def peer_key(self, device_id: DeviceId) -> bytes | None:
        record = self._peers.get(device_id)
        return record.public_key if record else None

    def add(self, record: PairedDevice) -> None:
        self._peers[record.device_id] = record

    def remove(self, device_id: DeviceId) -> bool:
        return self._peers.pop(device_id, None) is not None


def open_keystore(state_dir: str | os.PathLike[str] | None) -> KeyStore | MemoryKeyStore:
    return KeyStore(state_dir) if state_dir is not None else MemoryKeyStore()
