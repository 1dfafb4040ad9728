"""File profile (ISO/IEC 14543-5-22 scope): shared folders, browse, transfers (specs/file-profile.md).

Server: ``attach_file_server(device, ["/srv/inbox:rw"])``; client: ``FileClient``
(igrs.profiles.file.client); CLI: ``igrs file ls|get|put|rm|mv|mkdir``.
"""

from igrs.profiles.file.paths import PathRefused
from igrs.profiles.file.server import (
    SERVICE_TYPE,
    FileServer,
    SharedFolder,
    attach_file_server,
    current_caller,
    parse_share_spec,
)

__all__ = ["SERVICE_TYPE", "FileServer", "PathRefused", "SharedFolder", "attach_file_server",
           "current_caller", "parse_share_spec"]
