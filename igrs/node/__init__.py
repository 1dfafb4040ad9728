"""The device layer: a node of the home network, as the ``Device`` that hosts and shares and the
``ControlPoint`` that finds and uses, on top of the sans-IO core and the asyncio adapters."""
