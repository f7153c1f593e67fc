"""What every command shares: the instance home, error reporting, progress bars, JSON output."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from hearth.domain import HearthError
from hearth.settings import load_settings

if TYPE_CHECKING:
    # Imported where a container is built: ``hearth --version`` and ``--help`` need none.
    from hearth.wiring import Container

__all__ = [
    "PIPE_CLOSED_EXIT",
    "RichProgress",
    "State",
    "container",
    "count",
    "emit_json",
    "fail",
    "handle_errors",
    "pass_state",
]

P = ParamSpec("P")
R = TypeVar("R")


class State:
    def __init__(self, home: Path) -> None:
        self.home = home


pass_state = click.make_pass_decorator(State)


def default_home() -> Path:
    return Path(os.environ.get("HEARTH_HOME", "var"))


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``1 entry``, ``2 entries``: a number with its noun in the right number."""
    if n == 1:
        return f"1 {noun}"
    return f"{n:,} {plural or noun + 's'}"


def fail(message: str, code: int = 1) -> None:
    click.secho(f"error: {message}", fg="red", err=True)
    sys.exit(code)


#: How a Unix tool ends when the reader of its output goes away: SIGPIPE kills it, and the
#: shell reports 128 + 13.
PIPE_CLOSED_EXIT = 128 + int(getattr(signal, "SIGPIPE", 13))


def _output_closed() -> NoReturn:
    """Standard output's reader went away (``hearth audit report ... | head``): stop at once
    and quietly, as Unix tools do, with the exit status SIGPIPE would have given. Standard
    output is pointed at the null device first, so that the interpreter's last flush of what
    is still buffered does not fail again and print a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor (a test runner's stream)
        pass
    sys.exit(PIPE_CLOSED_EXIT)


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn errors into a plain message and a non-zero exit; never a stack trace. A closed
    standard output (the command's output piped into ``head``) ends it quietly instead."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = fn(*args, **kwargs)
            # What is still buffered goes out now, while a closed pipe can be handled here.
            sys.stdout.flush()
            return result
        except BrokenPipeError:
            _output_closed()
        except HearthError as exc:
            fail(f"{exc.detail} [{exc.code.code}]")
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence for the operator
            incident = uuid.uuid4().hex[:12]
            fail(f"internal error ({type(exc).__name__}, incident {incident})")
        raise AssertionError("unreachable")

    return wrapper


@contextmanager
def container(state: State, *, bulk: bool = False) -> Iterator[Container]:
    """The instance's container; ``bulk`` for a command that loads many resources (its key
    ring remembers recent blind-index tokens, ``hearth.wiring.BULK_BLIND_MEMO``)."""
    from hearth.wiring import Container

    c = Container(load_settings(state.home), bulk=bulk)
    try:
        yield c
    finally:
        c.close()


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, sort_keys=True))


class RichProgress:
    """A progress bar on stderr (hidden when stderr is not a terminal or in --json mode)."""

    def __init__(self, *, enabled: bool = True) -> None:
        self._bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            disable=not enabled or not sys.stderr.isatty(),
        )
        self._task: Any = None

    def start(self, label: str, total: int | None) -> None:
        self._bar.start()
        self._task = self._bar.add_task(label, total=total)

    def advance(self, n: int = 1) -> None:
        if self._task is not None:
            self._bar.advance(self._task, n)

    def finish(self) -> None:
        self._bar.stop()
        self._task = None
