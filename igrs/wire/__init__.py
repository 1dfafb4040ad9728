"""Sans-IO wire codec: bytes <-> typed IGRS messages. No sockets, no event loop, no clock."""
