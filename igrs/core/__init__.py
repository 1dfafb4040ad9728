"""Sans-IO protocol state machines: messages and ``now`` in, actions and events out."""
