"""The ``igrs`` command: one module per command family, each a thin client of the public API."""
