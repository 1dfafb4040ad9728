"""Sans-IO security core: identities, PIN pairing, pipe handshake, secure channel, session keys.

Written protocol: specs/security.md. No sockets, no clock (``now`` is passed in), randomness
through an injectable ``os.urandom``-like callable. Every rejection of input is a
:class:`igrs.errors.SecurityError` carrying a return code.
"""

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

__all__ = [
    "EstablishedPipe",
    "HandshakeState",
    "LocalIdentity",
    "PairingGuard",
    "PairingInitiator",
    "PairingResponder",
    "PairingResult",
    "PairingState",
    "PeerLookup",
    "PinPairingHost",
    "PipeInitiator",
    "PipeResponder",
    "ReplayWindow",
    "SecureChannel",
    "SessionKeySchedule",
    "fingerprint",
    "generate_pin",
    "key_check_value",
    "normalize_pin",
    "verify_signature",
]
