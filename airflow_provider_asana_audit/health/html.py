"""
The archive's health as one self-contained HTML document: the calendar, the events per day and the
problems, with styles, script and chart inline (no external asset, nothing fetched), for the Airflow
UI page and for ``verify --html``.

.. seealso:: docs/archive-page.md
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from html import escape

from airflow_provider_asana_audit.health.model import ArchiveHealth, Cell, SeriesHealth
from airflow_provider_asana_audit.timeutils import format_duration, format_instant

__all__ = ["STATE_LABELS", "render_html"]

#: How each state is named on the page.
STATE_LABELS = {
    "whole": "whole",
    "late": "late events recorded",
    "repaired": "repaired",
    "damaged": "damaged",
    "missing": "missing",
    "not_due": "not yet due",
}
_COLOURS = {
    "whole": "#2e7d32",
    "late": "#66bb6a",
    "repaired": "#1e88e5",
    "damaged": "#e65100",
    "missing": "#c62828",
    "not_due": "#bdbdbd",
}

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#212121;
background:#fff}
h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 4px}h3{font-size:15px;margin:16px 0 4px}
.muted{color:#616161}.legend span{display:inline-flex;align-items:center;margin-right:12px}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px}
.month{display:flex;align-items:center;gap:8px;margin:2px 0}.month-name{width:64px;color:#616161}
.days{display:flex;flex-wrap:wrap;gap:3px}
.cell{width:18px;height:18px;border-radius:3px;border:2px solid transparent;box-sizing:border-box;
cursor:default;position:relative}
.cell:focus{outline:3px solid #000;outline-offset:1px}
.cell.expiring{border-color:#000;border-style:dashed}
.cell.drop-off::after{content:"";position:absolute;right:1px;top:1px;width:5px;height:5px;border-radius:50%;
background:#fff}
#details{position:sticky;top:0;background:#fafafa;border:1px solid #e0e0e0;border-radius:4px;
padding:8px;min-height:3em;margin:8px 0;white-space:pre-wrap}
table{border-collapse:collapse;margin:4px 0}td,th{border:1px solid #e0e0e0;padding:4px 8px;text-align:left;
vertical-align:top}code{font:12px ui-monospace,monospace;background:#f5f5f5;padding:1px 3px}
.warning{background:#fff3e0;border-left:4px solid #e65100;padding:6px 10px;margin:8px 0}
svg text{font:11px system-ui,sans-serif;fill:#616161}
"""

# A calendar is one Tab stop (a roving tabindex: only the cell last focused has tabindex 0), so that a
# year of days does not stand between the keyboard and the rest of the page. Arrow keys move between its
# cells: left and right a day, up and down a week; Home and End to its first and last day. Focusing or
# hovering a cell shows its details in the panel.
_SCRIPT = """
(function(){
var panel=document.getElementById("details");
function show(cell){panel.textContent=cell.getAttribute("data-details");}
// In the Airflow UI the page sits in a frame sandboxed without allow-top-navigation, so a target=_top link
// is blocked: a run's link moves the UI's own router instead (same origin only; new tabs as usual).
document.addEventListener("click",function(e){
  var a=e.target.closest&&e.target.closest("a[target=_top]");
  if(!a||window.top===window||e.button!==0||e.ctrlKey||e.metaKey||e.shiftKey||e.altKey)return;
  try{
    var to=new URL(a.href),top=window.top;
    if(to.origin!==top.location.origin)return;
    top.history.pushState(null,"",to.pathname+to.search+to.hash);
    top.dispatchEvent(new PopStateEvent("popstate",{state:null}));
    e.preventDefault();
  }catch(err){}
});
document.querySelectorAll("[role=grid]").forEach(function(grid){
  var cells=Array.prototype.slice.call(grid.querySelectorAll("[role=gridcell]"));
  cells.forEach(function(cell,i){
    cell.addEventListener("focus",function(){
      cells.forEach(function(other){other.tabIndex=-1;});
      cell.tabIndex=0;
      show(cell);
    });
    cell.addEventListener("mouseenter",function(){show(cell);});
    cell.addEventListener("keydown",function(e){
      var to={ArrowLeft:i-1,ArrowRight:i+1,ArrowUp:i-7,ArrowDown:i+7,Home:0,End:cells.length-1}[e.key];
      if(to===undefined)return;
      e.preventDefault();
      cells[Math.max(0,Math.min(cells.length-1,to))].focus();
    });
  });
});
})();
"""


