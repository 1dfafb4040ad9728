"""The test-case catalogue: ``specs/conformance/cases.toml`` (data), read with ``tomllib``."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

CATALOGUE_PATHS = (
    Path(__file__).resolve().parents[2] / "specs" / "conformance" / "cases.toml",  # source tree
    Path(__file__).resolve().parent / "cases.toml",  # a packaged copy, if shipped
)
PROFILES = ("core", "av", "file", "all")


@dataclass(frozen=True, slots=True)
class CaseSpec:
    id: str
    title: str
    clause: str
    spec: str
    profiles: tuple[str, ...]
    mandatory: bool
    requires: tuple[str, ...]
    preconditions: str
    steps: tuple[str, ...]
    expected: str


def catalogue_path() -> Path:
    for path in CATALOGUE_PATHS:
        if path.is_file():
            return path
    raise FileNotFoundError("specs/conformance/cases.toml not found")


def load_cases(path: Path | None = None) -> list[CaseSpec]:
    data = tomllib.loads((path or catalogue_path()).read_text(encoding="utf-8"))
    cases = []
    seen: set[str] = set()
    for raw in data["case"]:
        if raw["id"] in seen:
            raise ValueError(f"duplicate case id {raw['id']}")
        seen.add(raw["id"])
        cases.append(CaseSpec(
            id=raw["id"], title=raw["title"], clause=raw["clause"], spec=raw["spec"],
            profiles=tuple(raw["profiles"]), mandatory=bool(raw["mandatory"]),
            requires=tuple(raw.get("requires", ())), preconditions=raw["preconditions"],
            steps=tuple(raw["steps"]), expected=raw["expected"],
        ))
    return cases


def select(cases: list[CaseSpec], profile: str) -> list[CaseSpec]:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    return [c for c in cases if profile == "all" or profile in c.profiles]
