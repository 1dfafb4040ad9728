"""PIN pairing: SPAKE2 (Ed25519 group) + key confirmation, yielding each side's identity key.

Four messages, request/response shaped (specs/security.md §3)::

    initiator (types the PIN)            responder (displays the PIN)
    PairStart   = idI, idR, nameI, pkI, X*   ->
                                          <- PairReply = idR, nameR, pkR, Y*, confirmR
    PairConfirm = confirmI                   ->
                                          <- PairDone  = doneR

The responder confirms first, so a peer that does not know the PIN learns nothing it could test
offline; an active attacker gets one PIN guess per attempt, and attempts are counted by a
:class:`PairingGuard` (every started attempt counts as a failure until it succeeds).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum

from spake2 import SPAKE2_A, SPAKE2_B  # type: ignore[import-untyped]

from igrs.constants import MAX_ID_LENGTH, MAX_NAME_LENGTH, ReturnCode
from igrs.core.security._codec import (
    MAC_LEN,
    Urandom,
    as_bytes,
    bad_message,
    check_mac,
    crypto_errors,
    decode,
    encode,
    hkdf,
    lp,
    mac,
    parse_text,
    text_field,
    thash,
)
from igrs.core.security.identity import PUBLIC_KEY_LEN, LocalIdentity, check_public_key, fingerprint
from igrs.errors import SecurityError
from igrs.wire.ids import DeviceId

PIN_MIN_DIGITS = 6
PIN_MAX_DIGITS = 8
DEFAULT_PIN_DIGITS = 6
DEFAULT_MAX_FAILURES = 5
DEFAULT_LOCKOUT = 30.0  # s, first lock-out; doubles on each further lock-out
MAX_LOCKOUT = 3600.0  # s
DEFAULT_PIN_LIFETIME = 300.0  # s a displayed PIN stays valid

SPAKE_MSG_LEN = 33  # side byte + compressed Ed25519 point (spake2 library format)

KIND_START, KIND_REPLY, KIND_CONFIRM, KIND_DONE = 0x10, 0x11, 0x12, 0x13
_ID = (1, MAX_ID_LENGTH)
_NAME = (0, MAX_NAME_LENGTH)
_PK = (PUBLIC_KEY_LEN, PUBLIC_KEY_LEN)
_SPAKE = (SPAKE_MSG_LEN, SPAKE_MSG_LEN)
_MAC = (MAC_LEN, MAC_LEN)
_START_SPEC = (_ID, _ID, _NAME, _PK, _SPAKE)
_REPLY_SPEC = (_ID, _NAME, _PK, _SPAKE, _MAC)

_TH = b"igrs pair v1 transcript"
_L_CONFIRM_R2I = b"igrs pair v1 confirm r2i"
_L_CONFIRM_I2R = b"igrs pair v1 confirm i2r"
_L_DONE_R2I = b"igrs pair v1 done r2i"


def generate_pin(digits: int = DEFAULT_PIN_DIGITS, urandom: Urandom = os.urandom) -> str:
    """A uniformly random decimal PIN from a CSPRNG (rejection sampling, no modulo bias)."""
    if not PIN_MIN_DIGITS <= digits <= PIN_MAX_DIGITS:
        raise ValueError(f"PIN length must be {PIN_MIN_DIGITS}..{PIN_MAX_DIGITS} digits")
    space = 10**digits
    limit = (1 << 64) - (1 << 64) % space
    while True:
        value = int.from_bytes(urandom(8), "big")
        if value < limit:
            return str(value % space).zfill(digits)


def normalize_pin(text: str) -> str:
    """Accept what a person types ("123 456", "123-456"); return the digits or raise."""
    digits = "".join(ch for ch in text if ch not in " -")
    if not (digits.isascii() and digits.isdigit()) or not (
        PIN_MIN_DIGITS <= len(digits) <= PIN_MAX_DIGITS
    ):
        raise bad_message(f"a PIN is {PIN_MIN_DIGITS} to {PIN_MAX_DIGITS} digits")
    return digits


@dataclass(slots=True)
class PairingGuard:
    """Rate limit for the PIN-displaying side (specs/security.md §3.4).

    After ``max_failures`` failed attempts pairing is locked for ``lockout`` seconds, doubling on
    each further lock-out up to ``max_lockout``; a successful pairing resets everything.
    The guard is global, not per peer: device ids are unauthenticated before pairing.
    """

    max_failures: int = DEFAULT_MAX_FAILURES
    lockout: float = DEFAULT_LOCKOUT
    max_lockout: float = MAX_LOCKOUT
    failures: int = 0
    lockouts: int = 0
    locked_until: float = 0.0

    def locked_for(self, now: float) -> float:
        return max(0.0, self.locked_until - now)

    def check(self, now: float) -> None:
        wait = self.locked_for(now)
        if wait > 0:
            raise SecurityError(
                f"pairing locked for {wait:.0f} s after failed attempts",
                return_code=ReturnCode.TOO_MANY_REQUESTS,
            )

    def record_failure(self, now: float) -> None:
        self.failures += 1
        if self.failures >= self.max_failures:
            duration = min(self.max_lockout, self.lockout * 2**self.lockouts)
            self.locked_until = now + duration
            self.lockouts += 1
            self.failures = 0

    def record_success(self) -> None:
        self.failures = 0
        self.lockouts = 0
        self.locked_until = 0.0


@dataclass(frozen=True, slots=True)
class PairingResult:
    """What a side learns: the peer's device id, identity key and (self-declared) name."""

    peer: DeviceId
    public_key: bytes
    name: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.public_key)


