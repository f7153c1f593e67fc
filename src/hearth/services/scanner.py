"""The integrity scanner (HIPAA 164.312(c)(1)(2)): ``hearth integrity scan`` and the background
scanner of ``hearth serve`` (docs/design.md, "Integrity scanner").

Each run ("tick") does bounded work:

1. **Incremental**: the versions written since the last run (a cursor on the gap-free ``seq``),
   and the audit entries since the last verified signed checkpoint.
2. **Rolling full pass**: a second cursor walks every stored version again, paced so that the
   whole database is re-checked within ``full_pass_days``, this time also recomputing the search
   index rows of each current version; a third walks the audit chain. When a pass reaches the
   end, the whole-table checks run (every current pointer; the anchor and the accounting of
   versions against audited writes) and the pass starts over.

Findings are stored (``integrity_finding``), one open row per damaged thing; only a *new* one
raises an alarm, so a damaged record alarms once, not once per tick. A finding that a later check
finds healthy is closed as cleared. Every run is audited (``integrity.scan``). Of several
processes serving one instance, one scans at a time (a lease row).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hearth.domain import (
    Alarm,
    AlarmKind,
    AlarmRaiser,
    Clock,
    HearthError,
    Outcome,
    Severity,
    errors,
)
from hearth.services.progress import NullProgress, Progress
from hearth.settings import IntegritySettings
from hearth.storage import SystemRepository, to_us
from hearth.storage.scan import (
    AuditSpan,
    ScanFinding,
    ScanKind,
    ScanRepository,
    SliceResult,
    StoredFinding,
)

__all__ = [
    "IntegrityScanner",
    "ScanFinding",
    "ScanKind",
    "ScanReport",
    "ScannerThread",
    "StoredFinding",
    "finding_fields",
]

log = logging.getLogger("hearth.integrity")

#: Versions read per statement: large enough that per-batch costs vanish, small enough that a
#: batch's rows and bodies stay a few megabytes.
BATCH = 5000
#: The rolling pass checks at least this many versions per run, so that it makes steady
#: progress on a small database even where the pacing alone would ask for less.
ROLLING_MIN = 500

#: The end of the ``seq`` range past the counter that each run checks for foreign rows.
_BEYOND = 2**62
_INC = "inc.seq"
_ROLL = "roll.seq"
_ROLL_STARTED = "roll.started_us"
_ROLL_DONE = "roll.completed_us"
_ROLL_PASSES = "roll.passes"
_AUDIT = "audit.seq"
_AUDIT_ROLL = "audit_roll.seq"
_AUDIT_ROLL_STARTED = "audit_roll.started_us"
_AUDIT_ROLL_DONE = "audit_roll.completed_us"


@dataclass(slots=True)
class ScanReport:
    """What one run checked and found."""

    full: bool
    versions_read: int = 0
    audit_entries: int = 0
    seconds: float = 0.0
    #: Everything this run found (new or already open).
    findings: list[ScanFinding] = field(default_factory=list)
    #: Findings no earlier run had found (each raised an alarm).
    new: list[ScanFinding] = field(default_factory=list)
    #: Every finding still open after this run, found by it or earlier.
    open: list[StoredFinding] = field(default_factory=list)
    #: A rolling (or the full) pass over the versions completed in this run.
    pass_completed: bool = False
    cursors: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.findings and not self.open

    @property
    def rate(self) -> float:
        """Versions checked per second of the run's wall time."""
        return self.versions_read / self.seconds if self.seconds > 0 else 0.0


@dataclass(slots=True)
class _Run:
    """Bookkeeping of one run: what was checked, so that stale findings can be cleared."""

    findings: list[ScanFinding] = field(default_factory=list)
    version_ranges: list[tuple[int, int]] = field(default_factory=list)
    resource_keys: set[str] = field(default_factory=set)
    audit_ranges: list[tuple[int, int]] = field(default_factory=list)
    clear_kinds: set[ScanKind] = field(default_factory=set)
    read: int = 0
    entries: int = 0

    def add_slice(self, part: SliceResult) -> None:
        self.findings += part.findings
        self.read += part.read
        if part.last_seq > part.after_seq:
            self.version_ranges.append((part.after_seq, part.last_seq))
        self.resource_keys |= part.checked_keys()

    def add_span(self, span: AuditSpan) -> None:
        self.findings += span.findings
        self.entries += span.entries
        if span.last_seq > span.after_seq:
            self.audit_ranges.append((span.after_seq, span.last_seq))


