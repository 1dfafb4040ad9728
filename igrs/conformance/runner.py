"""The active runner: the tool acts as a test device against the device under test (DUT),
runs the catalogue's cases (``cases.py`` holds one check per case id) and records every
exchanged message as evidence.

Case verdicts: ``pass``; ``fail`` (the DUT broke the rule); ``error`` (the tool could not
carry out the case, e.g. the DUT did not answer at all where an answer was needed to go on);
``skip`` (the case was not checked: a capability of the run, a precondition on the DUT or an
earlier result is missing); ``n/a`` (the case does not apply to what the DUT declares, e.g.
the AV cases of a device without a MediaServer under ``--profile all``, or a sealed case
against a device that offers no secure pipe).

Each case rests on a ``basis`` (``public``: a cited public source; ``project``: a documented
project choice). Under ``basis="public"`` the project-basis results (and the project-choice
details of public cases, ``ProjectRuleFailed``) are *advisory*: reported, never counted.

Run verdicts (specs/conformance/README.md "Verdicts"): FAILED when a counted mandatory case
is ``fail`` or ``error`` or the target was not found; INCOMPLETE when a counted mandatory case
was not checked (``skip``), when nothing counted was checked, or when the run was interrupted;
PASSED otherwise. Only the lab narrows a run (``--profile``, ``--case``, ``--exclude``):
a case it leaves out is not in the report at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from igrs.conformance.catalogue import CaseSpec, load_cases, select
from igrs.conformance.rawnet import Exchange, GroupListener, Recorder, UnicastSocket, http_exchange
from igrs.constants import DESCRIPTION_PATH, IGRS_PORT, IPV4_GROUP
from igrs.core.discovery import Interface
from igrs.errors import IGRSError
from igrs.net import interfaces as netifaces
from igrs.wire import isdp
from igrs.wire.endpoints import parse_endpoint
from igrs.wire.httpu import Headers
from igrs.wire.ids import DeviceId

if TYPE_CHECKING:
    from igrs.wire.description import DeviceDescription

PASS, FAIL, SKIP, ERROR, NA = "pass", "fail", "skip", "error", "n/a"
VERDICTS = (PASS, FAIL, ERROR, SKIP, NA)
VERDICT_TEXT = {SKIP: "not checked", NA: "not applicable"}  # a verdict in words (reports)
BASIS_MODES = ("all", "public")  # what a run counts: every rule, or public-basis rules only
PASSED, FAILED, INCOMPLETE = "PASSED", "FAILED", "INCOMPLETE"
# What the run needs for a case's ``requires``, in words a lab can act on.
CAPABILITY_HINTS = {
    "pin": "--pin (the PIN the device shows, or - to type it)",
    "second-subnet": "--off-subnet-source ADDR",
    "lifecycle": "a harness that starts and stops the device",
}
PAIR_ERROR = "pair_error"  # ctx.facts key: why pairing with the DUT failed (peer.py sets it)
NO_SECURE_PIPE = "no_secure_pipe"  # ctx.facts key: why the DUT offers no secure pipe (the probe)
# Run after everything else, in this order: SEC-006's failed pairings count towards the DUT's
# lock-out; DISC-006 stops the DUT.
RUN_LAST = ("SEC-006", "DISC-006")


class CaseFailed(Exception):
    """The DUT broke the case's rule (verdict fail)."""


class CaseSkipped(Exception):
    """A precondition is missing (verdict skip): the case was not checked."""


class NotApplicable(CaseSkipped):
    """The case does not apply to the DUT (verdict n/a): to what it declares (a profile case
    for a service the device does not list) or to what it offers (no secure pipe, no service
    shared openly)."""


class ProjectRuleFailed(CaseFailed):
    """The DUT broke a project-choice detail of a case whose main rule is public (an IGRS
    ErrorResponse body where the public record shows a bare HTTP status): a failure, advisory
    under ``--basis public``."""


@dataclass
class Lifecycle:
    """Start/stop hooks for cases that need to restart the DUT (a test harness has them;
    a lab points the tool at a running device and these cases are skipped)."""

    start: Callable[[], Awaitable[Any]]
    stop: Callable[[], Awaitable[Any]]


