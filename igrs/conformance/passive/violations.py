"""What every passive check returns: problems (text, rule) and the violations reported."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Problem = tuple[str, str]  # (what is wrong, the spec rule)


@dataclass(frozen=True, slots=True)
class Violation:
    """One broken rule: when, between whom, in which message, what, and the rule in specs/."""

    ts: float
    where: str  # "src:port -> dst:port", "(tcp)" appended for M-POST traffic
    what: str  # the message's start line or type
    text: str
    rule: str

    def __str__(self) -> str:
        return f"{self.ts:.6f} {self.where} [{self.what}]: {self.text} ({self.rule})"

    def to_json(self) -> dict[str, Any]:
        return {"time": round(self.ts, 6), "where": self.where, "message": self.what,
                "violation": self.text, "rule": self.rule}


def endpoint_text(addr: str, port: int) -> str:
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"
