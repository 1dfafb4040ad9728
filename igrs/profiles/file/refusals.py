"""When the device's own file system refuses (permission denied, read-only, full): a File
profile answer with a true reason, for actions and transfers alike (specs/file-profile.md §4
"Return codes") — not "the action failed (500)" nor "upload interrupted". The reason names
no path of the device's disk (the client knows which path it asked for; the device logs it).
"""

from __future__ import annotations

import errno

from igrs.constants import FILE_QUOTA_EXCEEDED, ReturnCode
from igrs.errors import IGRSError

# errno -> (return code, words); project choice (specs/file-profile.md §4)
_REFUSALS: dict[int, tuple[int, str]] = {
    errno.EACCES: (ReturnCode.FORBIDDEN, "permission denied"),
    errno.EPERM: (ReturnCode.FORBIDDEN, "operation not permitted"),
    errno.EROFS: (ReturnCode.FORBIDDEN, "read-only file system"),
    errno.ENOSPC: (FILE_QUOTA_EXCEEDED, "no space left on the device"),
    errno.EDQUOT: (FILE_QUOTA_EXCEEDED, "disk quota exceeded"),
}


class StorageRefused(IGRSError):
    """The device's file system refused an operation (see ``_REFUSALS``)."""


def refusal(exc: BaseException) -> StorageRefused | None:
    """The File-profile answer to ``exc`` if it is a refusal of the file system, else None."""
    if not isinstance(exc, OSError) or exc.errno not in _REFUSALS:
        return None
    code, words = _REFUSALS[exc.errno]
    return StorageRefused(f"the device's file system refused: {words}", return_code=code)