@dataclass
class CaseResult:
    case: CaseSpec
    verdict: str
    reason: str = ""
    evidence: list[Exchange] = field(default_factory=list)
    duration: float = 0.0
    failed_basis: str = ""  # a fail or error: the basis of the rule broken ("public" / "project")


@dataclass
class Report:
    target: str
    profile: str
    device_id: str = ""
    location: str = ""
    started: float = field(default_factory=time.time)
    results: list[CaseResult] = field(default_factory=list)
    error: str = ""  # the target could not be resolved (or nothing could run): no case ran
    problems: list[str] = field(default_factory=list)  # run-level: a failed pairing, an interruption
    narrowed: list[str] = field(default_factory=list)  # how the lab narrowed the run (--case, --exclude)
    interrupted: bool = False
    basis: str = "all"  # "public": only public-basis rules count (the rest is advisory)
    open_services: list[str] = field(default_factory=list)  # shared openly, as SES-007 found them
    secure_pipe: str = ""  # what the probe found: offered, or why not (sealed cases n/a)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(VERDICTS, 0)
        for r in self.results:
            out[r.verdict] += 1
        return out

    def advisory(self, r: CaseResult) -> bool:
        """Under ``basis="public"``: a project-basis case, or a failure of a project-choice
        detail of a public case -- reported, never counted (neither a failure nor unchecked)."""
        return self.basis == "public" and (r.case.basis == "project" or r.failed_basis == "project")

    @property
    def advisory_failures(self) -> list[CaseResult]:
        """Fails and errors that do not count (``--basis public``)."""
        return [r for r in self.results if r.verdict in (FAIL, ERROR) and self.advisory(r)]

    @property
    def mandatory_failures(self) -> list[CaseResult]:
        return [r for r in self.results
                if r.case.mandatory and r.verdict in (FAIL, ERROR) and not self.advisory(r)]

    @property
    def unchecked(self) -> list[CaseResult]:
        """Mandatory cases that were not checked (``skip``): each withholds the verdict, unless
        it is advisory (a project-basis case under ``--basis public``)."""
        return [r for r in self.results if r.case.mandatory and r.verdict == SKIP and not self.advisory(r)]

    @property
    def checked(self) -> bool:
        """Something that counts was checked (under ``--basis public``: a public-basis case)."""
        return any(r.verdict in (PASS, FAIL) for r in self.results
                   if self.basis != "public" or r.case.basis == "public")

    @property
    def verdict(self) -> str:
        """FAILED (a mandatory failure, or no target), INCOMPLETE (a mandatory case not
        checked, nothing checked, or interrupted) or PASSED."""
        if self.error or self.mandatory_failures:
            return FAILED
        if self.unchecked or not self.checked or self.interrupted:
            return INCOMPLETE
        return PASSED

    @property
    def passed(self) -> bool:
        """Every mandatory case that applies was checked and passed."""
        return self.verdict == PASSED

    def explanation(self) -> str:
        """Why the verdict is what it is, in one line."""
        verdict = self.verdict
        if self.error:
            return self.error
        if verdict == FAILED:
            failed = self.mandatory_failures
            return f"{len(failed)} mandatory case(s) failed: {id_ranges(failed)}"
        if verdict == PASSED:
            if self.basis == "public":
                return ("every mandatory public-basis case that applies to the device was checked and "
                        "passed; project-basis results are advisory")
            return "every mandatory case that applies to the device was checked and passed"
        parts = []
        if self.unchecked:
            parts.append(f"{len(self.unchecked)} mandatory case(s) not checked: {id_ranges(self.unchecked)}")
            needs = sorted({hint for r in self.unchecked for req, hint in CAPABILITY_HINTS.items()
                            if _needs(req) in r.reason})
            if needs:
                parts.append(f"to check more, give {' and '.join(needs)}")
        if not self.checked:
            parts.append("nothing was checked")
        if self.interrupted:
            parts.append("the run was interrupted")
        return "; ".join(parts)

    def result(self, case_id: str) -> CaseResult:
        return next(r for r in self.results if r.case.id == case_id)


