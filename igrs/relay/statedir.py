"""The relay node's state directory: private to the user running the node.

It holds the SQLite database (accounts with token and code hashes, stored mail bodies,
online-storage items) and the TLS key. Checked at every start (specs/relay.md, "State
directory"): the directory is made 0700 and the state files 0600; a looser mode that the
running user owns is **fixed, with a warning**; a directory owned by someone else, or one
that is world-writable or sticky (``/tmp``), is **refused** - its mode is not ours to change.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from igrs.errors import IGRSError

DIR_MODE = 0o700
FILE_MODE = 0o600
DATABASE = "relay.sqlite3"
STATE_FILES = (DATABASE, f"{DATABASE}-wal", f"{DATABASE}-shm", "relay-key.pem")


class StateDirError(IGRSError):
    """The state directory cannot be made private."""


def secure_state_dir(directory: Path, *, database: bool = True) -> list[str]:
    """Create or check ``directory``; returns the warnings for the modes it fixed.

    With ``database``, the database file is created 0600 before SQLite opens it, so SQLite
    gives its ``-wal`` and ``-shm`` files the same mode."""
    notes: list[str] = []
    if not directory.exists():
        directory.mkdir(parents=True, mode=DIR_MODE)
        os.chmod(directory, DIR_MODE)  # mkdir's mode is filtered by the umask
    st = directory.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise StateDirError(f"relay state directory {directory} is not a directory")
    if st.st_uid != os.geteuid():
        raise StateDirError(f"relay state directory {directory} belongs to another user: "
                            "use a directory of your own")
    if st.st_mode & (stat.S_ISVTX | stat.S_IWOTH):
        raise StateDirError(f"relay state directory {directory} is shared (world-writable or "
                            "sticky): use a directory of its own")
    if stat.S_IMODE(st.st_mode) != DIR_MODE:
        os.chmod(directory, DIR_MODE)
        notes.append(f"relay state directory {directory} had mode "
                     f"{stat.S_IMODE(st.st_mode):04o}; changed to {DIR_MODE:04o}")
    db = directory / DATABASE
    if database and not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE))
    for name in STATE_FILES:
        path = directory / name
        try:
            fst = path.lstat()
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(fst.st_mode):
            raise StateDirError(f"{path} is not a regular file")
        if fst.st_uid != os.geteuid():
            raise StateDirError(f"{path} belongs to another user")
        if stat.S_IMODE(fst.st_mode) != FILE_MODE:
            os.chmod(path, FILE_MODE)
            notes.append(f"{path} had mode {stat.S_IMODE(fst.st_mode):04o}; changed to "
                         f"{FILE_MODE:04o}")
    return notes