class PairingState(Enum):
    IDLE = "idle"
    STARTED = "started"  # initiator: PairStart sent
    CONFIRMED = "confirmed"  # initiator: PairConfirm sent
    REPLIED = "replied"  # responder: PairReply sent
    DONE = "done"
    FAILED = "failed"


def _spake_ids(initiator: bytes, responder: bytes) -> tuple[bytes, bytes]:
    return lp(b"igrs pair v1 A") + initiator, lp(b"igrs pair v1 B") + responder


class _Keys:
    """Confirmation keys from the SPAKE2 key, salted with the transcript (binds identities)."""

    def __init__(self, spake_key: bytes, transcript: bytes) -> None:
        self.th = transcript
        self.r2i = hkdf(spake_key, salt=transcript, info=_L_CONFIRM_R2I)
        self.i2r = hkdf(spake_key, salt=transcript, info=_L_CONFIRM_I2R)
        self.done = hkdf(spake_key, salt=transcript, info=_L_DONE_R2I)


def _finish(spake: SPAKE2_A | SPAKE2_B, element: bytes, what: str) -> bytes:
    try:
        key: bytes = spake.finish(element)
    except Exception as exc:
        # spake2 signals a bad point with SPAKEError, ValueError or its own NotOnCurve
        # (a bare Exception); all mean "malformed element from the peer".
        raise bad_message(f"{what}: invalid SPAKE2 element ({type(exc).__name__})") from exc
    return key


def _device_id(raw: bytes) -> DeviceId:
    with crypto_errors("device id"):
        return DeviceId.parse(parse_text(raw, "device id"))


class _Machine:
    state: PairingState
    _result: PairingResult | None

    def _expect(self, state: PairingState, step: str) -> None:
        if self.state is not state:
            raise SecurityError(
                f"pairing: {step} in state {self.state.value}",
                return_code=ReturnCode.PRECONDITION_FAILED,
            )

    @property
    def result(self) -> PairingResult:
        if self.state is not PairingState.DONE or self._result is None:
            raise SecurityError("pairing not complete", return_code=ReturnCode.PRECONDITION_FAILED)
        return self._result


@dataclass(eq=False)
class PairingInitiator(_Machine):
    """The side where the user types the PIN shown by ``peer``."""

    local: LocalIdentity
    peer: DeviceId
    pin: str
    name: str = ""
    urandom: Urandom = os.urandom
    state: PairingState = field(default=PairingState.IDLE, init=False)
    _result: PairingResult | None = field(default=None, init=False)
    _spake: SPAKE2_A | None = field(default=None, init=False, repr=False)
    _start: bytes = field(default=b"", init=False, repr=False)
    _keys: _Keys | None = field(default=None, init=False, repr=False)

    def start(self) -> bytes:
        """PairStart payload."""
        self._expect(PairingState.IDLE, "start")
        pin = normalize_pin(self.pin)
        id_i = str(self.local.device_id).encode()
        id_r = str(self.peer).encode()
        name = text_field(self.name, "name", MAX_NAME_LENGTH)
        id_a, id_b = _spake_ids(id_i, id_r)
        self._spake = SPAKE2_A(pin.encode(), idA=id_a, idB=id_b, entropy_f=self.urandom)
        x_msg: bytes = self._spake.start()
        self._start = encode(KIND_START, id_i, id_r, name, self.local.public_key, x_msg)
        self.state = PairingState.STARTED
        return self._start

    def on_reply(self, data: bytes) -> bytes:
        """Check PairReply (responder's confirmation); return the PairConfirm payload."""
        self._expect(PairingState.STARTED, "PairReply")
        self.state = PairingState.FAILED
        id_r, name_r, pk_r, y_msg, confirm_r = decode(data, KIND_REPLY, _REPLY_SPEC)
        peer = _device_id(id_r)
        if peer != self.peer:
            raise bad_message("PairReply from a different device")
        check_public_key(pk_r)
        name = parse_text(name_r, "name")
        assert self._spake is not None
        spake_key = _finish(self._spake, y_msg, "PairReply")
        keys = _Keys(spake_key, thash(_TH, self._start, id_r, name_r, pk_r, y_msg))
        check_mac(keys.r2i, keys.th, confirm_r, "PairReply (wrong PIN?)")
        self._keys = keys
        self._result = PairingResult(peer, pk_r, name)
        self.state = PairingState.CONFIRMED
        return encode(KIND_CONFIRM, mac(keys.i2r, keys.th))

    def on_done(self, data: bytes) -> PairingResult:
        """Check PairDone; the pairing is complete (store :attr:`result`)."""
        self._expect(PairingState.CONFIRMED, "PairDone")
        self.state = PairingState.FAILED
        (done,) = decode(data, KIND_DONE, (_MAC,))
        assert self._keys is not None
        check_mac(self._keys.done, self._keys.th, done, "PairDone")
        self.state = PairingState.DONE
        return self.result

    def abort(self) -> None:
        if self.state is not PairingState.DONE:
            self.state = PairingState.FAILED