def id_ranges(results: list[CaseResult]) -> str:
    """Case ids, consecutive ones of an area joined: ``SEC-004..005, GRP-001..006, GRP-008``."""
    runs: list[list[str]] = []
    for r in sorted(results, key=lambda r: r.case.id):
        area, _, num = r.case.id.rpartition("-")
        if runs:
            last_area, _, last_num = runs[-1][-1].rpartition("-")
            if last_area == area and num.isdigit() and last_num.isdigit() and int(num) == int(last_num) + 1:
                runs[-1].append(r.case.id)
                continue
        runs.append([r.case.id])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}..{run[-1].rpartition('-')[2]}" for run in runs)


class RunListener:
    """Told as the run goes (the CLI prints each verdict as it finishes); no-ops here."""

    def found(self, report: Report) -> None:
        """The target answered: ``report.device_id`` and ``location`` are known."""

    def result(self, report: Report, result: CaseResult) -> None:
        """A case finished."""

    def problem(self, report: Report, text: str) -> None:
        """A run-level problem (``report.problems``): a failed pairing, an interruption."""


@dataclass
class Context:
    """What the cases share: the interface, the DUT's addresses and what earlier cases learnt."""

    iface: Interface
    isdp_port: int
    rec: Recorder
    searcher_id: DeviceId
    device_id: DeviceId | None = None
    location: str = ""
    host: str = ""
    port: int = 0
    lifecycle: Lifecycle | None = None
    pin: str | Callable[[int], Awaitable[str]] | None = None
    listener: GroupListener | None = None
    capabilities: set[str] = field(default_factory=set)
    facts: dict[str, Any] = field(default_factory=dict)
    group: str = IPV4_GROUP
    off_subnet_source: str = ""  # an address of this host outside the DUT's subnet (DISC-008)
    profile: str = "core"  # what the run was asked for (AV-001/FILE-001 only require a profile named)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)  # run after the last case

    @property
    def group_addr(self) -> tuple[str, int]:
        return (self.group, self.isdp_port)


CaseFn = Callable[[Context], Awaitable[None]]
CHECKS: dict[str, CaseFn] = {}


def check(case_id: str) -> Callable[[CaseFn], CaseFn]:
    def deco(fn: CaseFn) -> CaseFn:
        CHECKS[case_id] = fn
        return fn
    return deco


def load_checks() -> dict[str, CaseFn]:
    """Import every ``igrs/conformance/cases*.py`` module: each registers its checks."""
    import importlib
    import pkgutil
    from pathlib import Path

    for mod in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if mod.name.startswith("cases"):
            importlib.import_module(f"igrs.conformance.{mod.name}")
    return CHECKS


def _decoded(data: bytes) -> Any:
    try:
        return isdp.decode(data)
    except Exception as exc:
        return exc


async def search_once(ctx: Context, st: str, mx: int, wait: float,
                      until: Callable[[Any], bool] | None = None,
                      source: str = "") -> tuple[float, list[Any]]:
    """Send one M-SEARCH from a fresh unicast socket (bound to ``source``, an address on the
    test interface, if given); return (sent time, [(Datagram, decoded|exc)])."""
    iface = dataclasses.replace(ctx.iface, address=source) if source else ctx.iface
    sock = UnicastSocket(iface, ctx.rec)
    try:
        req = isdp.SearchDeviceRequest(isdp.SearchTarget.parse(st), mx, ctx.searcher_id)
        sent = await sock.send(isdp.encode(req, host=f"{ctx.group}:{ctx.isdp_port}"), ctx.group_addr,
                               note=f"search {st} MX {mx} from {sock.address[0]}:{sock.address[1]}")
        got = await sock.collect(wait, until=(lambda data: until(_decoded(data))) if until else None)
    finally:
        sock.close()
    return sent, [(dg, _decoded(dg.data)) for dg in got]  # a decode failure is a finding


