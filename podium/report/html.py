"""Small HTML builders for the report: escaped text, tables, embedded PNGs, the page frame.

Plain HTML5 and a little CSS; no scripts and nothing fetched over the network. Every number
cell keeps its exact value in `data-value` (Python's repr) and, where it is a logged metric,
its name in `data-metric` (`<loader>/<key>`), so the page can be checked against the logs.
"""

import base64
import html
import math
from typing import Iterable, Optional, Sequence, Tuple

__all__ = ["esc", "number", "number_cell", "key_cell", "table", "image", "details", "pre", "page"]

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; \
color: #1d2430; background: #fff; }
header { background: #1d2430; color: #fff; padding: 14px 28px; }
header h1 { margin: 0; font-size: 22px; }
header p { margin: 4px 0 0; color: #c9d1dc; font-size: 13px; word-break: break-all; }
nav { padding: 8px 28px; background: #eef1f5; border-bottom: 1px solid #d6dbe2; }
nav a { margin-right: 16px; color: #1f5fa8; text-decoration: none; }
main { padding: 4px 28px 40px; max-width: 1500px; }
h2 { border-bottom: 2px solid #d6dbe2; padding-bottom: 4px; margin-top: 30px; }
h3 { margin-top: 22px; }
h4 { margin: 16px 0 4px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d6dbe2; padding: 3px 9px; text-align: right; }
th { background: #eef1f5; }
td.key, th.key { text-align: left; font-family: ui-monospace, Menlo, Consolas, monospace; }
tr.summary td { font-weight: 600; background: #f6f8fa; }
td.best { background: #e3f4e6; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; border: 1px solid #d6dbe2; padding: 4px; background: #fff; }
figure img { display: block; max-width: 100%; image-rendering: auto; }
figure.overlay img { width: 256px; height: auto; image-rendering: pixelated; }
figcaption { font-size: 12px; color: #4a5463; text-align: center; word-break: break-all; }
pre { background: #f6f8fa; border: 1px solid #d6dbe2; padding: 10px; overflow: auto; \
font-size: 12.5px; max-height: 640px; }
details { margin: 8px 0; } summary { cursor: pointer; font-weight: 600; }
.note { background: #fff7e0; border-left: 4px solid #e0a800; padding: 6px 10px; margin: 8px 0; }
.muted { color: #5d6776; }
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def number(value) -> str:
    """Four significant digits (ints as they are); nan / inf spelled out."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return esc(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return format(value, ".4g")


def number_cell(value, metric: Optional[str] = None, css: str = "") -> str:
    if value is None:
        return '<td class="muted">–</td>'
    attrs = (
        f' data-value="{esc(repr(value))}"'
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else ""
    )
    if metric:
        attrs += f' data-metric="{esc(metric)}"'
    if css:
        attrs += f' class="{css}"'
    return f"<td{attrs}>{number(value)}</td>"


def table(
    header: Sequence[str], rows: Iterable[Tuple[str, Sequence[str]]], table_id: str = ""
) -> str:
    """`rows`: (css class of the row, [cell HTML, ...]); the header cells are text."""
    head = "".join(
        f'<th class="key">{esc(header[0])}</th>' if i == 0 else f"<th>{esc(h)}</th>"
        for i, h in enumerate(header)
    )
    body = "".join(
        f'<tr class="{css}">' + "".join(cells) + "</tr>"
        if css
        else "<tr>" + "".join(cells) + "</tr>"
        for css, cells in rows
    )
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def key_cell(text) -> str:
    return f'<td class="key">{esc(text)}</td>'


def image(
    png: bytes, alt: str, caption: str = "", css: str = "", link: Optional[str] = None
) -> str:
    source = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    tag = f'<img src="{source}" alt="{esc(alt)}">'
    if link:
        tag = f'<a href="{esc(link)}">{tag}</a>'
    cls = f' class="{css}"' if css else ""
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f"<figure{cls}>{tag}{cap}</figure>"


def details(summary: str, body: str, open_: bool = False) -> str:
    return f"<details{' open' if open_ else ''}><summary>{esc(summary)}</summary>{body}</details>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def page(
    title: str, subtitle: str, sections: Sequence[Tuple[str, str, str]], notes: Sequence[str] = ()
) -> str:
    """The whole document; `sections` are (anchor id, heading, body HTML)."""
    nav = "".join(f'<a href="#{esc(ident)}">{esc(heading)}</a>' for ident, heading, _ in sections)
    note_html = "".join(f'<p class="note">{esc(n)}</p>' for n in notes)
    body = "".join(
        f'<section id="{esc(ident)}"><h2>{esc(heading)}</h2>{html_}</section>'
        for ident, heading, html_ in sections
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"<header><h1>{esc(title)}</h1><p>{esc(subtitle)}</p></header><nav>{nav}</nav>"
        f"<main>{note_html}{body}</main></body></html>\n"
    )