class IntegrityScanner:
    """Runs scans over a system repository (one is made per run, so keys are fresh)."""

    def __init__(
        self,
        system: Callable[[], SystemRepository],
        *,
        clock: Clock,
        settings: IntegritySettings,
        alarms: AlarmRaiser | None = None,
        holder: int = 0,
        batch: int = BATCH,
        timer: Callable[[], float] = time.perf_counter,
        pause: Callable[[float], bool] | None = None,
    ) -> None:
        """``timer`` measures how long a run and each batch took; ``pause(seconds)`` waits
        between a background run's batches, returning True when the scanner is to stop (by
        default the stop event's own wait, so shutdown ends a pause at once)."""
        self._system = system
        self._clock = clock
        self._settings = settings
        self._alarms = alarms
        self._holder = holder
        self._batch = batch
        self._stop = threading.Event()
        self._timer = timer
        self._pause = pause if pause is not None else self._stop.wait

    @property
    def settings(self) -> IntegritySettings:
        return self._settings

    def stop_soon(self) -> None:
        """Ask a running scan to stop at its next batch boundary (shutdown)."""
        self._stop.set()

    # -- one run ------------------------------------------------------------------------------
    def _paced(self, began: float, until: float) -> bool:
        """After a background run's batch that began at ``began`` (``timer``): wait so that
        checking takes at most ``busy_share`` of the run's time, but never past ``until``. The
        scanner runs in the server's process, so a run catching up with a large load would
        otherwise take the server's time from its requests for as long as it lasts. True when
        the scanner is to stop (a pause that ends so stops the rest of the run too)."""
        share = self._settings.busy_share
        if share < 1:
            now = self._timer()
            wait = min(max(0.0, now - began) * (1 - share) / share, until - now)
            if wait > 0 and self._pause(wait):
                self._stop.set()
        return self._stop.is_set()

    def _lease_seconds(self) -> float:
        return max(300.0, 3 * self._settings.scan_interval_seconds)

    def tick(self) -> ScanReport | None:
        """One background run: incremental, then a paced slice of the rolling pass. None if
        another process holds the scanner's lease."""
        return self._locked(self._tick)

    def scan(
        self, *, full: bool = False, progress: Progress | None = None, wait_seconds: float = 60
    ) -> ScanReport:
        """``hearth integrity scan``: incremental (new versions and audit entries), or with
        ``full`` everything now, including every index row and the whole audit trail. Waits
        up to ``wait_seconds`` for a run in another process to finish (``SCAN_BUSY``)."""
        deadline = time.monotonic() + wait_seconds
        while True:
            report = self._locked(
                lambda system, scan: self._scan(system, scan, full, progress or NullProgress())
            )
            if report is not None:
                return report
            if time.monotonic() > deadline:
                raise HearthError(errors.SCAN_BUSY)
            time.sleep(0.5)

    def _locked(
        self, run: Callable[[SystemRepository, ScanRepository], ScanReport]
    ) -> ScanReport | None:
        system = self._system()
        scan = system.scanning()
        now_us = to_us(self._clock.now())
        lease_us = int(self._lease_seconds() * 1_000_000)
        if not scan.take_lease(now_us=now_us, until_us=now_us + lease_us, holder=self._holder):
            return None
        try:
            return run(system, scan)
        finally:
            try:
                scan.release_lease(holder=self._holder)
            except HearthError:
                log.warning("could not release the integrity scanner's lease")

    def _tick(self, system: SystemRepository, scan: ScanRepository) -> ScanReport:
        started = self._timer()
        # Pauses stretch a run; past half its lease it goes on without them, as runs did before
        # they paused, so that pauses never let another process take the lease from it.
        pace_until = started + self._lease_seconds() / 2
        now_us = to_us(self._clock.now())
        state = scan.state()
        high = scan.high_seq()
        budget = self._settings.max_versions_per_tick
        run = _Run()
        cursors: dict[str, int] = {}
        report = ScanReport(full=False)

        # 1. Versions written since the last run.
        inc = min(state.get(_INC, 0), high)
        while inc < high and run.read < budget and not self._stop.is_set():
            began = self._timer()
            part = scan.check_slice(
                after_seq=inc, upto_seq=high, limit=min(self._batch, budget - run.read)
            )
            run.add_slice(part)
            inc = part.last_seq
            if self._paced(began, pace_until):
                break
        cursors[_INC] = inc
        run.findings += scan.beyond_counter()
        run.version_ranges.append((high, _BEYOND))

        # 2. The rolling pass over every version, paced to finish within full_pass_days.
        period_us = int(self._settings.full_pass_days * 86_400 * 1_000_000)
        roll = min(state.get(_ROLL, 0), high)
        roll_started = state.get(_ROLL_STARTED) or now_us
        elapsed = max(0, now_us - roll_started)
        target = min(high, math.ceil(high * min(1.0, elapsed / period_us)))
        want = min(max(target - roll, ROLLING_MIN), max(0, budget - run.read))
        done = 0
        while roll < high and done < want and not self._stop.is_set():
            began = self._timer()
            part = scan.check_slice(
                after_seq=roll, upto_seq=high, limit=min(self._batch, want - done), index=True
            )
            run.add_slice(part)
            done += part.read
            roll = part.last_seq
            if part.read == 0 or self._paced(began, pace_until):
                break
        if roll >= high and not self._stop.is_set():
            run.findings += scan.check_all_pointers()
            run.clear_kinds.add(ScanKind.POINTER)
            report.pass_completed = True
            cursors |= {
                _ROLL: 0,
                _ROLL_STARTED: now_us,
                _ROLL_DONE: now_us,
                _ROLL_PASSES: state.get(_ROLL_PASSES, 0) + 1,
            }
        else:
            cursors |= {_ROLL: roll, _ROLL_STARTED: roll_started}

        # 3. The audit chain: entries since the last verified checkpoint, then a paced slice
        #    of the rolling pass over the whole chain.
        audit = state.get(_AUDIT, 0)
        while not self._stop.is_set():
            began = self._timer()
            # Spans of the size ``hearth integrity scan`` reads, so that pauses come between them.
            span = scan.audit_span(after_seq=audit, limit=min(budget, self._batch * 10))
            run.add_span(span)
            audit = span.last_seq
            if span.reached_head or span.entries == 0 or self._paced(began, pace_until):
                break
        cursors[_AUDIT] = audit
        cursors |= self._audit_rolling(scan, state, run, now_us, period_us, budget)

        report.versions_read = run.read
        report.audit_entries = run.entries
        report.cursors = cursors
        return self._finish(system, scan, run, report, cursors, now_us, started)

    def _audit_rolling(
        self,
        scan: ScanRepository,
        state: dict[str, int],
        run: _Run,
        now_us: int,
        period_us: int,
        budget: int,
    ) -> dict[str, int]:
        at = state.get(_AUDIT_ROLL, 0)
        started = state.get(_AUDIT_ROLL_STARTED) or now_us
        span = scan.audit_span(after_seq=at, limit=0)  # one checkpoint interval
        elapsed = max(0, now_us - started)
        target = math.ceil(span.head_seq * min(1.0, elapsed / period_us))
        run.add_span(span)
        at = span.last_seq
        while not span.reached_head and at < target and run.entries < budget:
            span = scan.audit_span(after_seq=at, limit=0)
            run.add_span(span)
            at = span.last_seq
        if span.reached_head:
            run.findings += scan.audit_whole()
            run.clear_kinds.add(ScanKind.TRAIL)
            return {_AUDIT_ROLL: 0, _AUDIT_ROLL_STARTED: now_us, _AUDIT_ROLL_DONE: now_us}
        return {_AUDIT_ROLL: at, _AUDIT_ROLL_STARTED: started}

    def _scan(
        self,
        system: SystemRepository,
        scan: ScanRepository,
        full: bool,
        progress: Progress,
    ) -> ScanReport:
        started = self._timer()
        now_us = to_us(self._clock.now())
        state = scan.state()
        high = scan.high_seq()
        run = _Run()
        cursors: dict[str, int] = {}
        report = ScanReport(full=full)
        at = 0 if full else min(state.get(_INC, 0), high)
        progress.start("resource versions", high - at)
        while at < high:
            part = scan.check_slice(after_seq=at, upto_seq=high, limit=self._batch, index=full)
            run.add_slice(part)
            progress.advance(part.last_seq - at)
            at = part.last_seq
        progress.finish()
        cursors[_INC] = at
        run.findings += scan.beyond_counter()
        run.version_ranges.append((high, _BEYOND))
        audit = 0 if full else state.get(_AUDIT, 0)
        progress.start("audit chain", None)
        while True:
            span = scan.audit_span(after_seq=audit, limit=self._batch * 10)
            run.add_span(span)
            progress.advance(span.entries)
            audit = span.last_seq
            if span.reached_head or span.entries == 0:
                break
        progress.finish()
        cursors[_AUDIT] = audit
        if full:
            run.findings += scan.check_all_pointers()
            run.findings += scan.audit_whole()
            run.clear_kinds |= set(ScanKind)
            report.pass_completed = True
            cursors |= {
                _ROLL: 0,
                _ROLL_STARTED: now_us,
                _ROLL_DONE: now_us,
                _ROLL_PASSES: state.get(_ROLL_PASSES, 0) + 1,
                _AUDIT_ROLL: 0,
                _AUDIT_ROLL_STARTED: now_us,
                _AUDIT_ROLL_DONE: now_us,
            }
        report.versions_read = run.read
        report.audit_entries = run.entries
        report.cursors = cursors
        return self._finish(system, scan, run, report, cursors, now_us, started)

    def _finish(
        self,
        system: SystemRepository,
        scan: ScanRepository,
        run: _Run,
        report: ScanReport,
        cursors: dict[str, int],
        now_us: int,
        started: float,
    ) -> ScanReport:
        report.findings = _unique(run.findings)
        report.new = scan.record_findings(
            report.findings,
            now_us=now_us,
            by=system.actor,
            clear_ranges=run.version_ranges,
            clear_keys=run.resource_keys,
            clear_audit=run.audit_ranges,
            clear_kinds=run.clear_kinds,
        )
        scan.set_state(cursors)
        self._alarm(report.new)
        report.open = scan.findings()
        report.seconds = self._timer() - started
        try:
            system.record("integrity.scan", Outcome.ERROR if report.findings else Outcome.SUCCESS)
        except HearthError:
            log.error("could not audit integrity.scan: the audit chain refused the entry")
        if report.new:
            log.error("integrity scan: %d new findings", len(report.new))
        return report

    def _alarm(self, new: Sequence[ScanFinding]) -> None:
        """One alarm per record (subject) and kind for the new findings of a run: a record
        whose version and pointer are both damaged alarms once, naming the first finding and
        counting the others."""
        if self._alarms is None or not new:
            return
        grouped: dict[tuple[AlarmKind, str], list[ScanFinding]] = {}
        for finding in new:
            audit = finding.kind in (ScanKind.AUDIT, ScanKind.TRAIL)
            kind = AlarmKind.AUDIT_CHAIN_BROKEN if audit else AlarmKind.INTEGRITY_MISMATCH
            grouped.setdefault((kind, finding.subject), []).append(finding)
        for (kind, subject), findings in grouped.items():
            first = findings[0]
            details = {"finding": first.kind.value, "seq": str(first.seq)}
            if first.version is not None:
                details["version"] = str(first.version)
            if first.detail:
                details["chain"] = first.detail
            summary = str(first)
            if len(findings) > 1:
                details["findings"] = str(len(findings))
                summary += f" (and {len(findings) - 1} more; `hearth integrity scan` lists them)"
            self._alarms.raise_alarm(Alarm(kind, Severity.CRITICAL, subject, summary, details))


