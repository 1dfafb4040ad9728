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

    top = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    missing = []
    for name in top.choices:  # each command's own tree (build_parser builds one at a time)
        tree = build_parser(name)
        sub = next(a for a in tree._actions if isinstance(a, argparse._SubParsersAction))
        missing += _undocumented(sub.choices[name], f"igrs {name}")
    assert missing == []


def test_request_ops_are_the_nodes_ops(tmp_path: object) -> None:
    from igrs.relay.config import RelayConfig
    from igrs.relay.server import RelayNode
    from igrs.relay.session import REQUEST_OPS

    node = RelayNode(RelayConfig(port=0))
    assert set(node._ops) == set(REQUEST_OPS)