async def _resolve(ctx: Context, target: str) -> None:
    """Find the DUT: ``host:port`` of its HTTP endpoint or its LOCATION URL, or a device id /
    UUID prefix / name."""
    from igrs.wire import description as ddesc

    endpoint = parse_endpoint(target)  # host:port or LOCATION URL: igrs.wire.endpoints, as the CLI
    if endpoint is not None:
        ctx.host, ctx.port, ctx.location = endpoint.host, endpoint.port, endpoint.location
        res = await http_exchange(ctx.host, ctx.port, _get(DESCRIPTION_PATH, ctx), ctx.rec)
        if res.status == 200:
            ctx.device_id = ddesc.from_bytes(res.body).device_id
            return
        # GET of the document is this project's addition (messages.md §7); a peer that takes
        # M-POST only (ezbox) is asked by the message of clause 9.3, naming no target.
        described = await _post_description_request(ctx)
        if described is None:
            raise LookupError(f"GET {DESCRIPTION_PATH} at {target} answered {res.status}, "
                              "and GetDeviceDescriptionRequest gave no description")
        ctx.device_id = described.device_id
        return
    wanted = target.lower()

    def matches(msg: object) -> bool:
        if not isinstance(msg, isdp.SearchDeviceResponse | isdp.DeviceOnlineAdvertisement):
            return False
        did = str(msg.device_id).lower()
        uuid = did.rsplit(":", 1)[-1]
        return wanted in (did, msg.name.lower()) or (len(wanted) >= 4 and uuid.startswith(wanted))

    def adopt(msg: isdp.SearchDeviceResponse | isdp.DeviceOnlineAdvertisement, source: str) -> None:
        from urllib.parse import urlsplit

        ctx.device_id, ctx.location = msg.device_id, msg.location
        ctx.facts["advertised_location"] = msg.location
        parts = urlsplit(msg.location)
        ctx.host, ctx.port = parts.hostname or source, parts.port or IGRS_PORT

    # A search first; announcements heard meanwhile count too (a device that answers
    # searches late or not at all is still found, and its cases then fail).
    _, answers = await search_once(ctx, "isdp:all", 1, 2.0, until=lambda m: matches(m))
    for dg, msg in answers:
        if matches(msg):
            adopt(msg, dg.source[0])
            return
    assert ctx.listener is not None
    for dg in reversed(ctx.listener.heard):
        try:
            msg = isdp.decode(dg.data)
        except Exception:
            continue
        if matches(msg):
            adopt(msg, dg.source[0])  # type: ignore[arg-type]
            return
    raise LookupError(f"no device matching {target!r} answered a search on {ctx.iface.name}")


def _get(path: str, ctx: Context) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {ctx.host}:{ctx.port}\r\nConnection: close\r\n\r\n".encode()


async def _post_description_request(ctx: Context) -> DeviceDescription | None:
    """The description a GetDeviceDescriptionRequest (no target named) answers, or None."""
    from igrs.wire import messages

    headers, body = messages.encode(messages.GetDeviceDescriptionRequest(), source=ctx.searcher_id,
                                    target=None, sequence_id=1)
    data = messages.build_request(f"{ctx.host}:{ctx.port}", [*headers, ("Connection", "close")], body)
    try:
        res = await http_exchange(ctx.host, ctx.port, data, ctx.rec, note="the description by M-POST")
        reply = messages.decode(Headers(res.headers), res.body).message
    except (OSError, TimeoutError, ValueError, IGRSError):
        return None
    if not isinstance(reply, messages.GetDeviceDescriptionResponse):
        return None
    return reply.description


async def _probe_secure_pipe(ctx: Context) -> str:
    """Whether the DUT offers secure pipes: a secure CreatePipeRequest from a fresh, unpaired
    identity. A device with pipes refuses it with an IGRS answer (403: not paired); one without
    answers 501, or a bare HTTP status with no IGRS message (ezbox). Returns "" when offered
    (or when the answer says nothing either way), else why not; sealed cases are then n/a."""
    from igrs.core.security import LocalIdentity, PipeInitiator
    from igrs.wire import messages
    from igrs.wire.bodies import pipes as pb

    assert ctx.device_id is not None
    pretend = LocalIdentity.generate(ctx.device_id).public_key  # our side goes ahead; the DUT knows us not
    init = PipeInitiator(LocalIdentity.generate(ctx.searcher_id), ctx.device_id, peers=lambda _d: pretend,
                         secure=True)
    headers, body = messages.encode(pb.CreatePipeRequest(True, init.create_pipe_request()),
                                    source=ctx.searcher_id, target=ctx.device_id, sequence_id=1)
    data = messages.build_request(f"{ctx.host}:{ctx.port}", [*headers, ("Connection", "close")], body)
    try:
        res = await http_exchange(ctx.host, ctx.port, data, ctx.rec, note="probe: does it offer secure pipes?")
    except (OSError, TimeoutError, ValueError):
        return ""
    if res.status == 501:
        return "CreatePipeRequest answered 501 Not Implemented"
    try:
        messages.decode(Headers(res.headers), res.body)
    except IGRSError:
        if res.status != 200:
            return f"CreatePipeRequest answered HTTP {res.status} without an IGRS message"
    return ""


