"""Group commit for single writes: concurrent creates, updates, patches and deletes share one
transaction, one signed audit head and one commit (docs/design.md, "Group commit for writes").

Each write is still decided, sealed, MACed and audited as its own; what the writes of a group
share is the transaction that makes them durable together. A caller's thread queues its write
and waits; the first caller to find no group running becomes the leader: it runs everything
queued (up to ``max_group``) as one group, answers each member, and leads again while its own
write is still queued. What a failure costs the other members is ``run``'s to decide
(``hearth.storage.repository.run_write_group``).

The leader runs each member's write in the member's own ``contextvars`` context, as if in its
own thread. Nothing here knows what a write is: ``run`` is handed the members and must finish
every one of them.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["GroupMember", "WriteGroups"]

T = TypeVar("T")
W = TypeVar("W")


class GroupMember(Generic[W]):
    """One queued write: ``work`` as its caller handed it, and its outcome once finished."""

    __slots__ = ("after", "context", "done", "error", "result", "wake", "work")

    def __init__(self, work: W) -> None:
        self.work = work
        self.context = contextvars.copy_context()
        self.done = False
        self.result: Any = None
        self.error: BaseException | None = None
        self.after: Callable[[], None] | None = None
        #: Set when the member is answered, or when its caller is to lead the next group.
        self.wake = threading.Event()

    def finish(
        self,
        result: Any = None,
        error: BaseException | None = None,
        *,
        after: Callable[[], None] | None = None,
    ) -> None:
        """Answer the member. ``after`` runs in the caller's own thread before it returns
        (audit entries of a refused write, written once the group's transaction has ended)."""
        self.result = result
        self.error = error
        self.after = after
        self.done = True

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Call ``fn`` in the caller's context (its context variables, not the leader's)."""
        return self.context.run(fn, *args)


class WriteGroups(Generic[W]):
    """Leader/follower group commit: callers queue; one of them runs the queue in groups.

    Each waiting caller sleeps on its own event and is woken once: when its write is answered,
    or when the leader before it hands over the queue."""

    def __init__(self, run: Callable[[list[GroupMember[W]]], None], *, max_group: int = 64) -> None:
        self._run = run
        self._max = max_group
        self._lock = threading.Lock()
        self._queue: list[GroupMember[W]] = []
        self._leading = False
        self._local = threading.local()

    def submit(self, work: W) -> Any:
        """Queue ``work``, wait until a group with it has run, and return its result (or raise
        its error)."""
        if getattr(self._local, "running", False):
            # A write made while a group runs on this thread would wait on the group itself.
            raise RuntimeError("a write group cannot submit to itself")
        member = GroupMember(work)
        with self._lock:
            self._queue.append(member)
            follow = self._leading
            self._leading = True
        if follow:
            member.wake.wait()
        if not member.done:  # it leads: no group was running, or the last leader handed over
            try:
                while not member.done:
                    with self._lock:
                        group, self._queue = self._queue[: self._max], self._queue[self._max :]
                    self._lead(group)
            finally:
                with self._lock:
                    successor = self._queue[0] if self._queue else None
                    self._leading = successor is not None
                if successor is not None:
                    successor.wake.set()
        return _outcome(member)

    def _lead(self, group: list[GroupMember[W]]) -> None:
        self._local.running = True
        try:
            self._run(group)
        except BaseException as exc:  # every member must be answered, whatever happened
            for member in group:
                if not member.done:
                    member.finish(error=exc)
            raise
        finally:
            self._local.running = False
            for member in group:
                if not member.done:  # ``run`` broke its contract: fail closed
                    member.finish(error=RuntimeError("a write group left a member unanswered"))
                member.wake.set()


def _outcome(member: GroupMember[Any]) -> Any:
    if member.after is not None:
        member.after()
    if member.error is not None:
        raise member.error
    return member.result
