"""The bench's one table: a row per measured figure, its targets, and the JSON dump.

Every row has the same columns: the figure for direct, the bare proxy and routerd, the ratio the
issue's target is about, the target, and whether this run met it. Values are already medians.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

Num = float | int | None


def fmt(value: Num, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


@dataclass
class Row:
    metric: str
    direct: str = "—"
    bare: str = "—"
    routerd: str = "—"
    ratio: str = ""
    target: str = ""
    met: str = ""


class Table:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(
        self,
        metric: str,
        direct: Num = None,
        bare: Num = None,
        routerd: Num = None,
        *,
        spec: str = ".2f",
        ratio: Num = None,
        target: str = "",
        ok: bool | None = None,
        routerd_text: str | None = None,
    ) -> None:
        self.rows.append(
            Row(
                metric,
                fmt(direct, spec),
                fmt(bare, spec),
                routerd_text if routerd_text is not None else fmt(routerd, spec),
                fmt(ratio, ".2f") if ratio is not None else "",
                target,
                "" if ok is None else ("yes" if ok else "**no**"),
            )
        )

    def section(self, title: str) -> None:
        self.rows.append(Row(f"**{title}**", "", "", "", "", "", ""))

    def markdown(self) -> list[str]:
        out = [
            "| metric | direct | bare proxy | routerd | ratio | target | met |",
            "|---|--:|--:|--:|--:|---|---|",
        ]
        for r in self.rows:
            out.append(
                f"| {r.metric} | {r.direct} | {r.bare} | {r.routerd} | {r.ratio} "
                f"| {r.target} | {r.met} |"
            )
        return out

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.rows]


def ok_le(value: Num, limit: float) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value <= limit


def ok_ge(value: Num, limit: float) -> bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value >= limit
