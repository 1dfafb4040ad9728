"""The one result record every benchmark script prints (read by ``benchmarks/run``)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass


@dataclass
class BenchResult:
    """A figure and the baseline it was measured against in the same run."""

    name: str
    value: float
    unit: str
    baseline: str
    baseline_value: float
    better: str = "higher"  # "higher" | "lower": which direction of value is an improvement
    goal: str = ""
    met: bool | None = None
    note: str = ""
    bench: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def emit(self) -> None:
        data = asdict(self)
        data["ratio"] = self.ratio
        print("BENCH-RESULT " + json.dumps(data, ensure_ascii=False), flush=True)


def say(text: str = "") -> None:
    print(text, flush=True)