def render_html(
    archives: Sequence[ArchiveHealth],
    *,
    run_link: Callable[[str, str], str] | None = None,
    title: str = "Asana audit archive",
) -> str:
    """
    The health of ``archives`` as one HTML document.

    :param archives: what :func:`..model.archive_health` built, one per archive.
    :param run_link: the address of a DAG run's page, from its DAG id and run id; without it, runs are
        named but not linked.
    :param title: the document's title and heading.
    """
    generated = max((archive.generated_at for archive in archives), default=None)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        # Nothing may be fetched: the page works offline, and shows what it was given only.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="muted">Generated {escape(format_instant(generated)) if generated else ""} from the '
        "manifests; a full check reads every byte.</p>",
        _legend(),
        '<div id="details" aria-live="polite">Hover over or focus a day to see it.</div>',
    ]
    if not archives:
        parts.append("<p>No archive is configured.</p>")
    for number, archive in enumerate(archives):
        parts.append(_archive(archive, number, run_link))
    parts.append(f"<script>{_SCRIPT}</script></body></html>")
    return "\n".join(parts) + "\n"


def _legend() -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{colour}"></i>{escape(STATE_LABELS[state])}</span>'
        for state, colour in _COLOURS.items()
    )
    return (
        f'<p class="legend">{items}<span><i class="swatch" style="border:2px dashed #000"></i>'
        "leaves Asana's 90 days soon</span><span>white dot: far fewer events than usual</span></p>"
    )


def _archive(archive: ArchiveHealth, number: int, run_link: Callable[[str, str], str] | None) -> str:
    parts = [f"<section><h2>{escape(archive.base)}</h2>", _check(archive)]
    if not archive.series:
        parts.append("<p>No export file found under this base path.</p>")
    for index, series in enumerate(archive.series):
        parts.append(_series(series, f"a{number}s{index}", run_link))
    parts.append(_problems(archive))
    parts.append("</section>")
    return "\n".join(parts)


def _check(archive: ArchiveHealth) -> str:
    report = archive.report
    age = archive.report_age_seconds
    if not report or age is None:
        return (
            '<p class="muted">No archive check report: run the verify operator (or '
            "<code>python -m airflow_provider_asana_audit.verify BASE --json FILE</code>) for problems "
            "that only reading every byte finds.</p>"
        )
    verdict = "WHOLE" if report.get("whole") else f"NOT WHOLE: {len(report.get('problems', []))} problems"
    return (
        f"<p>Newest full check: <strong>{escape(verdict)}</strong>, "
        f"{escape(str(report.get('checked_at')))} ({escape(format_duration(timedelta(seconds=age)))} ago)</p>"
    )


def _series(series: SeriesHealth, key: str, run_link: Callable[[str, str], str] | None) -> str:
    filters = f", filtered exports {series.filter_suffix}" if series.filter_suffix else ""
    counts = ", ".join(f"{count} {STATE_LABELS[state]}" for state, count in series.counts().items() if count)
    parts = [
        f"<h3>Workspace {escape(series.workspace_gid)}{escape(filters)}</h3>",
        f'<p class="muted">{escape(counts)}</p>',
        _expiring(series),
        f'<div role="grid" aria-label="Days of workspace {escape(series.workspace_gid)}{escape(filters)}" '
        f'id="{key}">',
    ]
    month = None
    for number, cell in enumerate(series.cells):
        name = cell.day.strftime("%Y-%m")
        if name != month:
            if month is not None:
                parts.append("</div></div>")
            month = name
            parts.append(
                f'<div class="month" role="row"><span class="month-name" role="rowheader">{name}</span>'
                '<div class="days">'
            )
        parts.append(_cell(cell, tab_stop=number == 0))
    if month is not None:
        parts.append("</div></div>")
    parts.append("</div>")
    parts.append(_volume(series))
    parts.append(_runs(series, run_link))
    return "\n".join(parts)


def _details(cell: Cell) -> str:
    lines = [
        f"{cell.day:%Y-%m-%d}: {STATE_LABELS[cell.state]}",
        f"interval [{format_instant(cell.day)}, {format_instant(cell.day + timedelta(days=1))})",
    ]
    if cell.events is not None:
        lines.append(f"{cell.events} events, {cell.bytes} bytes")
    if cell.exported_at is not None:
        lines.append(f"exported at {format_instant(cell.exported_at)}")
        if cell.lag_seconds is not None:
            lines.append(f"lag after the interval's end: {_duration(cell.lag_seconds)}")
    if cell.run_id:
        lines.append(f"by {cell.dag_id} run {cell.run_id}")
    if cell.drop_off:
        lines.append("far fewer events than the days before it")
    if cell.state in ("missing", "damaged"):
        lines.append(
            f"{cell.days_left} days left before Asana deletes these events"
            if cell.days_left >= 0
            else "Asana no longer holds these events: restore them from a backup"
        )
    lines += [f"{problem['kind']}: {problem['message']}" for problem in cell.problems]
    return "\n".join(lines)


