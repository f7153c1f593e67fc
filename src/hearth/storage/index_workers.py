"""Search index entries found beside the writer, in worker processes (docs/design.md,
"Index workers").

A transaction bundle or a chunk of ``hearth import`` writes dozens to hundreds of resources in
one batch. For each one, ``index_resource`` finds what the search index holds: FHIRPath over the
resource, string prefixes, trigrams, token forms, date and number buckets. That is pure Python
and about a third of the batch's CPU, and under the GIL a thread could not run it beside the
rest. So a large batch hands its versions' bodies, a chunk at a time, to a worker process and
goes on validating, sealing, MACing and auditing the writes that follow. It collects the
workers' entries before it writes the index rows.

What a worker computes is ``extract`` of the stored body: a pure function of the bytes the
batch seals, the same the batch computes in process from the same bytes. A worker holds no key
and no secret (it is started without the ``HEARTH_*`` environment). It returns (domain, value)
pairs, and the writer's key ring turns them into blind tokens. Bodies and entries cross in
memory, over the worker's standard input and output, between processes of the same user;
nothing is written to disk or logged. A worker that fails or dies costs nothing but time: the
batch finds that chunk's entries itself, and a new worker starts on the next large batch.

A worker is ``python -m hearth.storage.index_workers``, not a ``multiprocessing`` child, so it
never imports the main module of the process that started it (a script without an
``if __name__ == "__main__"`` guard would run again in every worker).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import IO, Any

from hearth.fhir import jsonbody as fhir_json
from hearth.fhir.search import index_resource
from hearth.security import care_links
from hearth.storage.access import label_keys

__all__ = [
    "CHUNK",
    "EntryFinder",
    "Extracted",
    "IndexWorkers",
    "Unindexed",
    "WorkerFailed",
    "default_processes",
    "extract",
    "extract_body",
    "shared",
]

log = logging.getLogger("hearth.index")

#: Keys (domain, value), references, patient compartment, care links: what the index holds
#: about one resource before its keys are blinded.
Extracted = tuple[
    frozenset[tuple[str, str]],
    frozenset[tuple[str, str, str]],
    frozenset[str],
    frozenset[tuple[str, str, str]],
]

#: Writes a batch gathers into one task: a task costs a trip through two pipes each way,
#: which this many resources make a few percent of the work.
CHUNK = 16

_HEADER = struct.Struct(">I")


class WorkerFailed(Exception):
    """A worker could not answer (it failed on a task, or exited); the caller computes inline."""


def extract(res_type: str, resource: dict[str, Any]) -> Extracted:
    """What the search index holds about ``resource`` before blinding (pure)."""
    entries = index_resource(resource)
    return (
        frozenset(entries.keys | label_keys(resource)),
        frozenset(entries.refs),
        frozenset(entries.patients),
        care_links(res_type, resource, entries.refs, entries.patients),
    )


def extract_body(res_type: str, body: bytes) -> Extracted:
    """``extract`` of a stored body, parsed as a stored version is opened."""
    return extract(res_type, fhir_json.loads(body))


def default_processes() -> int:
    """One worker where this process may run on two cores or more; none on one core."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return 1 if cores >= 2 else 0


@dataclass(slots=True)
class Unindexed:
    """A version whose index entries are not found yet: ``found`` once ``EntryFinder.finish``
    has run."""

    seq: int
    res_type: str
    res_id: str
    ts_us: int
    body: bytes
    found: Extracted | None = None


class EntryFinder:
    """Finds the entries of the versions added to it. Every ``CHUNK`` added go to a worker
    as one task (if there are workers); ``finish`` finds the rest in process, then collects
    the workers' answers, finding in process any chunk whose worker failed."""

    def __init__(self, workers: IndexWorkers | None) -> None:
        self._workers = workers
        self._queued: list[Unindexed] = []
        self._tasks: list[tuple[list[Unindexed], Future[list[Extracted]] | None]] = []

    def add(self, item: Unindexed) -> None:
        self._queued.append(item)
        if self._workers is not None and len(self._queued) >= CHUNK:
            chunk, self._queued = self._queued, []
            task = self._workers.submit([(i.res_type, i.body) for i in chunk])
            self._tasks.append((chunk, task))

    def finish(self) -> None:
        queued, self._queued = self._queued, []
        tasks, self._tasks = self._tasks, []
        for item in queued:
            item.found = extract_body(item.res_type, item.body)
        for items, task in tasks:
            found: list[Extracted] | None = None
            if task is not None:
                try:
                    found = task.result()
                except Exception as exc:  # noqa: BLE001 - found in process below instead
                    if self._workers is not None:
                        self._workers.failed(exc)
            if found is None or len(found) != len(items):
                found = [extract_body(item.res_type, item.body) for item in items]
            for item, entries in zip(items, found, strict=True):
                item.found = entries


# -- the framing: a 4-byte length, then a pickle ------------------------------------------------


