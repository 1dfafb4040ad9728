"""asyncio adapters: the only layer with sockets (UDP via asyncio-dgram, HTTP via aiohttp)."""
