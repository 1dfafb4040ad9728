"""Heads the stack writes, changed the ways peers and fuzzers change them: the one mutation loop
of the fast-path tests of HTTP/1.1 heads (test_http11_fast_paths.py) and of ISDP datagrams
(test_wire_fast_paths.py). Each names its own start lines, unknown lines, value characters and
noise, and may add operations of its own (``extra``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import strategies as st

COMMON_OPS = ("shuffle", "drop", "repeat", "lower", "space", "noise", "value", "start", "unknown", "nospace",
              "eol")

# extra(draw, op, start, lines, i): changes lines in place, or returns the whole head (ends the loop).
Extra = Callable[[st.DrawFn, str, str, list[str], int], bytes | None]


@dataclass(frozen=True)
class Mutations:
    starts: tuple[str, ...]
    unknown: tuple[str, ...]
    value_chars: tuple[str, ...]
    noise: tuple[str, ...]
    default_line: str  # put in when every line was dropped
    extra_ops: tuple[str, ...] = ()


def mutate(draw: st.DrawFn, head: bytes, m: Mutations, extra: Extra | None = None) -> bytes:
    """One to three changes of head (CRLF lines, ending in an empty line)."""
    start, *lines = head.decode()[:-4].split("\r\n")
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(COMMON_OPS + m.extra_ops))
        if not lines:
            lines = [m.default_line]
        i = draw(st.integers(0, len(lines) - 1))
        name, _, value = lines[i].partition(": ")
        if op == "shuffle":
            lines = list(draw(st.permutations(lines)))
        elif op == "drop":
            del lines[i]
        elif op == "repeat":
            variant = draw(st.sampled_from([lines[i], lines[i].upper(), lines[i].lower()]))
            lines.insert(draw(st.integers(0, len(lines))), variant)
        elif op == "lower":
            lines[i] = f"{name.lower()}: {value}"
        elif op == "space":
            lines[i] = draw(st.sampled_from([f"{name}:  {value}", f"{name}: {value} ", f"{name}: {value}\t",
                                             f"{name} : {value}", f" {name}: {value}", f"{name}:\t{value}"]))
        elif op == "noise":
            at = draw(st.integers(0, len(lines[i])))
            lines[i] = lines[i][:at] + draw(st.sampled_from(m.noise)) + lines[i][at:]
        elif op == "value":
            lines[i] = f"{name}: " + draw(st.text(st.sampled_from(m.value_chars), max_size=8))
        elif op == "start":
            start = draw(st.sampled_from(m.starts))
        elif op == "unknown":
            lines.insert(i, draw(st.sampled_from(m.unknown)))
        elif op == "nospace":
            lines[i] = f"{name}:{value}"
        elif op == "eol":
            return ("\n".join([start, *lines]) + "\n\n").encode()
        elif extra is not None and (whole := extra(draw, op, start, lines, i)) is not None:
            return whole
    return ("\r\n".join([start, *lines]) + "\r\n\r\n").encode("utf-8", "surrogatepass")