def choose(specs: list[CaseSpec], only: list[str] | None = None,
           exclude: list[str] | None = None) -> list[CaseSpec]:
    """The lab's narrowing: ``only`` and ``exclude`` name case ids (``GRP-004``) or areas
    (``GRP``). A name that matches no case of ``specs`` is a ``ValueError`` (a typo must not
    quietly shrink a run)."""

    def hit(case: CaseSpec, name: str) -> bool:
        return case.id.upper() == name.upper() or case.id.split("-")[0].upper() == name.upper()

    for name in (*(only or ()), *(exclude or ())):
        if not any(hit(c, name) for c in specs):
            raise ValueError(f"no case {name!r} in this profile (igrs conformance cases lists them)")
    if only:
        specs = [c for c in specs if any(hit(c, n) for n in only)]
    return [c for c in specs if not any(hit(c, n) for n in exclude or ())]


async def run_suite(target: str, profile: str = "core",
                    pin: str | Callable[[int], Awaitable[str]] | None = None,
                    interfaces: list[str] | None = None, port: int = IGRS_PORT, *,
                    lifecycle: Lifecycle | None = None, only: list[str] | None = None,
                    exclude: list[str] | None = None,
                    case_timeout: float = 20.0, off_subnet_source: str | None = None,
                    listener: RunListener | None = None, stop: asyncio.Event | None = None,
                    basis: str = "all") -> Report:
    """Run the catalogue's cases of ``profile`` (narrowed by ``only`` / ``exclude``: case ids or
    areas) against ``target``; never raises for a DUT fault. ``listener`` hears each verdict as
    it comes; setting ``stop`` ends the run early with a partial report (``interrupted``).
    ``basis="public"``: only public-basis rules count; project-basis results are advisory."""
    if basis not in BASIS_MODES:
        raise ValueError(f"basis must be one of {', '.join(BASIS_MODES)}, not {basis!r}")
    load_checks()
    specs = choose(select(load_cases(), profile), only, exclude)
    report = Report(target, profile, basis=basis)
    report.narrowed = [*(f"--case {n}" for n in only or ()), *(f"--exclude {n}" for n in exclude or ())]
    listener = listener or RunListener()
    ifaces = [i for i in netifaces.resolve(interfaces) if i.family == 4]
    if not ifaces:
        report.error = "no IPv4 interface to test on"
        return report
    ctx = Context(ifaces[0], port, Recorder(), DeviceId.new(), lifecycle=lifecycle, pin=pin, profile=profile)
    if lifecycle is not None:
        ctx.capabilities.add("lifecycle")
    if pin is not None:
        ctx.capabilities.add("pin")
    if off_subnet_source:
        ctx.off_subnet_source = off_subnet_source
        ctx.capabilities.add("second-subnet")
    ctx.listener = GroupListener(ctx.iface, ctx.group, port)
    ctx.listener.start()
    try:
        if lifecycle is not None:  # DISC-001 must see the start: the DUT is started by us
            ctx.facts["started_at"] = time.monotonic()
            await lifecycle.start()
            await asyncio.sleep(0.2)
        try:
            await _resolve(ctx, target)
        except Exception as exc:
            report.error = f"target not found: {exc}"  # one error; no case could run
            return report
        ctx.rec.take()
        report.device_id, report.location = str(ctx.device_id), ctx.location
        if any(c.sealed for c in specs):
            no_pipe = await _probe_secure_pipe(ctx)
            ctx.rec.take()
            report.secure_pipe = f"not offered: {no_pipe}" if no_pipe else "offered"
            if no_pipe:
                ctx.facts[NO_SECURE_PIPE] = no_pipe
        listener.found(report)
        ordered = sorted(specs, key=lambda c: RUN_LAST.index(c.id) if c.id in RUN_LAST else -1)
        for case in ordered:
            if stop is not None and stop.is_set():  # listed in the report, not told one by one
                report.results.append(CaseResult(case, SKIP, "not run: the run was interrupted"))
                continue
            result = await _run_case(ctx, case, case_timeout, stop)
            report.results.append(result)
            listener.result(report, result)
            for text in _new_problems(ctx, report, ordered, stop):
                report.problems.append(text)
                listener.problem(report, text)
        report.results.sort(key=lambda r: specs.index(r.case))
        report.open_services = list(ctx.facts.get("open_services", []))
    finally:
        for close in reversed(ctx.closers):
            await close()
        await ctx.listener.close()
    return report


