"""The sweep's report as one self-contained HTML page (``summary.html``).

The MLflow UI shows an ``.html`` artifact in a sandboxed frame that cannot fetch the run's
other files, so the plots are embedded as base64 PNG; the page opens the same way from the
sweep folder in any browser.
"""

from __future__ import annotations

import base64
import html

import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1rem 1.5rem; color: #1f2328; }
h1 { font-size: 1.3rem; } h2 { font-size: 1.05rem; margin-top: 1.5rem; }
table.candidates { border-collapse: collapse; font-size: 0.85rem; }
table.candidates th, table.candidates td { padding: 0.3rem 0.6rem; text-align: right;
  border-bottom: 1px solid #d0d7de; white-space: nowrap; }
table.candidates th:first-child, table.candidates td:first-child { text-align: left; }
table.candidates tbody tr:first-child { font-weight: 600; }
dl { display: grid; grid-template-columns: max-content auto; gap: 0.2rem 1rem; }
dt { color: #59636e; } dd { margin: 0; font-family: ui-monospace, monospace; }
.wide { overflow-x: auto; } figure { margin: 1rem 0; } figure img { max-width: 100%; }
figcaption { color: #59636e; font-size: 0.8rem; }
"""


def image(name: str, png: bytes) -> str:
    """A figure with the PNG inline and its artifact path as caption."""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


def page(title: str, table: pd.DataFrame, head: str, sentences: list[str],
         figures: dict[str, bytes], facts: list[tuple[str, str]]) -> str:
    """The page: ``facts`` (label, value), the candidates' ``table`` (already formatted for
    people, best first), the comparisons (``head`` and one item per sentence) and the
    ``figures`` (artifact path -> PNG)."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    if facts:
        parts.append("<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                      for k, v in facts) + "</dl>")
    parts.append("<h2>Candidates</h2>")
    parts.append('<div class="wide">' + table.to_html(index=False, border=0,
                                                      classes="candidates", na_rep="")
                 + "</div>" if len(table) else "<p>no runs</p>")
    if head or sentences:
        parts.append("<h2>Comparisons</h2>")
        if head:
            parts.append(f"<p>{html.escape(head)}</p>")
        parts.append("<ul>" + "".join(f"<li>{html.escape(s)}</li>" for s in sentences)
                     + "</ul>")
    if figures:
        parts.append("<h2>Plots</h2>")
        parts.extend(image(name, png) for name, png in figures.items())
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")
