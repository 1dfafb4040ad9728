"""The event loop of ``igrs device run`` / ``igrs relay serve`` (igrs.cli.event_loop)."""

from __future__ import annotations

import asyncio

import pytest

from igrs.cli import event_loop
from igrs.cli.main import build_parser

uvloop = pytest.importorskip("uvloop", reason="uvloop is in the test extra (igrs[uvloop])")


async def which() -> str:
    return event_loop.loop_name(asyncio.get_running_loop())


@pytest.mark.parametrize("option, env, expected", [
    ("asyncio", None, "asyncio"),
    ("uvloop", None, "uvloop"),
    ("auto", None, "uvloop"),  # installed: taken
    (None, None, "uvloop"),  # no option, no environment: auto
    (None, "asyncio", "asyncio"),  # IGRS_LOOP when no option
    ("uvloop", "asyncio", "uvloop"),  # the option wins
])
def test_the_chosen_loop_runs_the_command(option: str | None, env: str | None, expected: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if env is None:
        monkeypatch.delenv(event_loop.LOOP_ENV, raising=False)
    else:
        monkeypatch.setenv(event_loop.LOOP_ENV, env)
    assert event_loop.run(which(), option) == expected


def test_without_the_extra_auto_is_asyncio_and_uvloop_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if the extra were not installed
    assert event_loop.run(which(), "auto") == "asyncio"
    with pytest.raises(ValueError, match=r"igrs\[uvloop\]"):
        event_loop.run(which(), "uvloop")
    with pytest.raises(ValueError, match="unknown event loop"):
        event_loop.loop_factory("trio")


def test_device_run_and_relay_serve_take_the_option() -> None:
    device = build_parser("device").parse_args(["device", "run", "--name", "x", "--loop", "uvloop"])
    assert device.loop == "uvloop"
    # not given: $IGRS_LOOP, else auto
    assert build_parser("device").parse_args(["device", "run", "--name", "x"]).loop is None
    relay = build_parser("relay").parse_args(["relay", "serve", "--loop", "asyncio"])
    assert relay.loop == "asyncio"
    assert not hasattr(build_parser().parse_args(["discover"]), "loop")  # short commands: asyncio's loop
