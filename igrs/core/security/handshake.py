"""Mutually authenticated pipe handshake on the four IGRS pipe message pairs.

SIGMA-style (specs/security.md §4): ephemeral X25519 in CreatePipe, Ed25519 signatures over the
transcript plus a MAC under the handshake key in Authenticate, key confirmation in
AuthenticateResult, confirmation of the pipe id and parameters in CreatePipeResult. The
initiator produces every Request payload, the responder every Response payload. A non-secure
pipe runs the same eight messages with empty security fields and yields no channel.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from igrs.constants import MAX_ID_LENGTH, ReturnCode
from igrs.core.security._codec import (
    KEY_LEN,
    MAC_LEN,
    Urandom,
    bad_message,
    check_mac,
    crypto_errors,
    decode,
    encode,
    hkdf,
    lp,
    mac,
    parse_text,
    thash,
    u32,
)
from igrs.core.security.channel import DEFAULT_MAX_RECORDS, DEFAULT_WINDOW, NONCE_LEN, SecureChannel
from igrs.core.security.identity import SIGNATURE_LEN, LocalIdentity, verify_signature
from igrs.core.security.session_keys import SessionKeySchedule
from igrs.errors import SecurityError
from igrs.wire.ids import UINT32_MAX, DeviceId

PeerLookup = Callable[[DeviceId], bytes | None]
"""Returns the paired identity public key of a device, or None if not paired."""

MODE_NON_SECURE, MODE_SECURE = 0, 1
HELLO_NONCE_LEN = 32
X25519_LEN = 32
MAX_PARAMS = 512

KIND_CREATE_PIPE_REQUEST = 0x20
KIND_CREATE_PIPE_RESPONSE = 0x21
KIND_AUTHENTICATE_REQUEST = 0x22
KIND_AUTHENTICATE_RESPONSE = 0x23
KIND_AUTHENTICATE_RESULT_REQUEST = 0x24
KIND_AUTHENTICATE_RESULT_RESPONSE = 0x25
KIND_CREATE_PIPE_RESULT_REQUEST = 0x26
KIND_CREATE_PIPE_RESULT_RESPONSE = 0x27

_L_HELLO = b"igrs pipe v1 hello"
_L_TRANSCRIPT = b"igrs pipe v1 transcript"
_L_SIG_I = b"igrs pipe v1 signature initiator"
_L_SIG_R = b"igrs pipe v1 signature responder"
_L_AUTH_I2R = b"igrs pipe v1 auth i2r"
_L_AUTH_R2I = b"igrs pipe v1 auth r2i"
_L_RESULT_I2R = b"igrs pipe v1 result i2r"
_L_RESULT_R2I = b"igrs pipe v1 result r2i"
_L_PIPE_I2R = b"igrs pipe v1 pipe i2r"
_L_PIPE_R2I = b"igrs pipe v1 pipe r2i"
_L_KEY_I2R = b"igrs pipe v1 channel key i2r"
_L_KEY_R2I = b"igrs pipe v1 channel key r2i"
_L_IV_I2R = b"igrs pipe v1 channel iv i2r"
_L_IV_R2I = b"igrs pipe v1 channel iv r2i"
_L_EXPORTER = b"igrs pipe v1 session secret"

_MODE = (1, 1)
_ID = (1, MAX_ID_LENGTH)
_NONCE = (HELLO_NONCE_LEN, HELLO_NONCE_LEN)
_EPH = (0, X25519_LEN)
_PIPE_ID = (4, 4)
_PARAMS = (0, MAX_PARAMS)


class HandshakeState(Enum):
    IDLE = "idle"
    AWAIT_CREATE_PIPE_REQUEST = "await CreatePipeRequest"
    AWAIT_CREATE_PIPE_RESPONSE = "await CreatePipeResponse"
    AWAIT_AUTHENTICATE_REQUEST = "await AuthenticateRequest"
    AWAIT_AUTHENTICATE_RESPONSE = "await AuthenticateResponse"
    AWAIT_AUTHENTICATE_RESULT_REQUEST = "await AuthenticateResultRequest"
    AWAIT_AUTHENTICATE_RESULT_RESPONSE = "await AuthenticateResultResponse"
    AWAIT_CREATE_PIPE_RESULT_REQUEST = "await CreatePipeResultRequest"
    AWAIT_CREATE_PIPE_RESULT_RESPONSE = "await CreatePipeResultResponse"
    ESTABLISHED = "established"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, eq=False)
class EstablishedPipe:
    """Outcome of a handshake. ``channel``/``session_keys`` are None for a non-secure pipe."""

    pipe_id: int
    params: bytes
    local: DeviceId
    peer: DeviceId
    initiator: bool
    secure: bool
    peer_key: bytes | None = None
    channel: SecureChannel | None = None
    session_keys: SessionKeySchedule | None = None


def _fixed(n: int, secure: bool) -> tuple[int, int]:
    return (n, n) if secure else (0, 0)


def _pipe_id(value: int) -> bytes:
    if not 0 < value <= UINT32_MAX:
        raise bad_message("pipe id out of range")
    return u32(value)


def _device_id(raw: bytes) -> DeviceId:
    with crypto_errors("device id"):
        return DeviceId.parse(parse_text(raw, "device id"))


class _Handshake:
    def __init__(
        self,
        local: LocalIdentity,
        peers: PeerLookup,
        urandom: Urandom,
        window: int,
        max_records: int,
        initiator: bool,
    ) -> None:
        self.local = local
        self._peers = peers
        self._urandom = urandom
        self._window = window
        self._max_records = max_records
        self._initiator = initiator
        self.state = HandshakeState.IDLE
        self.secure = True
        self._peer: DeviceId | None = None
        self._peer_key: bytes | None = None
        self._msgs: list[bytes] = []
        self._dh = b""
        self._pipe: EstablishedPipe | None = None

    @property
    def peer(self) -> DeviceId:
        if self._peer is None:
            raise SecurityError("peer not known yet", return_code=ReturnCode.PRECONDITION_FAILED)
        return self._peer

    @property
    def pipe(self) -> EstablishedPipe:
        if self.state is not HandshakeState.ESTABLISHED or self._pipe is None:
            raise SecurityError("pipe not established", return_code=ReturnCode.PRECONDITION_FAILED)
        return self._pipe

    def abort(self) -> None:
        if self.state is not HandshakeState.ESTABLISHED:
            self.state = HandshakeState.FAILED

    def _step(self, expected: HandshakeState, what: str) -> None:
        if self.state is not expected:
            raise SecurityError(
                f"pipe handshake: {what} in state {self.state.value}",
                return_code=ReturnCode.PRECONDITION_FAILED,
            )
        self.state = HandshakeState.FAILED  # until the step completes

    def _lookup(self, peer: DeviceId) -> bytes:
        key = self._peers(peer)
        if key is None:
            raise SecurityError(f"not paired with {peer}", return_code=ReturnCode.FORBIDDEN)
        return key

    def _th(self, *extra: bytes) -> bytes:
        return thash(_L_TRANSCRIPT, *self._msgs, *extra)

    def _hello_keys(self) -> tuple[bytes, bytes]:
        th = thash(_L_HELLO, *self._msgs)
        return (
            hkdf(self._dh, salt=th, info=_L_AUTH_I2R),
            hkdf(self._dh, salt=th, info=_L_AUTH_R2I),
        )

    def _master(self, label: bytes, length: int = KEY_LEN) -> bytes:
        # Salted with the transcript up to and including AuthenticateResponse.
        return hkdf(self._dh, salt=thash(_L_TRANSCRIPT, *self._msgs[:4]), info=label, length=length)

    def _sig_data(self, label: bytes, th: bytes, signer: bytes, other: bytes) -> bytes:
        return lp(label) + th + signer + other

    def _exchange(self, eph: X25519PrivateKey, peer_pub: bytes) -> None:
        with crypto_errors("ephemeral key"):
            self._dh = eph.exchange(X25519PublicKey.from_public_bytes(peer_pub))

    def _finish(self, pipe_id: bytes, params: bytes) -> EstablishedPipe:
        assert self._peer is not None
        channel = keys = None
        if self.secure:
            out, inc = ((_L_KEY_I2R, _L_IV_I2R), (_L_KEY_R2I, _L_IV_R2I))
            if not self._initiator:
                out, inc = inc, out
            channel = SecureChannel(
                self._master(out[0]),
                self._master(out[1], NONCE_LEN),
                self._master(inc[0]),
                self._master(inc[1], NONCE_LEN),
                window=self._window,
                max_records=self._max_records,
            )
            keys = SessionKeySchedule(
                self._master(_L_EXPORTER), initiator=self._initiator, urandom=self._urandom
            )
        self._dh = b""
        self._pipe = EstablishedPipe(
            pipe_id=int.from_bytes(pipe_id, "big"),
            params=params,
            local=self.local.device_id,
            peer=self._peer,
            initiator=self._initiator,
            secure=self.secure,
            peer_key=self._peer_key,
            channel=channel,
            session_keys=keys,
        )
        self.state = HandshakeState.ESTABLISHED
        return self._pipe


class PipeInitiator(_Handshake):
    """The device that creates the pipe (sends every Request)."""

    def __init__(
        self,
        local: LocalIdentity,
        peer: DeviceId,
        *,
        peers: PeerLookup,
        secure: bool = True,
        urandom: Urandom = os.urandom,
        window: int = DEFAULT_WINDOW,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        super().__init__(local, peers, urandom, window, max_records, initiator=True)
        if peer == local.device_id:
            raise SecurityError("cannot create a pipe to this device itself")
        self._peer = peer
        self.secure = secure
        self._eph: X25519PrivateKey | None = None
        self._auth_keys = (b"", b"")
        self._confirmed = (b"", b"")

    def create_pipe_request(self) -> bytes:
        self._step(HandshakeState.IDLE, "CreatePipeRequest")
        eph_pub = b""
        if self.secure:
            self._peer_key = self._lookup(self.peer)
            self._eph = X25519PrivateKey.from_private_bytes(self._urandom(X25519_LEN))
            eph_pub = self._eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        msg = encode(
            KIND_CREATE_PIPE_REQUEST,
            bytes((MODE_SECURE if self.secure else MODE_NON_SECURE,)),
            str(self.local.device_id).encode(),
            str(self.peer).encode(),
            self._urandom(HELLO_NONCE_LEN),
            eph_pub,
        )
        self._msgs.append(msg)
        self.state = HandshakeState.AWAIT_CREATE_PIPE_RESPONSE
        return msg

    def on_create_pipe_response(self, data: bytes) -> bytes:
        """Check CreatePipeResponse; return the AuthenticateRequest payload."""
        self._step(HandshakeState.AWAIT_CREATE_PIPE_RESPONSE, "CreatePipeResponse")
        mode, _nonce, eph_r = decode(data, KIND_CREATE_PIPE_RESPONSE, (_MODE, _NONCE, _EPH))
        if mode[0] != (MODE_SECURE if self.secure else MODE_NON_SECURE):
            raise SecurityError("peer answered with another pipe mode (downgrade refused)")
        if len(eph_r) != (X25519_LEN if self.secure else 0):
            raise bad_message("ephemeral key has bad length")
        self._msgs.append(bytes(data))
        if not self.secure:
            msg = encode(KIND_AUTHENTICATE_REQUEST, b"", b"")
        else:
            assert self._eph is not None and self._peer_key is not None
            self._exchange(self._eph, eph_r)
            self._eph = None
            self._auth_keys = self._hello_keys()
            th = thash(_L_HELLO, *self._msgs)
            sig = self.local.sign(
                self._sig_data(_L_SIG_I, th, self.local.public_key, self._peer_key)
            )
            msg = encode(KIND_AUTHENTICATE_REQUEST, sig, mac(self._auth_keys[0], th + sig))
        self._msgs.append(msg)
        self.state = HandshakeState.AWAIT_AUTHENTICATE_RESPONSE
        return msg

    def on_authenticate_response(self, data: bytes) -> bytes:
        """Verify the responder's signature and MAC; return AuthenticateResultRequest."""
        self._step(HandshakeState.AWAIT_AUTHENTICATE_RESPONSE, "AuthenticateResponse")
        spec = (_fixed(SIGNATURE_LEN, self.secure), _fixed(MAC_LEN, self.secure))
        sig, tag = decode(data, KIND_AUTHENTICATE_RESPONSE, spec)
        if not self.secure:
            self._msgs.append(bytes(data))
            msg = encode(KIND_AUTHENTICATE_RESULT_REQUEST, b"")
        else:
            assert self._peer_key is not None
            th = self._th()
            signed = self._sig_data(_L_SIG_R, th, self._peer_key, self.local.public_key)
            verify_signature(self._peer_key, sig, signed, "AuthenticateResponse")
            check_mac(self._auth_keys[1], th + sig, tag, "AuthenticateResponse")
            self._msgs.append(bytes(data))
            msg = encode(KIND_AUTHENTICATE_RESULT_REQUEST, mac(self._master(_L_RESULT_I2R), self._th()))
        self._msgs.append(msg)
        self.state = HandshakeState.AWAIT_AUTHENTICATE_RESULT_RESPONSE
        return msg

    def on_authenticate_result_response(
        self, data: bytes, *, pipe_id: int, params: bytes = b""
    ) -> bytes:
        """Check AuthenticateResultResponse; return CreatePipeResultRequest confirming the
        pipe id (as assigned by the protocol layer) and opaque pipe parameters."""
        pid = _pipe_id(pipe_id)
        if len(params) > MAX_PARAMS:
            raise bad_message("pipe parameters too long")
        self._step(HandshakeState.AWAIT_AUTHENTICATE_RESULT_RESPONSE, "AuthenticateResultResponse")
        (tag,) = decode(data, KIND_AUTHENTICATE_RESULT_RESPONSE, (_fixed(MAC_LEN, self.secure),))
        if self.secure:
            check_mac(self._master(_L_RESULT_R2I), self._th(), tag, "AuthenticateResultResponse")
        self._msgs.append(bytes(data))
        tag = mac(self._master(_L_PIPE_I2R), self._th(pid, params)) if self.secure else b""
        self._confirmed = (pid, bytes(params))
        msg = encode(KIND_CREATE_PIPE_RESULT_REQUEST, pid, bytes(params), tag)
        self._msgs.append(msg)
        self.state = HandshakeState.AWAIT_CREATE_PIPE_RESULT_RESPONSE
        return msg

    def on_create_pipe_result_response(self, data: bytes) -> EstablishedPipe:
        self._step(HandshakeState.AWAIT_CREATE_PIPE_RESULT_RESPONSE, "CreatePipeResultResponse")
        (tag,) = decode(data, KIND_CREATE_PIPE_RESULT_RESPONSE, (_fixed(MAC_LEN, self.secure),))
        if self.secure:
            check_mac(self._master(_L_PIPE_R2I), self._th(), tag, "CreatePipeResultResponse")
        return self._finish(*self._confirmed)