def _send(stream: IO[bytes], value: object) -> None:
    data = pickle.dumps(value, protocol=5)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> object:
    """The next value, or ``EOFError`` when the other side closed."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EOFError
    (size,) = _HEADER.unpack(header)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError
    return pickle.loads(data)  # noqa: S301 - written by our own worker or parent


# -- the parent's side -------------------------------------------------------------------------


class _Worker:
    """One worker process: tasks go to its standard input in order, and a reader thread
    resolves their futures in the same order from its standard output."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
        # The worker imports Hearth from where this process did, whatever set its path.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._proc = subprocess.Popen(  # noqa: S603 - our interpreter, our module
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            close_fds=True,
        )
        # ``_lock`` guards ``_pending`` and ``alive`` and is never held while a pipe is written:
        # a writer blocked on a full pipe must leave the reader free to drain the worker's
        # answers, or the worker, blocked on its own full pipe, never reads again.
        # ``_write_lock`` keeps the order of the tasks on the pipe that of ``_pending``.
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._pending: deque[Future[list[Extracted]]] = deque()
        self.alive = True
        self._reader = threading.Thread(target=self._read, name="hearth-index-reader", daemon=True)
        self._reader.start()

    def submit(self, items: Sequence[tuple[str, bytes]]) -> Future[list[Extracted]]:
        future: Future[list[Extracted]] = Future()
        stdin = self._proc.stdin
        assert stdin is not None  # noqa: S101 - opened with PIPE
        with self._write_lock:
            with self._lock:
                if not self.alive:
                    raise WorkerFailed("exited")
                self._pending.append(future)
            try:
                _send(stdin, list(items))
            except (OSError, ValueError):
                # The worker is gone: its reader fails every pending task, this one too.
                with self._lock:
                    self.alive = False
                self._proc.kill()
                raise WorkerFailed("exited") from None
        return future

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None  # noqa: S101 - opened with PIPE
        try:
            while True:
                result = _receive(stdout)
                with self._lock:
                    future = self._pending.popleft()
                if isinstance(result, list):
                    future.set_result(result)
                else:
                    future.set_exception(WorkerFailed(str(result)))
        except (EOFError, OSError, pickle.UnpicklingError, IndexError):
            pass
        finally:
            with self._lock:
                self.alive = False
                pending = list(self._pending)
                self._pending.clear()
            for future in pending:
                future.set_exception(WorkerFailed("exited"))

    def close(self) -> None:
        with self._lock:
            self.alive = False
            if self._proc.stdin is not None:
                with contextlib.suppress(OSError):
                    self._proc.stdin.close()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._reader.join(timeout=5)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


class IndexWorkers:
    """``processes`` workers, started when first asked for, taking tasks in turn."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._turn = itertools.count()
        self._unavailable = False

    def start(self) -> None:
        """Start the workers now rather than at the first large batch (they import Hearth
        in the background meanwhile)."""
        self._next()

    def submit(self, items: Sequence[tuple[str, bytes]]) -> Future[list[Extracted]] | None:
        """A task finding ``extract_body`` of each (type, body) in ``items``, or None if no
        worker can take it (the caller finds the entries itself)."""
        worker = self._next()
        if worker is None:
            return None
        try:
            return worker.submit(items)
        except WorkerFailed:
            self.failed(WorkerFailed("exited"))
            return None

    def failed(self, exc: BaseException) -> None:
        """A task failed: drop the workers that exited (the next large batch starts new
        ones). Only the exception's type is logged: nothing of a resource."""
        log.warning("index worker failed (%s); indexing in process", type(exc).__name__)
        with self._lock:
            gone = [w for w in self._workers if not w.alive]
            self._workers = [w for w in self._workers if w.alive]
        for worker in gone:
            worker.close()

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()

    def _next(self) -> _Worker | None:
        if self._unavailable:
            return None
        with self._lock:
            while len(self._workers) < self.processes:
                try:
                    self._workers.append(_Worker())
                except OSError as exc:
                    log.warning("index workers unavailable (%s)", type(exc).__name__)
                    self._unavailable = True
                    return None
            return self._workers[next(self._turn) % len(self._workers)]


_shared: dict[int, IndexWorkers] = {}
_shared_lock = threading.Lock()


def shared(processes: int) -> IndexWorkers | None:
    """This process's pool of ``processes`` workers (None for 0): one per process, however
    many containers it builds, closed when the process exits."""
    if processes <= 0:
        return None
    with _shared_lock:
        workers = _shared.get(processes)
        if workers is None:
            workers = _shared[processes] = IndexWorkers(processes)
        return workers


@atexit.register
def _close_all() -> None:
    with _shared_lock:
        pools = list(_shared.values())
    for workers in pools:
        workers.close()


# -- the worker's side -------------------------------------------------------------------------


def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Answer tasks until the parent closes the pipe: a list of entries per task, or the
    name of the exception that stopped it (never its message, which could quote a value)."""
    while True:
        try:
            items = _receive(stdin)
        except EOFError:
            return
        try:
            result: object = [extract_body(t, b) for t, b in items]  # type: ignore[attr-defined]
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which recomputes
            result = type(exc).__name__
        _send(stdout, result)


def _main() -> None:
    # The protocol owns the standard output; anything else printed would corrupt it.
    protocol = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    serve(sys.stdin.buffer, protocol)


if __name__ == "__main__":
    _main()
