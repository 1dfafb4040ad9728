"""IGRS conformance suite: a test device that checks a device under test against the
catalogue in specs/conformance/cases.toml (see specs/conformance/README.md)."""

from igrs.conformance.catalogue import CaseSpec, load_cases
from igrs.conformance.runner import CaseResult, Lifecycle, Report, run_suite

__all__ = ["CaseResult", "CaseSpec", "Lifecycle", "Report", "load_cases", "run_suite"]