def _cell(cell: Cell, *, tab_stop: bool) -> str:
    """One day; ``tab_stop`` for the calendar's first, the one Tab reaches (the script moves it)."""
    classes = ["cell"] + (["expiring"] if cell.expiring else []) + (["drop-off"] if cell.drop_off else [])
    details = _details(cell)
    summary = details.split("\n", 1)[0]
    return (
        f'<span role="gridcell" tabindex="{0 if tab_stop else -1}" class="{" ".join(classes)}" '
        f'data-state="{cell.state}" '
        f'data-day="{cell.day:%Y-%m-%d}" style="background:{_COLOURS[cell.state]}" '
        f'aria-label="{escape(summary)}" title="{escape(details)}" data-details="{escape(details)}"></span>'
    )


def _expiring(series: SeriesHealth) -> str:
    soon = [cell for cell in series.cells if cell.expiring]
    if not soon:
        return ""
    days = ", ".join(f"{cell.day:%Y-%m-%d} ({cell.days_left} days left)" for cell in soon)
    return (
        f'<p class="warning"><strong>{len(soon)} days will leave Asana\'s 90-day window without a whole '
        f"file</strong>: {escape(days)}. Re-export them before then; afterwards the events are gone for "
        "good.</p>"
    )


def _volume(series: SeriesHealth) -> str:
    """Events per day as bars, drop-offs in red."""
    cells = series.cells
    most = max((cell.events or 0 for cell in cells), default=0) or 1
    # Wide bars for a few days, thin ones for a year, at most 1,100 pixels in all.
    bar = max(3, min(24, 1100 // max(len(cells), 1)))
    width, height = max(len(cells) * bar, 200), 80
    bars = []
    for index, cell in enumerate(cells):
        if cell.events is None:
            continue
        tall = max(1, round(cell.events / most * (height - 14)))
        colour = "#c62828" if cell.drop_off else "#546e7a"
        bars.append(
            f'<rect x="{index * bar}" y="{height - tall}" width="{bar - 1}" height="{tall}" fill="{colour}">'
            f"<title>{cell.day:%Y-%m-%d}: {cell.events} events</title></rect>"
        )
    drops = [cell for cell in cells if cell.drop_off]
    note = (
        f'<p class="warning">{len(drops)} days far below the usual volume: '
        f"{escape(', '.join(f'{cell.day:%Y-%m-%d}' for cell in drops))} (a token that lost its scope, "
        "filters set wrong, or a quiet day)</p>"
        if drops
        else ""
    )
    return (
        f'<figure><svg role="img" aria-label="Events per day, up to {most}" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">'
        f'<text x="0" y="10">{most} events</text>{"".join(bars)}</svg>'
        f'<figcaption class="muted">Events per day</figcaption></figure>{note}'
    )


def _runs(series: SeriesHealth, run_link: Callable[[str, str], str] | None) -> str:
    """The runs that wrote the days that are not whole, linked when the page knows how."""
    rows = []
    for cell in series.cells:
        if cell.state not in ("late", "repaired", "damaged") or not cell.run_id or not cell.dag_id:
            continue
        name = escape(f"{cell.dag_id} / {cell.run_id}")
        # The page may sit in the UI's frame: a run opens in the whole window.
        href = escape(run_link(cell.dag_id, cell.run_id)) if run_link else ""
        run = f'<a href="{href}" target="_top">{name}</a>' if run_link else name
        rows.append(f"<tr><td>{cell.day:%Y-%m-%d}</td><td>{STATE_LABELS[cell.state]}</td><td>{run}</td></tr>")
    if not rows:
        return ""
    return "<table><tr><th>day</th><th>state</th><th>written by</th></tr>" + "".join(rows) + "</table>"


def _problems(archive: ArchiveHealth) -> str:
    """Each day's problems, the newest check's problems of no day, and what mends them."""
    rows = [
        (f"{cell.day:%Y-%m-%d}", problem["kind"], problem["message"])
        for series in archive.series
        for cell in series.cells
        for problem in cell.problems
    ]
    rows += [
        ("", str(problem.get("kind")), str(problem.get("message")))
        for problem in (archive.report or {}).get("problems", [])
        if not problem.get("reexport") and problem.get("kind") != "gap"
    ]
    mend = [command for series in archive.series for command in series.mend()]
    if not rows and not mend:
        checked = " or the newest check" if archive.report else ""
        return f"<p>No problem found in the manifests{checked}.</p>"
    parts = ["<h3>Problems</h3>"]
    if rows:
        parts.append(
            "<table><tr><th>day</th><th>kind</th><th>what</th></tr>"
            + "".join(
                f"<tr><td>{escape(day)}</td><td><code>{escape(kind)}</code></td><td>{escape(message)}</td></tr>"
                for day, kind, message in rows
            )
            + "</table>"
        )
    if mend:
        parts.append("<h3>To mend the missing and damaged days</h3>")
        parts += [f"<pre><code>{escape(command)}</code></pre>" for command in mend]
        parts.append('<p class="muted">Then run the archive check again.</p>')
    return "\n".join(parts)


def _duration(seconds: float) -> str:
    return format_duration(timedelta(seconds=round(seconds)))