class PipeResponder(_Handshake):
    """The device asked to create a pipe (sends every Response).

    A secure pipe is refused (FORBIDDEN) unless the initiator is paired; a non-secure pipe is
    accepted if ``allow_non_secure`` — the protocol layer then serves only the device
    description over it.
    """

    def __init__(
        self,
        local: LocalIdentity,
        *,
        peers: PeerLookup,
        allow_non_secure: bool = True,
        urandom: Urandom = os.urandom,
        window: int = DEFAULT_WINDOW,
        max_records: int = DEFAULT_MAX_RECORDS,
    ) -> None:
        super().__init__(local, peers, urandom, window, max_records, initiator=False)
        self.allow_non_secure = allow_non_secure
        self.state = HandshakeState.AWAIT_CREATE_PIPE_REQUEST
        self._auth_keys = (b"", b"")

    def on_create_pipe_request(self, data: bytes) -> bytes:
        self._step(HandshakeState.AWAIT_CREATE_PIPE_REQUEST, "CreatePipeRequest")
        mode, id_i, id_r, _nonce, eph_i = decode(
            data, KIND_CREATE_PIPE_REQUEST, (_MODE, _ID, _ID, _NONCE, _EPH)
        )
        if mode[0] not in (MODE_SECURE, MODE_NON_SECURE):
            raise bad_message("unknown pipe mode")
        self.secure = mode[0] == MODE_SECURE
        peer = _device_id(id_i)
        if _device_id(id_r) != self.local.device_id:
            raise bad_message("CreatePipeRequest is for another device")
        if peer == self.local.device_id:
            raise bad_message("CreatePipeRequest from this device's own id")
        if len(eph_i) != (X25519_LEN if self.secure else 0):
            raise bad_message("ephemeral key has bad length")
        self._peer = peer
        eph_pub = b""
        if self.secure:
            self._peer_key = self._lookup(peer)
            eph = X25519PrivateKey.from_private_bytes(self._urandom(X25519_LEN))
            self._exchange(eph, eph_i)
            eph_pub = eph.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        elif not self.allow_non_secure:
            raise SecurityError("non-secure pipes are refused", return_code=ReturnCode.FORBIDDEN)
        msg = encode(KIND_CREATE_PIPE_RESPONSE, mode, self._urandom(HELLO_NONCE_LEN), eph_pub)
        self._msgs += [bytes(data), msg]
        if self.secure:
            self._auth_keys = self._hello_keys()
        self.state = HandshakeState.AWAIT_AUTHENTICATE_REQUEST
        return msg

    def on_authenticate_request(self, data: bytes) -> bytes:
        """Verify the initiator's signature and MAC; return AuthenticateResponse."""
        self._step(HandshakeState.AWAIT_AUTHENTICATE_REQUEST, "AuthenticateRequest")
        spec = (_fixed(SIGNATURE_LEN, self.secure), _fixed(MAC_LEN, self.secure))
        sig, tag = decode(data, KIND_AUTHENTICATE_REQUEST, spec)
        if not self.secure:
            self._msgs.append(bytes(data))
            msg = encode(KIND_AUTHENTICATE_RESPONSE, b"", b"")
        else:
            assert self._peer_key is not None
            th = thash(_L_HELLO, *self._msgs)
            signed = self._sig_data(_L_SIG_I, th, self._peer_key, self.local.public_key)
            verify_signature(self._peer_key, sig, signed, "AuthenticateRequest")
            check_mac(self._auth_keys[0], th + sig, tag, "AuthenticateRequest")
            self._msgs.append(bytes(data))
            th = self._th()
            own = self.local.sign(
                self._sig_data(_L_SIG_R, th, self.local.public_key, self._peer_key)
            )
            msg = encode(KIND_AUTHENTICATE_RESPONSE, own, mac(self._auth_keys[1], th + own))
        self._msgs.append(msg)
        self.state = HandshakeState.AWAIT_AUTHENTICATE_RESULT_REQUEST
        return msg

    def on_authenticate_result_request(self, data: bytes) -> bytes:
        self._step(HandshakeState.AWAIT_AUTHENTICATE_RESULT_REQUEST, "AuthenticateResultRequest")
        (tag,) = decode(data, KIND_AUTHENTICATE_RESULT_REQUEST, (_fixed(MAC_LEN, self.secure),))
        if self.secure:
            check_mac(self._master(_L_RESULT_I2R), self._th(), tag, "AuthenticateResultRequest")
        self._msgs.append(bytes(data))
        reply = mac(self._master(_L_RESULT_R2I), self._th()) if self.secure else b""
        msg = encode(KIND_AUTHENTICATE_RESULT_RESPONSE, reply)
        self._msgs.append(msg)
        self.state = HandshakeState.AWAIT_CREATE_PIPE_RESULT_REQUEST
        return msg

    def on_create_pipe_result_request(
        self, data: bytes, *, pipe_id: int | None = None, params: bytes | None = None
    ) -> bytes:
        """Check CreatePipeResultRequest (and, if given, that it confirms the expected pipe id
        and parameters); return CreatePipeResultResponse. The pipe is then :attr:`pipe`."""
        self._step(HandshakeState.AWAIT_CREATE_PIPE_RESULT_REQUEST, "CreatePipeResultRequest")
        spec = (_PIPE_ID, _PARAMS, _fixed(MAC_LEN, self.secure))
        pid, got_params, tag = decode(data, KIND_CREATE_PIPE_RESULT_REQUEST, spec)
        if self.secure:
            check_mac(self._master(_L_PIPE_I2R), self._th(pid, got_params), tag, "CreatePipeResult")
        if int.from_bytes(pid, "big") == 0:
            raise bad_message("pipe id 0 is reserved")
        if pipe_id is not None and pid != _pipe_id(pipe_id):
            raise SecurityError("CreatePipeResult confirms another pipe id")
        if params is not None and got_params != params:
            raise SecurityError("CreatePipeResult confirms other pipe parameters")
        self._msgs.append(bytes(data))
        reply = mac(self._master(_L_PIPE_R2I), self._th()) if self.secure else b""
        msg = encode(KIND_CREATE_PIPE_RESULT_RESPONSE, reply)
        self._finish(pid, got_params)
        return msg
