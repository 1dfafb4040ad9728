"""The test-case catalogue (data, read with ``tomllib``): ``specs/conformance/cases.toml``
(core) followed by every ``cases-<area>.toml`` beside it in name order (profiles, groups...)."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

CATALOGUE_DIRS = (
    Path(__file__).resolve().parents[2] / "specs" / "conformance",  # source tree
    Path(__file__).resolve().parent,  # the packaged copy (pyproject package-data)
)
PROFILES = ("core", "av", "file", "all")
BASES = ("public", "project")  # what a case's rule rests on (specs/conformance/README.md, "Basis")


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
    basis: str = "project"  # "public": follows from a cited public source; "project": our choice
    citation: str = ""  # the public source keys, or the project rule
    sealed: bool = False  # needs the device's secure pipe (not applicable to a device without)


def catalogue_files(directory: Path | None = None) -> list[Path]:
    """``cases.toml`` then ``cases-*.toml`` of the first catalogue directory that has one."""
    for d in ([directory] if directory else CATALOGUE_DIRS):
        if (d / "cases.toml").is_file():
            return [d / "cases.toml", *sorted(d.glob("cases-*.toml"))]
    raise FileNotFoundError("specs/conformance/cases.toml not found")


def load_cases(directory: Path | None = None) -> list[CaseSpec]:
    raws = []
    for path in catalogue_files(directory):
        raws += tomllib.loads(path.read_text(encoding="utf-8")).get("case", [])
    cases = []
    seen: set[str] = set()
    for raw in raws:
        if raw["id"] in seen:
            raise ValueError(f"duplicate case id {raw['id']}")
        seen.add(raw["id"])
        if raw.get("basis") not in BASES or not str(raw.get("citation", "")).strip():
            raise ValueError(f"case {raw['id']}: basis must be one of {', '.join(BASES)}, with a citation")
        cases.append(CaseSpec(
            id=raw["id"], title=raw["title"], clause=raw["clause"], spec=raw["spec"],
            profiles=tuple(raw["profiles"]), mandatory=bool(raw["mandatory"]),
            requires=tuple(raw.get("requires", ())), preconditions=raw["preconditions"],
            steps=tuple(raw["steps"]), expected=raw["expected"],
            basis=raw["basis"], citation=raw["citation"], sealed=bool(raw.get("sealed", False)),
        ))
    return cases


def select(cases: list[CaseSpec], profile: str) -> list[CaseSpec]:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r} (one of {', '.join(PROFILES)})")
    return [c for c in cases if profile == "all" or profile in c.profiles]
