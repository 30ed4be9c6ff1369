"""The browsable data-quality report: one static HTML page, `<reports>/quality/index.html`,
rewritten from `ops.dq_results` after every check (so it always shows the latest result of every
check, rule and loaded drop). Counts, shares and names only: no value of any row is ever shown."""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path

from haic_pipeline.warehouse.files import write_atomic
from haic_pipeline.quality.suites import CheckSpec

REPORT_NAME = "index.html"

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;font-size:.9em}
th{background:#f3f3f3} .fail{background:#fde2e2} .warn{background:#fff4d6} .ok{color:#2a7}
.num{text-align:right} code{background:#f6f6f6;padding:0 .2em}
"""


def report_path(reports_dir: Path) -> Path:
    return Path(reports_dir) / REPORT_NAME


def _e(x) -> str:
    return html.escape("" if x is None else str(x))


def _pct(x) -> str:
    return "" if x is None else f"{100 * x:.2f} %"


def render(rows: list[dict], checks: list[CheckSpec], generated_at: str) -> str:
    by_check: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_check[r["check_name"]].append(r)
    spec_of = {c.name: c for c in checks}
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>HAIC data quality</title>"
             f"<style>{CSS}</style></head><body>",
             "<h1>HAIC pipeline: data quality</h1>",
             f"<p>Generated {_e(generated_at)} UTC from <code>ops.dq_results</code> (latest result per check, "
             "rule and loaded drop). Suites are generated from <code>data_contracts/</code>; a rule fails when "
             "its share of offending rows exceeds its <code>max_share</code>. Offending rows are listed in "
             "<code>ops.quarantine</code> (error rules) and <code>ops.row_flags</code> (warn rules) of the "
             "warehouse, by extract_id and row number; this page shows counts only.</p>"]
    summary = ["<table><tr><th>check</th><th>asset</th><th>severity</th><th>result</th><th>rules failed</th>"
               "<th>drops</th><th>last validated</th></tr>"]
    sections = []
    for name in [c.name for c in checks if c.name in by_check] + sorted(set(by_check) - set(spec_of)):
        rs = by_check[name]
        spec = spec_of.get(name)
        failed = [r for r in rs if not r["passed"]]
        sev = spec.severity if spec else rs[0]["severity"]
        cls = "ok" if not failed else ("fail" if sev == "error" else "warn")
        drops = sorted({r["extract_id"] for r in rs if r["extract_id"]})
        summary.append(
            f"<tr class='{cls}'><td><a href='#{_e(name)}'>{_e(name)}</a></td><td>{_e(rs[0]['asset'])}</td>"
            f"<td>{_e(sev)}</td><td>{'passed' if not failed else 'FAILED'}</td>"
            f"<td class='num'>{len({r['rule'] for r in failed})}</td><td class='num'>{len(drops)}</td>"
            f"<td>{_e(max(str(r['checked_at']) for r in rs))}</td></tr>")
        sec = [f"<h2 id='{_e(name)}'>{_e(name)} <small>({_e(rs[0]['asset'])}, {_e(sev)})</small></h2>"]
        if spec:
            sec.append(f"<p>{_e(spec.description)}</p>")
        desc = {r.name: r.description for r in spec.rules} if spec else {}
        sec.append("<table><tr><th>rule</th><th>expectation</th><th>what</th><th>evaluated</th>"
                   "<th>unexpected</th><th>share</th><th>max share</th><th>result</th><th>drops failing</th></tr>")
        by_rule: dict[str, list[dict]] = defaultdict(list)
        for r in rs:
            by_rule[r["rule"]].append(r)
        for rule, rr in by_rule.items():
            ev = sum(r["evaluated"] or 0 for r in rr)
            un = sum(r["unexpected"] or 0 for r in rr)
            bad = [r for r in rr if not r["passed"]]
            exc = [r["exception"] for r in rr if r["exception"]]
            rcls = "ok" if not bad else ("fail" if rr[0]["severity"] == "error" else "warn")
            where = ", ".join(sorted(str(r["extract_id"] or "staging") for r in bad))
            result = "passed" if not bad else ("NOT MEASURED: " + exc[0][:200] if exc else "FAILED")
            sec.append(
                f"<tr class='{rcls}'><td>{_e(rule)}</td><td>{_e(rr[0]['expectation'])}</td>"
                f"<td>{_e(desc.get(rule, ''))}</td><td class='num'>{ev:,}</td><td class='num'>{un:,}</td>"
                f"<td class='num'>{_pct(un / ev if ev else 0.0)}</td><td class='num'>{_pct(rr[0]['max_share'])}</td>"
                f"<td>{_e(result)}</td><td>{_e(where)}</td></tr>")
        sec.append("</table>")
        detail = [r for r in rs if (not r["passed"]) or r["scope"] in ("drop_sequence", "drop_changes")]
        if detail:
            sec.append("<details><summary>per drop</summary><table><tr><th>extract_id</th><th>rule</th>"
                       "<th>evaluated</th><th>unexpected</th><th>share</th><th>result</th><th>figures</th></tr>")
            for r in sorted(detail, key=lambda r: (str(r["extract_id"]), r["rule"])):
                figures = r["details"] if r["scope"] in ("drop_sequence", "drop_changes") else ""
                sec.append(
                    f"<tr class='{'ok' if r['passed'] else ('fail' if r['severity'] == 'error' else 'warn')}'>"
                    f"<td>{_e(r['extract_id'] or 'staging')}</td><td>{_e(r['rule'])}</td>"
                    f"<td class='num'>{_e(r['evaluated'])}</td><td class='num'>{_e(r['unexpected'])}</td>"
                    f"<td class='num'>{_pct(r['unexpected_share'])}</td>"
                    f"<td>{'passed' if r['passed'] else 'FAILED'}</td><td><code>{_e(figures)}</code></td></tr>")
            sec.append("</table></details>")
        sections.append("\n".join(sec))
    summary.append("</table>")
    parts += ["<h2>Checks</h2>", "\n".join(summary)] + sections + ["</body></html>"]
    return "\n".join(parts)


def write_report(reports_dir: Path, rows: list[dict], checks: list[CheckSpec], generated_at: str) -> Path:
    """Write the page atomically (a browser never sees half a page); returns its path."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    path = report_path(reports_dir)
    write_atomic(path, render(rows, checks, generated_at))
    return path
