"""HTML building blocks for the report page: escaped text, accessible tables, inlined figures, the page.

Plain string building: every piece of text from a run goes through :func:`text`, every number through
:func:`number`, so a cell shows a rounded value and carries the exact one in ``data-value``.
"""
from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; color: #1b1b1b; background: #fff;
       font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 1rem 1.5rem 3rem; overflow-wrap: break-word; }
h1 { font-size: 1.7rem; margin: .5rem 0 .25rem; }
h2 { font-size: 1.35rem; margin: 2.2rem 0 .5rem; padding-bottom: .2rem; border-bottom: 2px solid #d0d7de; }
h3 { font-size: 1.1rem; margin: 1.6rem 0 .4rem; }
h4 { font-size: 1rem; margin: 1.2rem 0 .3rem; }
p, li { max-width: 75ch; }
.lede { color: #444; margin-top: 0; }
.note { color: #555; font-size: .9rem; }
nav ol { columns: 2; padding-left: 1.2rem; margin: .25rem 0; }
figure { margin: 1rem 0 1.5rem; break-inside: avoid; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { font-size: .9rem; color: #444; margin-top: .3rem; }
.table-wrap { max-width: 100%; overflow-x: auto; }
.pair { display: flex; flex-wrap: wrap; gap: 0 2.5rem; align-items: flex-start; }
.pair > div { max-width: 100%; }
table { border-collapse: collapse; font-size: .9rem; margin: .4rem 0 1.2rem; font-variant-numeric: tabular-nums; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: .2rem 0 .4rem; min-width: 18rem; }
th, td { padding: .25rem .6rem; border-bottom: 1px solid #d8dee4; text-align: right; vertical-align: top; }
thead th { border-bottom: 2px solid #8c959f; background: #f6f8fa; }
th.text, td.text { text-align: left; }
td.wrap { overflow-wrap: anywhere; min-width: 8ch; }
td.best { background: #dafbe1; font-weight: 700; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; padding: .5rem .75rem;
      border-radius: 4px; font-size: .85rem; margin: .25rem 0 .75rem; }
dl.card { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .5rem 0 1rem; }
dl.card dt { font-weight: 600; }
dl.card dd { margin: 0; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0);
                   white-space: nowrap; }
footer { color: #555; font-size: .85rem; margin-top: 3rem; border-top: 1px solid #d0d7de; padding-top: .5rem; }
@media print {
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  .table-wrap { overflow: visible; }
  h2, h3, h4 { break-after: avoid; }
  table, figure, pre { break-inside: avoid; }
  p { orphans: 3; widows: 3; }
  td.best { background: none; text-decoration: underline; }
  a { color: inherit; text-decoration: none; }
}
"""


def text(value) -> str:
    """Escaped text for element content and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class Cell:
    """A table cell: ``shown`` is the text, ``value`` the exact number (``data-value``), ``key`` its JSON key."""

    shown: str
    value: object = None
    key: str | None = None
    best: bool = False
    is_text: bool = False
    wrap: bool = False  # may break anywhere (paths)


def number(value, key: str | None = None, percent: bool = False, digits: int = 4, best: bool = False) -> Cell:
    """A numeric cell: integers as they are, floats to ``digits`` significant digits (or as a percentage)."""
    if value is None:
        return Cell("–", None, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return Cell(str(value), None, key, best, is_text=True)
    if percent:
        shown = f"{100 * value:.2f} %"
    elif isinstance(value, int):
        shown = str(value)
    else:
        shown = f"{value:.{digits}g}"
    return Cell(shown, value, key, best)


def label(value, wrap: bool = False) -> Cell:
    """A text cell; ``wrap`` lets long unbroken text (a path) break anywhere."""
    return Cell("–" if value is None else str(value), None, None, is_text=True, wrap=wrap)


def _cell(cell: Cell, tag: str = "td", scope: str | None = None) -> str:
    classes = " ".join(c for c in ("text" if cell.is_text else "", "wrap" if cell.wrap else "",
                                   "best" if cell.best else "") if c)
    attrs = (f' scope="{scope}"' if scope else "") + (f' class="{classes}"' if classes else "")
    if cell.key:
        attrs += f' data-key="{text(cell.key)}"'
    if cell.value is not None:
        attrs += f' data-value="{text(repr(cell.value))}"'
    best = '<span aria-hidden="true"> ★</span><span class="visually-hidden"> (best)</span>' if cell.best else ""
    return f"<{tag}{attrs}>{text(cell.shown)}{best}</{tag}>"


def table(caption: str, columns: list[str], rows: list[list[Cell | str]], table_id: str | None = None) -> str:
    """An accessible table: a caption, column headers (aligned as their cells: text left, numbers right), and
    the first cell of each row as its row header."""
    cells = [[c if isinstance(c, Cell) else label(c) for c in row] for row in rows]
    left = [True, *(c.is_text for c in cells[0][1:])] if cells else [True] * len(columns)
    head = "".join(f'<th scope="col" class="text">{text(c)}</th>' if is_left else f'<th scope="col">{text(c)}</th>'
                   for c, is_left in zip(columns, left))
    body = "".join("<tr>" + _cell(row[0], "th", "row") + "".join(_cell(c) for c in row[1:]) + "</tr>\n"
                   for row in cells)
    ident = f' id="{text(table_id)}"' if table_id else ""
    return (f'<div class="table-wrap"><table{ident}><caption>{text(caption)}</caption>'
            f"<thead><tr>{head}</tr></thead><tbody>\n{body}</tbody></table></div>\n")


def side_by_side(*parts: str) -> str:
    """Blocks (tables) next to each other where the width allows, one under the other where it does not."""
    return '<div class="pair">' + "".join(f"<div>{p}</div>" for p in parts if p) + "</div>\n"


def figure(png: bytes, alt: str, caption: str, figure_id: str | None = None) -> str:
    """A figure with the PNG inlined as a data URI."""
    data = base64.b64encode(png).decode("ascii")
    ident = f' id="{text("_".join(figure_id.split()))}"' if figure_id else ""  # ids hold no whitespace
    return (f'<figure{ident}><img src="data:image/png;base64,{data}" alt="{text(alt)}">'
            f"<figcaption>{text(caption)}</figcaption></figure>\n")


def section(section_id: str, title: str, body: str) -> str:
    return f'<section id="{text(section_id)}" aria-labelledby="{text(section_id)}-h">' \
           f'<h2 id="{text(section_id)}-h">{text(title)}</h2>\n{body}</section>\n'


def paragraph(content: str, css: str | None = None) -> str:
    attrs = f' class="{text(css)}"' if css else ""
    return f"<p{attrs}>{text(content)}</p>\n"


def definitions(items: list[tuple[str, str]]) -> str:
    return '<dl class="card">' + "".join(f"<dt>{text(k)}</dt><dd>{text(v)}</dd>" for k, v in items) + "</dl>\n"


def code(lines: list[str]) -> str:
    return "".join(f"<pre><code>{text(line)}</code></pre>\n" for line in lines)


def content(title: str, lede: str, sections: list[tuple[str, str, str]], footer: str, nav: bool = True) -> str:
    """The page's header, contents nav (when ``nav``), sections ((id, title, body) triples) and footer."""
    links = "".join(f'<li><a href="#{text(i)}">{text(t)}</a></li>' for i, t, _ in sections)
    body = "".join(section(i, t, b) for i, t, b in sections)
    return (f"<header><h1>{text(title)}</h1>\n<p class=\"lede\">{text(lede)}</p></header>\n"
            + (f'<nav aria-label="Contents"><ol>{links}</ol></nav>\n' if nav else "")
            + f"{body}<footer>{text(footer)}</footer>\n")


def page(title: str, lede: str, sections: list[tuple[str, str, str]], footer: str) -> str:
    """The whole document: ``sections`` are (id, title, body) triples, listed in a contents nav."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'\">\n"
            f"<title>{text(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n"
            f"{content(title, lede, sections, footer)}</main>\n</body>\n</html>\n")


FRAGMENT_CLASS = "onnxfault-report"  # the element a fragment's style rules are scoped to


def scoped_css(scope: str = f".{FRAGMENT_CLASS}") -> str:
    """The page's screen rules for a fragment inside someone else's page (a notebook): every selector under
    ``scope``; ``body``'s rule styles the scope itself, ``:root`` and the print rules are left out."""
    rules = []
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", CSS.split("@media")[0]):
        names = [s.strip() for s in selectors.split(",") if s.strip() != ":root"]
        if names:
            rules.append(", ".join(scope if s == "body" else f"{scope} {s}" for s in names) + " {" + body + "}")
    return "\n".join(rules)


def fragment(body: str) -> str:
    """``body`` (page markup) as one self-contained element: scoped inline CSS, no script, figures inlined."""
    return f'<div class="{FRAGMENT_CLASS}"><style>\n{scoped_css()}\n</style>\n{body}</div>\n'
