"""Reports of a run: JUnit XML (CI) and a self-contained HTML page (people)."""

from __future__ import annotations

import html
import time
from xml.etree import ElementTree as ET

from igrs.conformance.runner import ERROR, FAIL, NA, PASS, SKIP, VERDICT_TEXT, CaseResult, Report


def _evidence(r: CaseResult) -> str:
    return "\n\n".join(e.text() for e in r.evidence) or "(no messages exchanged)"


def verdict_text(report: Report, r: CaseResult) -> str:
    """The verdict as reports spell it: ``not applicable``; ``(advisory)`` after a result that
    does not count (a project-basis case, or a project detail, under ``--basis public``)."""
    text = VERDICT_TEXT.get(r.verdict, r.verdict)
    return f"{text} (advisory)" if report.advisory(r) and r.verdict != NA else text


def _basis_line(report: Report) -> str:
    if report.basis == "public":
        return ("public-basis rules only: a failure counts only where the rule follows from a cited public "
                "source; project-basis results are advisory")
    return "every rule, public and project basis"


def _advisory_count(report: Report) -> int:
    """Failures and errors that do not count (advisory under --basis public)."""
    return sum(r.verdict in (FAIL, ERROR) and report.advisory(r) for r in report.results)


def _advisory_span(report: Report) -> str:
    n = _advisory_count(report)
    return f'<span class="advisory">{n} of the fails/errors advisory</span>' if report.basis == "public" else ""


def _open_line(report: Report) -> str:
    if report.open_services:
        return ", ".join(report.open_services)
    ran = any(r.case.id == "SES-007" and r.verdict in (PASS, FAIL) for r in report.results)
    return "none" if ran else "not checked (SES-007 did not run)"


