"""asyncio adapters: the only layer with sockets (UDP via asyncio-dgram; HTTP via the own
server and client, aiohttp for the profiles' plain HTTP handlers)."""