@dataclass(eq=False)
class PairingResponder(_Machine):
    """The side that displays the PIN. One instance per attempt; the PIN is then used up.

    With a ``guard`` the attempt is counted as failed when PairStart arrives and cleared only on
    success, so an attacker who abandons the exchange is counted too.
    """

    local: LocalIdentity
    pin: str
    name: str = ""
    guard: PairingGuard | None = None
    urandom: Urandom = os.urandom
    state: PairingState = field(default=PairingState.IDLE, init=False)
    _result: PairingResult | None = field(default=None, init=False)
    _keys: _Keys | None = field(default=None, init=False, repr=False)

    def on_start(self, data: bytes, now: float) -> bytes:
        """Answer PairStart with PairReply (carrying the responder's confirmation)."""
        self._expect(PairingState.IDLE, "PairStart")
        pin = normalize_pin(self.pin)
        if self.guard is not None:
            self.guard.check(now)
            self.guard.record_failure(now)  # presumed failed until PairConfirm verifies
        self.state = PairingState.FAILED
        id_i, id_r, name_i, pk_i, x_msg = decode(data, KIND_START, _START_SPEC)
        peer = _device_id(id_i)
        if _device_id(id_r) != self.local.device_id:
            raise bad_message("PairStart is for another device")
        if peer == self.local.device_id:
            raise bad_message("PairStart from this device's own id")
        check_public_key(pk_i)
        name = parse_text(name_i, "name")
        own_id = str(self.local.device_id).encode()
        own_name = text_field(self.name, "name", MAX_NAME_LENGTH)
        id_a, id_b = _spake_ids(id_i, own_id)
        spake = SPAKE2_B(pin.encode(), idA=id_a, idB=id_b, entropy_f=self.urandom)
        y_msg: bytes = spake.start()
        spake_key = _finish(spake, x_msg, "PairStart")
        pk_r = self.local.public_key
        keys = _Keys(spake_key, thash(_TH, as_bytes(data), own_id, own_name, pk_r, y_msg))
        self._keys = keys
        self._result = PairingResult(peer, pk_i, name)
        self.state = PairingState.REPLIED
        return encode(KIND_REPLY, own_id, own_name, pk_r, y_msg, mac(keys.r2i, keys.th))

    def on_confirm(self, data: bytes, now: float) -> bytes:
        """Check PairConfirm; return PairDone. The pairing is complete (store :attr:`result`)."""
        self._expect(PairingState.REPLIED, "PairConfirm")
        self.state = PairingState.FAILED
        (confirm_i,) = decode(data, KIND_CONFIRM, (_MAC,))
        assert self._keys is not None
        check_mac(self._keys.i2r, self._keys.th, confirm_i, "PairConfirm (wrong PIN?)")
        if self.guard is not None:
            self.guard.record_success()
        self.state = PairingState.DONE
        return encode(KIND_DONE, mac(self._keys.done, self._keys.th))

    def abort(self) -> None:
        """Give up (time-out, error reply): the attempt stays counted as failed."""
        if self.state is not PairingState.DONE:
            self.state = PairingState.FAILED


class PinPairingHost:
    """The displaying side's PIN life cycle: one PIN per attempt, expiring, rate-limited.

    ``pin(now)`` gives the PIN to show (a fresh one after every attempt, success or failure);
    ``accept(PairStart, now)`` uses the current PIN up and returns the responder and PairReply.
    """

    def __init__(
        self,
        local: LocalIdentity,
        *,
        name: str = "",
        guard: PairingGuard | None = None,
        digits: int = DEFAULT_PIN_DIGITS,
        pin_lifetime: float = DEFAULT_PIN_LIFETIME,
        urandom: Urandom = os.urandom,
    ) -> None:
        self.local = local
        self.name = name
        self.guard = guard if guard is not None else PairingGuard()
        self.digits = digits
        self.pin_lifetime = pin_lifetime
        self.urandom = urandom
        self._pin: str | None = None
        self._expires = 0.0

    def pin(self, now: float) -> str:
        self.guard.check(now)
        if self._pin is None or now >= self._expires:
            self._pin = generate_pin(self.digits, self.urandom)
            self._expires = now + self.pin_lifetime
        return self._pin

    def cancel(self) -> None:
        self._pin = None

    def accept(self, data: bytes, now: float) -> tuple[PairingResponder, bytes]:
        pin, self._pin = self._pin, None
        if pin is None or now >= self._expires:
            raise SecurityError("no PIN is displayed", return_code=ReturnCode.PRECONDITION_FAILED)
        responder = PairingResponder(
            self.local, pin, name=self.name, guard=self.guard, urandom=self.urandom
        )
        return responder, responder.on_start(data, now)