def to_junit(report: Report) -> bytes:
    counted = [r for r in report.results if not report.advisory(r)]
    failures = sum(r.verdict == FAIL for r in counted)
    errors = sum(r.verdict == ERROR for r in counted)
    suite = ET.Element("testsuite", {
        "name": f"igrs-conformance.{report.profile}", "tests": str(len(report.results)),
        "failures": str(failures), "errors": str(errors),
        "skipped": str(len(report.results) - failures - errors
                       - sum(r.verdict == PASS for r in report.results)),
        "time": f"{sum(r.duration for r in report.results):.3f}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(report.started)),
    })
    props = ET.SubElement(suite, "properties")
    for name, value in (("target", report.target), ("device_id", report.device_id),
                        ("location", report.location), ("profile", report.profile),
                        ("basis", report.basis), ("secure_pipe", report.secure_pipe or "not probed"),
                        ("open_services", _open_line(report))):
        ET.SubElement(props, "property", {"name": name, "value": value})
    if report.error:
        ET.SubElement(props, "property", {"name": "run_error", "value": report.error})
    for r in report.results:
        c = r.case
        tc = ET.SubElement(suite, "testcase", {
            "classname": f"igrs.conformance.{c.id.split('-')[0].lower()}",
            "name": f"{c.id} [{c.clause}] {c.title}", "time": f"{r.duration:.3f}",
        })
        p = ET.SubElement(tc, "properties")
        for name, value in (("id", c.id), ("clause", c.clause), ("spec", c.spec),
                            ("mandatory", str(c.mandatory).lower()), ("verdict", r.verdict),
                            ("basis", c.basis), ("citation", c.citation),
                            ("advisory", str(report.advisory(r)).lower())):
            ET.SubElement(p, "property", {"name": name, "value": value})
        if report.advisory(r) and r.verdict in (FAIL, ERROR):  # reported, never counted
            message = f"advisory ({c.basis} basis under --basis public): {r.verdict}: {r.reason}"
            el = ET.SubElement(tc, "skipped", {"type": "advisory", "message": message})
            el.text = _evidence(r)
        elif r.verdict == FAIL:
            level = "mandatory" if c.mandatory else "optional"
            el = ET.SubElement(tc, "failure", {"message": r.reason, "type": level})
            el.text = f"Expected: {c.expected}\n\nEvidence:\n{_evidence(r)}"
        elif r.verdict == ERROR:
            el = ET.SubElement(tc, "error", {"message": r.reason})
            el.text = _evidence(r)
        elif r.verdict in (SKIP, NA):
            ET.SubElement(tc, "skipped", {"message": r.reason, "type": VERDICT_TEXT.get(r.verdict, r.verdict)})
    ET.indent(suite)
    return ET.tostring(suite, encoding="utf-8", xml_declaration=True)


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:70em}
h1{font-size:1.4em} table{border-collapse:collapse;width:100%} th,td{border:1px solid #ccc;padding:.3em .5em;
text-align:left;vertical-align:top} th{background:#f2f2f2} .pass{background:#e6f4ea} .fail{background:#fce8e6}
.error{background:#fef3e0} .skip{background:#f1f3f4;color:#555} .na{background:#eef3fb;color:#555}
.advisory{opacity:.75} .v{font-weight:bold;text-transform:uppercase}
td.basis{white-space:nowrap} td.basis small{display:block;white-space:normal;color:#555;max-width:18em}
.public{color:#0b57d0} .project{color:#6b4e16} dl.run dt{font-weight:bold;float:left;clear:left;width:13em}
dl.run dd{margin-left:13.5em}
pre{background:#f8f8f8;border:1px solid #ddd;padding:.6em;overflow:auto;font-size:.85em;white-space:pre-wrap}
.summary span{display:inline-block;margin-right:1.2em;padding:.2em .6em;border-radius:.3em}
.verdict-ok,.verdict-bad{font-size:1.15em;padding:.4em .8em;border-radius:.3em}
.verdict-ok{color:#137333;background:#e6f4ea} .verdict-bad{color:#c5221f;background:#fce8e6}
td.id,td.level,td.v{white-space:nowrap} td.clause{max-width:16em} td.reason{font-size:.9em}
"""


def to_html(report: Report) -> bytes:
    e = html.escape
    counts = report.counts()
    ok = report.passed
    rows = []
    for r in report.results:
        c = r.case
        # only failures and errors have a details section to link to
        case_id = f'<a href="#{e(c.id)}">{e(c.id)}</a>' if r.verdict in (FAIL, ERROR) else e(c.id)
        short = c.citation if len(c.citation) <= 90 else c.citation[:88].rsplit(" ", 1)[0] + " …"
        advisory = " advisory" if report.advisory(r) else ""
        rows.append(
            f'<tr class="{r.verdict}{advisory}"><td class="id">{case_id}</td>'
            f'<td class="clause">{e(c.clause)}</td>'
            f"<td>{e(c.title)}</td><td class=\"level\">{'mandatory' if c.mandatory else 'optional'}</td>"
            f'<td class="basis" title="{e(c.citation)}"><b class="{e(c.basis)}">{e(c.basis)}</b>'
            f"<small>{e(short)}</small></td>"
            f'<td class="v">{e(verdict_text(report, r))}</td><td class="reason">{e(r.reason)}</td></tr>')
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
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"/><title>IGRS conformance: {e(report.target)}</title>
<style>{_CSS}</style></head><body>
<h1>IGRS conformance report — profile {e(report.profile)}</h1>
<p>Target <b>{e(report.target)}</b>, device id <code>{e(report.device_id or '?')}</code>,
location <code>{e(report.location or '?')}</code>, run at
{e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(report.started)))}.</p>
<p class="{'verdict-ok' if ok else 'verdict-bad'}"><b>{report.verdict}</b>
{e(report.error) if report.error else f'— {len(report.mandatory_failures)} mandatory failure(s)'}</p>
<dl class="run"><dt>Verdict counts</dt><dd>{e(_basis_line(report))}</dd>
<dt>Secure pipe</dt><dd>{e(report.secure_pipe or 'not probed')}</dd>
<dt>Services shared openly</dt><dd>{e(_open_line(report))} (usable without pairing, in the clear)</dd></dl>
<p class="summary"><span class="pass">{counts[PASS]} pass</span><span class="fail">{counts[FAIL]} fail</span>
<span class="error">{counts[ERROR]} error</span><span class="skip">{counts[SKIP]} skip</span>
<span class="na">{counts[NA]} not applicable</span>{_advisory_span(report)}</p>
<table><thead><tr><th>Case</th><th>Clause</th><th>Title</th><th>Level</th><th>Basis</th><th>Verdict</th><th>Reason</th>
</tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<h2>Failures and errors</h2>{''.join(details) or '<p>None.</p>'}
</body></html>
"""
    return page.encode("utf-8")


def to_text(report: Report) -> str:
    lines = [f"IGRS conformance, profile {report.profile}: {report.target} ({report.device_id or '?'})",
             f"  counts: {_basis_line(report)}",
             f"  secure pipe: {report.secure_pipe or 'not probed'}",
             f"  services shared openly: {_open_line(report)}"]
    if report.error:
        lines.append(f"  run error: {report.error}")
    for r in report.results:
        level = "M" if r.case.mandatory else "O"
        shown = "N/A" if r.verdict == NA else r.verdict.upper()
        note = " (advisory)" if report.advisory(r) and r.verdict != NA else ""
        why = f"\n        -> {r.reason}" if r.reason and r.verdict != PASS else ""
        lines.append(f"  {shown:5} {level} {r.case.id:9} {r.case.clause:18} {r.case.title} "
                     f"[{r.case.basis}]{note}{why}")
    c = report.counts()
    lines.append(f"{report.verdict}: {c[PASS]} pass, {c[FAIL]} fail, {c[ERROR]} error, {c[SKIP]} skip, "
                 f"{c[NA]} not applicable; {len(report.mandatory_failures)} mandatory failure(s)"
                 + (f" (public basis; {_advisory_count(report)} fail/error advisory)"
                    if report.basis == "public" else ""))
    return "\n".join(lines)
