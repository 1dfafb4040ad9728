"""Reports of a run: text (a line per case, printed as each finishes), JUnit XML (CI) and a
self-contained HTML page (people).

What a report shows of each case is listed once, in ``CASE_FIELDS`` (JUnit properties, HTML
columns): a new per-case field is one more entry there. Under ``--basis public`` a result
that does not count is marked advisory in every report (JUnit: ``skipped`` of type
``advisory``).
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from dataclasses import dataclass
from xml.etree import ElementTree as ET

from igrs.conformance.runner import (
    ERROR,
    FAIL,
    FAILED,
    INCOMPLETE,
    NA,
    PASS,
    PASSED,
    SKIP,
    VERDICT_TEXT,
    VERDICTS,
    CaseResult,
    Report,
)


@dataclass(frozen=True)
class CaseField:
    """One thing shown of every case: ``name``, ``value``; ``title`` is its HTML column head
    (empty: not a column), ``css`` the cell's class, ``junit`` whether it is a property of the
    JUnit testcase."""

    name: str
    title: str
    value: Callable[[Report, CaseResult], str]
    css: str = ""
    junit: bool = False
    html: Callable[[Report, CaseResult], str] | None = None  # the cell's HTML, when not just the text


def _level(r: CaseResult) -> str:
    return "mandatory" if r.case.mandatory else "optional"


def verdict_text(report: Report, r: CaseResult) -> str:
    """The verdict as the HTML and the details spell it (``not applicable``), ``(advisory)``
    after a result that does not count (a project-basis case, or a project-choice detail,
    under ``--basis public``)."""
    text = VERDICT_TEXT.get(r.verdict, r.verdict)
    return f"{text} (advisory)" if report.advisory(r) and r.verdict != NA else text


def _short_citation(citation: str) -> str:
    return citation if len(citation) <= 90 else citation[:88].rsplit(" ", 1)[0] + " …"


def _basis_cell(report: Report, r: CaseResult) -> str:
    c, e = r.case, html.escape
    return (f'<b class="{e(c.basis)}" title="{e(c.citation)}">{e(c.basis)}</b>'
            f"<small>{e(_short_citation(c.citation))}</small>")


CASE_FIELDS: tuple[CaseField, ...] = (
    CaseField("id", "Case", lambda _, r: r.case.id, "id", junit=True),
    CaseField("clause", "Clause", lambda _, r: r.case.clause, "clause", junit=True),
    CaseField("title", "Title", lambda _, r: r.case.title),
    CaseField("spec", "", lambda _, r: r.case.spec, junit=True),
    CaseField("mandatory", "", lambda _, r: str(r.case.mandatory).lower(), junit=True),
    CaseField("level", "Level", lambda _, r: _level(r), "level"),
    CaseField("basis", "Basis", lambda _, r: r.case.basis, "basis", junit=True, html=_basis_cell),
    CaseField("citation", "", lambda _, r: r.case.citation, junit=True),
    CaseField("verdict", "Verdict", lambda _, r: r.verdict, "v", junit=True,
              html=lambda rep, r: html.escape(verdict_text(rep, r))),
    CaseField("advisory", "", lambda rep, r: str(rep.advisory(r)).lower(), junit=True),
    CaseField("reason", "Reason", lambda _, r: r.reason, "reason"),
)


def _evidence(r: CaseResult) -> str:
    return "\n\n".join(e.text() for e in r.evidence) or "(no messages exchanged)"


def _basis_line(report: Report) -> str:
    if report.basis == "public":
        return ("public-basis rules only: a result counts only where the rule follows from a cited public "
                "source; project-basis results are advisory")
    return "every rule, public and project basis"


def _open_line(report: Report) -> str:
    if report.open_services:
        return ", ".join(report.open_services)
    ran = any(r.case.id == "SES-007" and r.verdict in (PASS, FAIL) for r in report.results)
    return "none" if ran else "not checked (SES-007 did not run)"


def _run_properties(report: Report) -> list[tuple[str, str]]:
    props = [("target", report.target), ("device_id", report.device_id), ("location", report.location),
             ("profile", report.profile), ("basis", report.basis), ("verdict", report.verdict),
             ("verdict_reason", report.explanation()),
             ("secure_pipe", report.secure_pipe or "not probed"), ("open_services", _open_line(report))]
    props += [("narrowed", n) for n in report.narrowed]
    props += [("problem", p) for p in report.problems]
    if report.error:
        props.append(("run_error", report.error))
    return props


# --- JUnit ------------------------------------------------------------------------------------------
def to_junit(report: Report) -> bytes:
    """One ``testcase`` per case; a mandatory case not checked is ``skipped`` with its reason,
    so is a case not applicable (type ``not applicable``) and a failure that does not count
    under ``--basis public`` (type ``advisory``); a run whose target was not found is one
    ``error`` (testcase ``target``)."""
    counts = report.counts()
    advisory = report.advisory_failures
    failures = counts[FAIL] - sum(r.verdict == FAIL for r in advisory)
    errors = counts[ERROR] - sum(r.verdict == ERROR for r in advisory)
    run_error = 1 if report.error else 0
    suite = ET.Element("testsuite", {
        "name": f"igrs-conformance.{report.profile}", "tests": str(len(report.results) + run_error),
        "failures": str(failures), "errors": str(errors + run_error),
        "skipped": str(counts[SKIP] + counts[NA] + len(advisory)),
        "time": f"{sum(r.duration for r in report.results):.3f}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(report.started)),
    })
    props = ET.SubElement(suite, "properties")
    for name, value in _run_properties(report):
        ET.SubElement(props, "property", {"name": name, "value": value})
    if report.error:
        tc = ET.SubElement(suite, "testcase", {"classname": "igrs.conformance.run", "name": "target",
                                               "time": "0.000"})
        ET.SubElement(tc, "error", {"message": report.error, "type": "run"})
    for r in report.results:
        c = r.case
        tc = ET.SubElement(suite, "testcase", {
            "classname": f"igrs.conformance.{c.id.split('-')[0].lower()}",
            "name": f"{c.id} [{c.clause}] {c.title}", "time": f"{r.duration:.3f}",
        })
        p = ET.SubElement(tc, "properties")
        for f in CASE_FIELDS:
            if f.junit:
                ET.SubElement(p, "property", {"name": f.name, "value": f.value(report, r)})
        if r.verdict in (FAIL, ERROR) and report.advisory(r):  # reported, never counted
            message = f"advisory ({c.basis} basis under --basis public): {r.verdict}: {r.reason}"
            el = ET.SubElement(tc, "skipped", {"type": "advisory", "message": message})
            el.text = f"Expected: {c.expected}\n\nEvidence:\n{_evidence(r)}"
        elif r.verdict == FAIL:
            el = ET.SubElement(tc, "failure", {"message": r.reason, "type": _level(r)})
            el.text = f"Expected: {c.expected}\n\nEvidence:\n{_evidence(r)}"
        elif r.verdict == ERROR:
            el = ET.SubElement(tc, "error", {"message": r.reason})
            el.text = _evidence(r)
        elif r.verdict == SKIP:
            what = "mandatory case not checked" if c.mandatory and not report.advisory(r) else "not checked"
            ET.SubElement(tc, "skipped", {"message": f"{what}: {r.reason}", "type": VERDICT_TEXT[SKIP]})
        elif r.verdict == NA:
            ET.SubElement(tc, "skipped", {"message": f"not applicable: {r.reason}", "type": VERDICT_TEXT[NA]})
    ET.indent(suite)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


# --- HTML -------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.4em} table{border-collapse:collapse;width:100%} th,td{border:1px solid #ccc;padding:.3em .5em;
text-align:left;vertical-align:top} th{background:#f2f2f2} .pass{background:#e6f4ea} .fail{background:#fce8e6}
.error{background:#fef3e0} .skip{background:#fff8d6} .na{background:#f1f3f4;color:#555}
.v{font-weight:bold;text-transform:uppercase}
pre{background:#f8f8f8;border:1px solid #ddd;padding:.6em;overflow:auto;font-size:.85em;white-space:pre-wrap}
.summary span{display:inline-block;margin-right:1.2em;padding:.2em .6em;border-radius:.3em}
.verdict{font-size:1.15em;padding:.4em .8em;border-radius:.3em}
.verdict-passed{color:#137333;background:#e6f4ea} .verdict-failed{color:#c5221f;background:#fce8e6}
.verdict-incomplete{color:#8a4b00;background:#fff3c4;border:2px solid #e3a008}
.problems{border-left:.3em solid #e3a008;background:#fffbea;padding:.4em .8em}
td.id,td.level,td.v{white-space:nowrap} td.clause{max-width:16em} td.reason{font-size:.9em}
.advisory{opacity:.75} td.basis{white-space:nowrap}
td.basis small{display:block;white-space:normal;color:#555;max-width:18em}
.public{color:#0b57d0} .project{color:#6b4e16}
dl.run dt{font-weight:bold;float:left;clear:left;width:13em} dl.run dd{margin-left:13.5em}
"""
_ROW_CLASS = {PASS: "pass", FAIL: "fail", ERROR: "error", SKIP: "skip", NA: "na"}
_BANNER = {PASSED: "verdict-passed", FAILED: "verdict-failed", INCOMPLETE: "verdict-incomplete"}


