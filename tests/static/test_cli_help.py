"""The command line explains itself: every option and argument of every igrs command has a
help text (issue 13, item 8), and `igrs relay request` lists exactly the relay's ops."""

from __future__ import annotations

import argparse


def _undocumented(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
    out: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out += _undocumented(sub, f"{prefix} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction) \
                and not action.help:
            out.append(f"{prefix} {'/'.join(action.option_strings) or action.dest}")
    return out


def test_every_option_has_a_help_text() -> None:
    from igrs.cli.main import build_parser

    assert _undocumented(build_parser(relay=True, file=True), "igrs") == []


def test_request_ops_are_the_nodes_ops(tmp_path: object) -> None:
    from igrs.relay.config import RelayConfig
    from igrs.relay.server import RelayNode
    from igrs.relay.session import REQUEST_OPS

    node = RelayNode(RelayConfig(port=0))
    assert set(node._ops) == set(REQUEST_OPS)