def finding_fields(f: ScanFinding) -> dict[str, object]:
    """A finding as JSON fields (``--json`` output): it names rows, never content."""
    return {
        "kind": f.kind.value,
        "seq": f.seq,
        "type": f.res_type,
        "id": f.res_id,
        "version": f.version,
        "problem": f"{f.detail}: {f.problem}" if f.detail else f.problem,
    }


def _unique(findings: Sequence[ScanFinding]) -> list[ScanFinding]:
    seen: dict[str, ScanFinding] = {}
    for f in findings:
        seen.setdefault(f.key, f)
    return list(seen.values())


class ScannerThread:
    """The background scanner of ``hearth serve``: a tick every ``scan_interval_seconds``
    (the first one interval after start), on a daemon thread the app's lifespan starts and
    stops. A tick that fails is logged and retried at the next interval."""

    def __init__(self, scanner: IntegrityScanner) -> None:
        self._scanner = scanner
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.ticks = 0
        self.last: ScanReport | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="hearth-scanner", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self._scanner.settings.scan_interval_seconds
        while not self._wake.wait(interval):
            try:
                report = self._scanner.tick()
            except Exception as exc:  # noqa: BLE001 - the scanner must outlive one bad run
                # The type only: a database error's text can carry the row values it bound.
                log.error(
                    "integrity scanner run failed (%s); retrying at the next interval",
                    type(exc).__name__,
                )
                continue
            if self._stopping:
                return
            self.ticks += 1
            if report is not None:
                self.last = report

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the current batch; waits for the thread up to ``timeout`` seconds."""
        self._stopping = True
        self._scanner.stop_soon()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