def _new_problems(ctx: Context, report: Report, ordered: list[CaseSpec],
                  stop: asyncio.Event | None) -> list[str]:
    """Run-level problems that appeared with the last case (each reported once)."""
    out = []
    if PAIR_ERROR in ctx.facts and not ctx.facts.get("pair_error_reported"):
        ctx.facts["pair_error_reported"] = True
        left = sum(1 for c in ordered[len(report.results):] if "pin" in c.requires)
        out.append(f"pairing with the device failed ({ctx.facts[PAIR_ERROR]}): the {left} remaining case(s) "
                   "that need the secure pipe are not run (check the PIN; a device locks pairing after "
                   "repeated failures)")
    if stop is not None and stop.is_set() and not report.interrupted:
        report.interrupted = True
        out.append(f"interrupted at case {len(report.results)} of {len(ordered)}: the report is partial")
    return out


def _needs(requirement: str) -> str:
    return f"needs {CAPABILITY_HINTS.get(requirement, requirement)}"


async def _run_case(ctx: Context, case: CaseSpec, timeout: float, stop: asyncio.Event | None) -> CaseResult:
    t0 = time.monotonic()
    if case.sealed and NO_SECURE_PIPE in ctx.facts:
        return CaseResult(case, NA, f"no secure pipe offered ({ctx.facts[NO_SECURE_PIPE]})")
    missing = [r for r in case.requires if r not in ctx.capabilities]
    if missing:
        return CaseResult(case, SKIP, "; ".join(_needs(r) for r in missing))
    if "pin" in case.requires and PAIR_ERROR in ctx.facts:
        return CaseResult(case, SKIP, f"not run: pairing failed ({ctx.facts[PAIR_ERROR]})")
    fn = CHECKS.get(case.id)
    if fn is None:
        return CaseResult(case, SKIP, "no check implemented for this case yet")
    failed_basis = ""
    try:
        await _until_stopped(asyncio.wait_for(fn(ctx), timeout), stop)
        verdict, reason = PASS, ""
    except _Stopped:
        verdict, reason = SKIP, "not finished: the run was interrupted"
    except NotApplicable as exc:
        verdict, reason = NA, str(exc)
    except ProjectRuleFailed as exc:
        verdict, reason, failed_basis = FAIL, f"{exc} [a project-choice detail]", "project"
    except CaseFailed as exc:
        verdict, reason, failed_basis = FAIL, str(exc), case.basis
    except CaseSkipped as exc:
        verdict, reason = SKIP, str(exc)
    except TimeoutError:
        verdict, reason, failed_basis = ERROR, f"case did not finish within {timeout:.0f} s", case.basis
    except Exception as exc:
        verdict, reason, failed_basis = ERROR, f"{type(exc).__name__}: {exc}", case.basis
    return CaseResult(case, verdict, reason, ctx.rec.take(), time.monotonic() - t0, failed_basis)


class _Stopped(Exception):
    """``stop`` was set while a case ran."""


async def _until_stopped(work: Awaitable[None], stop: asyncio.Event | None) -> None:
    """Await ``work``; if ``stop`` is set first, cancel it and raise ``_Stopped``."""
    task = asyncio.ensure_future(work)
    if stop is None:
        return await task
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the run itself is cancelled: so is the case
        task.cancel()
        raise
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise _Stopped
    return task.result()
