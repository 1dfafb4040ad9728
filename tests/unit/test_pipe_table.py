"""The device's table of half-open pipe handshakes (igrs/core/pipes.py, specs/pipes.md §2):
caps per source address, per claimed device id and in all, with eviction of the oldest
unauthenticated attempt, so that a flood claiming a paired device's id keeps no one out."""

from __future__ import annotations

import random

import pytest

from igrs.constants import ReturnCode
from igrs.core.pipes import PipeTable
from igrs.core.security import LocalIdentity, PipeInitiator
from igrs.errors import SecurityError
from igrs.wire.bodies import pipes as bodies
from igrs.wire.ids import DeviceId

TV = LocalIdentity.generate(DeviceId.new(), random.Random(1).randbytes)
PC = LocalIdentity.generate(DeviceId.new(), random.Random(2).randbytes)
PHONE = LocalIdentity.generate(DeviceId.new(), random.Random(3).randbytes)
PAIRED = {PC.device_id: PC.public_key, PHONE.device_id: PHONE.public_key, TV.device_id: TV.public_key}


def table(**caps: int) -> PipeTable:
    return PipeTable(TV, PAIRED.get, **caps)  # type: ignore[arg-type]


def claim(t: PipeTable, device: DeviceId, source: str, now: float = 0.0) -> int:
    """A CreatePipeRequest claiming ``device`` from ``source``, never continued (forged: the
    sender does not hold the device's key); returns its HandshakeId."""
    forger = LocalIdentity.generate(device)
    init = PipeInitiator(forger, TV.device_id, peers=lambda _: TV.public_key)
    return t.on_create_pipe(device, bodies.CreatePipeRequest(True, init.create_pipe_request()), 1, now,
                            source=source).handshake_id


def connect(t: PipeTable, who: LocalIdentity, source: str, now: float = 0.0, *, steps: int = 4) -> int:
    """The real device's handshake, ``steps`` of the four; returns its HandshakeId."""
    init = PipeInitiator(who, TV.device_id, peers=PAIRED.get)
    r1 = t.on_create_pipe(who.device_id, bodies.CreatePipeRequest(True, init.create_pipe_request()), 1, now,
                          source=source)
    hid = r1.handshake_id
    if steps >= 2:
        r2 = t.on_authenticate(who.device_id, bodies.AuthenticateRequest(
            hid, init.on_create_pipe_response(r1.data)), 2, now)
    if steps >= 3:
        r3 = t.on_authenticate_result(who.device_id, bodies.AuthenticateResultRequest(
            hid, init.on_authenticate_response(r2.data)), 3, now)
    if steps >= 4:
        data = init.on_authenticate_result_response(r3.data, pipe_id=r3.pipe_id)
        t.on_create_pipe_result(who.device_id, bodies.CreatePipeResultRequest(hid, data), 4, now)
    return hid


def test_a_flood_from_one_address_replaces_only_its_own_attempts() -> None:
    t = table()
    for _ in range(500):
        claim(t, PC.device_id, "10.0.0.66")
    assert t.pending == 4  # MAX_PENDING_HANDSHAKES_PER_ADDRESS
    connect(t, PC, "10.0.0.5")
    assert [p.peer for p in t.pipes] == [PC.device_id]


def test_the_real_device_completes_while_the_flood_goes_on_between_its_steps() -> None:
    t = table()
    init = PipeInitiator(PC, TV.device_id, peers=PAIRED.get)
    r1 = t.on_create_pipe(PC.device_id, bodies.CreatePipeRequest(True, init.create_pipe_request()), 1, 0.0,
                          source="10.0.0.5")
    for _ in range(100):  # between the real device's first and second step
        claim(t, PC.device_id, "10.0.0.66")
    t.on_authenticate(PC.device_id, bodies.AuthenticateRequest(r1.handshake_id,
                                                               init.on_create_pipe_response(r1.data)), 2, 0.0)


def test_claims_of_one_id_are_capped_and_leave_room_for_others() -> None:
    t = table()
    for i in range(30):  # many addresses, all claiming the PC
        claim(t, PC.device_id, f"10.0.1.{i}")
    assert t.pending == 8  # MAX_PENDING_HANDSHAKES_PER_PEER
    connect(t, PHONE, "10.0.0.7")
    assert [p.peer for p in t.pipes] == [PHONE.device_id]


def test_a_full_table_evicts_its_oldest_unauthenticated_attempt() -> None:
    t = table(max_pending=4, max_pending_per_peer=4)
    first = connect(t, PHONE, "10.0.0.7", steps=1)
    for i in range(3):
        claim(t, PC.device_id, f"10.0.1.{i}")
    claim(t, PC.device_id, "10.0.1.9")  # full: the oldest (the phone's first step) goes
    assert t.pending == 4
    with pytest.raises(SecurityError) as err:
        t.on_authenticate(PHONE.device_id, bodies.AuthenticateRequest(first, b"x"), 2, 0.0)
    assert err.value.return_code == ReturnCode.PRECONDITION_FAILED


def test_authenticated_attempts_are_never_evicted() -> None:
    t = table(max_pending=2, max_pending_per_peer=2)
    connect(t, PC, "10.0.0.5", steps=2)  # signature verified: authenticated
    connect(t, PHONE, "10.0.0.7", steps=2)
    with pytest.raises(SecurityError) as err:
        claim(t, PC.device_id, "10.0.0.66")
    assert err.value.return_code == ReturnCode.BUSY
    assert t.pending == 2
