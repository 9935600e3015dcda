"""The bench's table: one row per measure (section, measure, result), as plain text."""

from __future__ import annotations

Row = tuple[str, str, str]
HEADER: Row = ("section", "measure", "result")


def table(rows: list[Row], seconds: float, machine_name: str) -> str:
    """The rows as a Markdown table, then the machine and the seconds the bench took."""
    width = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER)]

    def line(r: Row) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in width) + "|"
    return "\n".join([line(HEADER), rule, *(line(r) for r in rows),
                      f"\n{machine_name}; {seconds:.0f} s"])
