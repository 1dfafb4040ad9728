"""Sans-IO security core: identities, PIN pairing, pipe handshake, secure channel, session keys.

Written protocol: specs/security.md. No sockets, no clock (``now`` is passed in), randomness
through an injectable ``os.urandom``-like callable. Every rejection of input is a
:class:`igrs.errors.SecurityError` carrying a return code.

Names are imported on first use (PEP 562), so that a device that never pairs or opens a
pipe does not load the PAKE and cipher modules (a few MB on a small device).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "ReplayWindow": "channel", "SecureChannel": "channel",
    "EstablishedPipe": "handshake", "HandshakeState": "handshake", "PeerLookup": "handshake",
    "PipeInitiator": "handshake", "PipeResponder": "handshake",
    "LocalIdentity": "identity", "fingerprint": "identity", "verify_signature": "identity",
    "PairingGuard": "pairing", "PairingInitiator": "pairing", "PairingResponder": "pairing",
    "PairingResult": "pairing", "PairingState": "pairing", "PinPairingHost": "pairing",
    "generate_pin": "pairing", "normalize_pin": "pairing",
    "SessionKeySchedule": "session_keys", "key_check_value": "session_keys",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from igrs.core.security.channel import ReplayWindow, SecureChannel
    from igrs.core.security.handshake import (
        EstablishedPipe,
        HandshakeState,
        PeerLookup,
        PipeInitiator,
        PipeResponder,
    )
    from igrs.core.security.identity import LocalIdentity, fingerprint, verify_signature
    from igrs.core.security.pairing import (
        PairingGuard,
        PairingInitiator,
        PairingResponder,
        PairingResult,
        PairingState,
        PinPairingHost,
        generate_pin,
        normalize_pin,
    )
    from igrs.core.security.session_keys import SessionKeySchedule, key_check_value


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
