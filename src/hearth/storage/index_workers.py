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
and no secret: of the environment it gets only the path, the locale, the time zone and the
temporary directory (``_ENVIRONMENT``). It returns (domain, value)
pairs, and the writer's key ring turns them into blind tokens. Bodies and entries cross in
memory, over the worker's standard input and output, between processes of the same user;
nothing is written to disk or logged. A worker that fails, dies or takes longer than
``TASK_TIMEOUT`` costs nothing but time: the batch finds that chunk's entries itself, and a new
worker starts on the next large batch (unless workers keep exiting before answering anything:
then this process stops starting them).

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
from collections.abc import Callable, Iterator, Sequence
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
    set[tuple[str, str]],
    set[tuple[str, str, str]],
    set[str],
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
        entries.keys | label_keys(resource),
        entries.refs,
        entries.patients,
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
    """A version whose index entries are not found yet: ``found`` once ``EntryFinder.found``
    has yielded it (or ``finish`` has run)."""

    seq: int
    res_type: str
    res_id: str
    ts_us: int
    body: bytes
    found: Extracted | None = None


class EntryFinder:
    """Finds the entries of the versions added to it. Every ``chunk`` added go to a worker
    as one task (if there are workers); ``found`` (or ``finish``, which consumes it) finds the
    rest in process, then collects the workers' answers a task at a time, finding in process
    any chunk whose worker failed."""

    def __init__(self, workers: IndexWorkers | None, chunk: int = CHUNK) -> None:
        self._workers = workers
        self._chunk = chunk
        self._queued: list[Unindexed] = []
        self._tasks: list[tuple[list[Unindexed], Future[list[Extracted]] | None]] = []

    def add(self, item: Unindexed) -> None:
        self._queued.append(item)
        if self._workers is not None and len(self._queued) >= self._chunk:
            chunk, self._queued = self._queued, []
            task = self._workers.submit([(i.res_type, i.body) for i in chunk])
            self._tasks.append((chunk, task))

    def found(self) -> Iterator[list[Unindexed]]:
        """The items added, a batch at a time as their entries are found: first those no worker
        took (found here, while the workers work), then each task's in the order handed out. A
        caller that writes each batch's rows as it comes overlaps that work with the tasks still
        running. Whatever is not consumed is dropped."""
        queued, self._queued = self._queued, []
        tasks, self._tasks = self._tasks, []
        for item in queued:
            item.found = extract_body(item.res_type, item.body)
        if queued:
            yield queued
        for items, task in tasks:
            found: list[Extracted] | None = None
            if task is not None and self._workers is not None:
                try:
                    found = task.result(timeout=TASK_TIMEOUT)
                except TimeoutError:
                    self._workers.timed_out()
                except Exception as exc:  # noqa: BLE001 - found in process below instead
                    self._workers.failed(exc)
            if found is None or len(found) != len(items):
                found = [extract_body(item.res_type, item.body) for item in items]
            for item, entries in zip(items, found, strict=True):
                item.found = entries
            yield items

    def finish(self) -> None:
        """Find the entries of every item added."""
        for _items in self.found():
            pass


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


#: What a worker's environment keeps of this process's: what Python and the C library need.
#: Nothing else, since secrets may sit in any variable an operator names (``*_env`` settings,
#: database passwords, cloud credentials).
_ENVIRONMENT = ("PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "SYSTEMROOT")
#: A task that takes longer than this is given up: the worker is killed and the batch finds
#: the entries itself. Sixteen resources take milliseconds; a stopped or swapping worker must
#: not hold the writers' lock for long.
TASK_TIMEOUT = 60.0
#: Workers that exited this many times in a row before answering anything are not started
#: again in this process (one that cannot import Hearth would otherwise be started at every
#: large batch).
MAX_FAILED_STARTS = 3


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _ENVIRONMENT or k.startswith("LC_")}
    # The worker imports Hearth from where this process did, whatever set its path.
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    return env


class _Worker:
    """One worker process: tasks go to its standard input in order, and a reader thread
    resolves their futures in the same order from its standard output."""

    def __init__(self, on_answer: Callable[[], None]) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - our interpreter, our module
            # -P: nothing from the current directory shadows a module.
            [sys.executable, "-P", "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_environment(),
            close_fds=True,
        )
        self.pid = self._proc.pid
        self._on_answer = on_answer
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
            except BaseException as exc:
                # A frame may be half written (a signal, a broken pipe): this worker can no
                # longer be understood. Its reader fails every pending task, this one too.
                self.kill()
                if isinstance(exc, OSError | ValueError):
                    raise WorkerFailed("exited") from None
                raise
        return future

    def kill(self) -> None:
        with self._lock:
            self.alive = False
        with contextlib.suppress(OSError):
            self._proc.kill()

    def _read(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None  # noqa: S101 - opened with PIPE
        try:
            while True:
                result = _receive(stdout)
                with self._lock:
                    future = self._pending.popleft()
                if isinstance(result, list):
                    self._on_answer()
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
        """End the worker: its input is closed (it exits at the end of its tasks) unless a
        writer is stuck on it, in which case the worker is killed."""
        with self._lock:
            self.alive = False
        if self._write_lock.acquire(timeout=1):
            try:
                if self._proc.stdin is not None:
                    with contextlib.suppress(OSError):
                        self._proc.stdin.close()
            finally:
                self._write_lock.release()
        else:
            self.kill()
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            self._proc.wait()
        self._reader.join(timeout=5)
        if self._proc.stdout is not None and not self._reader.is_alive():
            self._proc.stdout.close()


class IndexWorkers:
    """``processes`` workers, started when first asked for, taking tasks in turn."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._turn = itertools.count()
        self._unavailable = False
        #: Tasks the workers answered (tests and benchmarks read it).
        self.answered = 0
        self._failed_starts = 0

    def _answer(self) -> None:
        with self._lock:
            self.answered += 1
            self._failed_starts = 0

    @property
    def pids(self) -> list[int]:
        """The process ids of the workers running now."""
        with self._lock:
            return [w.pid for w in self._workers if w.alive]

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
        except WorkerFailed as exc:
            self.failed(exc)
            return None

    def failed(self, exc: BaseException) -> None:
        """A task failed or took too long: kill the workers that did not answer it and drop
        those that exited (the next large batch starts new ones). Only the exception's type
        is logged, never a value."""
        log.warning("index worker failed (%s); indexing in process", type(exc).__name__)
        with self._lock:
            gone = [w for w in self._workers if not w.alive]
            self._workers = [w for w in self._workers if w.alive]
            if gone and not self.answered:
                self._failed_starts += len(gone)
                if self._failed_starts >= MAX_FAILED_STARTS:
                    self._unavailable = True
                    log.warning("index workers do not start; indexing in process from now on")
        for worker in gone:
            worker.close()

    def timed_out(self) -> None:
        """A task took longer than ``TASK_TIMEOUT``: kill every worker (they answer in
        order, so the one behind it cannot be told apart) and drop them."""
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.kill()
        self.failed(TimeoutError())

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
                    self._workers.append(_Worker(self._answer))
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