def to_html(report: Report) -> bytes:
    e = html.escape
    counts = report.counts()
    columns = [f for f in CASE_FIELDS if f.title]
    rows = []
    for r in report.results:
        cells = []
        for f in columns:
            text = f.html(report, r) if f.html else e(f.value(report, r))
            if f.name == "id" and r.verdict in (FAIL, ERROR):  # only these have details to link to
                text = f'<a href="#{text}">{text}</a>'
            cells.append(f'<td class="{f.css}">{text}</td>' if f.css else f"<td>{text}</td>")
        advisory = " advisory" if report.advisory(r) else ""
        rows.append(f'<tr class="{_ROW_CLASS[r.verdict]}{advisory}">{"".join(cells)}</tr>')
    details = []
    for r in report.results:
        if r.verdict not in (FAIL, ERROR):
            continue
        c = r.case
        details.append(
            f'<section id="{e(c.id)}"><h3>{e(c.id)} — {e(c.title)} ({e(verdict_text(report, r))})</h3>'
            f"<p><b>Clause</b> {e(c.clause)}; <b>spec</b> {e(c.spec)}</p>"
            f"<p><b>Basis</b> {e(c.basis)}: {e(c.citation)}</p>"
            f"<p><b>Expected</b>: {e(c.expected)}</p><p><b>Found</b>: {e(r.reason)}</p>"
            f"<p><b>Steps</b>:</p><ol>{''.join(f'<li>{e(s)}</li>' for s in c.steps)}</ol>"
            "<p><b>Evidence</b> (messages exchanged, &gt; sent, &lt; received):</p>"
            f"<pre>{e(_evidence(r))}</pre></section>")
    problems = "".join(f"<p>{e(p)}</p>" for p in report.problems)
    narrowed = (f"<p>Narrowed by the lab: <code>{e(' '.join(report.narrowed))}</code></p>"
                if report.narrowed else "")
    summary = "".join(f'<span class="{_ROW_CLASS[v]}">{counts[v]} {e(VERDICT_TEXT.get(v, v))}</span>'
                      for v in VERDICTS)
    if report.basis == "public":
        summary += f'<span class="advisory">{len(report.advisory_failures)} of the fails/errors advisory</span>'
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>IGRS conformance: {e(report.target)}</title>
<style>{_CSS}</style></head><body>
<h1>IGRS conformance report — profile {e(report.profile)}</h1>
<p>Target <b>{e(report.target)}</b>, device id <code>{e(report.device_id or '?')}</code>,
location <code>{e(report.location or '?')}</code>, run at
{e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(report.started)))}.</p>{narrowed}
<p class="verdict {_BANNER[report.verdict]}"><b>{report.verdict}</b> — {e(report.explanation())}</p>
{f'<div class="problems">{problems}</div>' if problems else ''}
<dl class="run"><dt>Verdict counts</dt><dd>{e(_basis_line(report))}</dd>
<dt>Secure pipe</dt><dd>{e(report.secure_pipe or 'not probed')}</dd>
<dt>Services shared openly</dt><dd>{e(_open_line(report))} (usable without pairing, in the clear)</dd></dl>
<p class="summary">{summary}</p>
<table><thead><tr>{''.join(f'<th>{e(f.title)}</th>' for f in columns)}</tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<h2>Failures and errors</h2>{''.join(details) or '<p>None.</p>'}
</body></html>
"""
    return page.encode("utf-8")


# --- text -------------------------------------------------------------------------------------------
def text_header(report: Report) -> str:
    """The first line(s): what is tested (the device id once the target answered)."""
    lines = [f"IGRS conformance, profile {report.profile}: {report.target} ({report.device_id or '?'})"]
    if report.narrowed:
        lines.append(f"  narrowed by the lab: {' '.join(report.narrowed)}")
    lines.append(f"  counts: {_basis_line(report)}")
    if report.secure_pipe:
        lines.append(f"  secure pipe: {report.secure_pipe}")
    return "\n".join(lines)


def text_line(report: Report, r: CaseResult) -> str:
    """One case: ``PASS  M DISC-002  14543-5-1 9.6  title [project]`` (``(advisory)`` after a
    result that does not count; the reason below)."""
    level = "M" if r.case.mandatory else "O"
    note = " (advisory)" if report.advisory(r) and r.verdict != NA else ""
    return (f"  {r.verdict.upper():5} {level} {r.case.id:9} {r.case.clause:18} {r.case.title} "
            f"[{r.case.basis}]{note}"
            + (f"\n        -> {r.reason}" if r.reason and r.verdict != PASS else ""))


def text_findings(report: Report) -> list[str]:
    """What the run found of the device beside the cases: the services it shares openly."""
    return [f"  services shared openly: {_open_line(report)}"] if report.results else []


def text_problem(text: str) -> str:
    return f"!! {text}"


def text_summary(report: Report) -> str:
    """The counts and the verdict with its reason."""
    if report.error:  # nothing ran: one line says why
        return f"{report.verdict}: {report.error}"
    c = report.counts()
    advisory = (f" (public basis; {len(report.advisory_failures)} fail/error advisory)"
                if report.basis == "public" else "")
    return (f"{report.verdict}: {c[PASS]} pass, {c[FAIL]} fail, {c[ERROR]} error, {c[SKIP]} skip, "
            f"{c[NA]} n/a; {len(report.mandatory_failures)} mandatory failure(s), "
            f"{len(report.unchecked)} mandatory not checked{advisory}\n  {report.explanation()}")


def to_text(report: Report) -> str:
    """The whole report: the run-level problems first, then a line per case, what the run
    found beside them and the verdict."""
    return "\n".join([text_header(report), *map(text_problem, report.problems),
                      *(text_line(report, r) for r in report.results), *text_findings(report),
                      text_summary(report)])
