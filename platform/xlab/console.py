"""The console is for people: a job's full output goes to a log file, the terminal gets its own lines.

A job's process prints far more than a person wants to read: Ray forwards every worker's output
(TensorFlow's oneDNN and absl banners from the RLDS read tasks, Ray Train's and Ray Data's internals,
progress bars redrawn per tick). :func:`console_capture` redirects the process's stdout and stderr
(file descriptors 1 and 2, so C++ libraries and child processes are caught too) into a pipe; a reader
thread writes EVERY line to the run's log file and shows on the terminal only:

* xlab's own lines, ``[job] message`` (a worker's such lines too, without Ray's ``(pid=...)`` prefix,
  and each once: the same line arriving twice in a row is shown once);
* the driver's plain lines (result tables, hints), except log records of Ray, TensorFlow and absl;
* Rich output (progress bars, tables), which draws on the real terminal directly.

``XLAB_CONSOLE=all`` shows everything (the file still gets it all); the log path is printed first and
logged to MLflow by :func:`xlab.track.run.job_run`'s caller. Nothing is lost: it is all in the file.

    with console_capture("logs/train_policy-0.log"):
        ...   # the job
"""

from __future__ import annotations

import collections
import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

# Terminal control sequences (colours, cursor moves of progress bars redrawn in place).
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Ray's prefix on forwarded worker lines: "(RayTrainWorker pid=123, ip=1.2.3.4) ".
_RAY_PREFIX = re.compile(r"^\((?:[^()]|\([^()]*\))*?pid=\d+[^)]*\)\s?")
_OWN_LINE = re.compile(r"^\[[a-z][a-z0-9_\-.]*\] ")
# Log records and banners of the libraries under a job: never a person's business on the terminal.
_NOISE = re.compile(
    r"^(?:\d{4}[-/]\d\d[-/]\d\d[ T]\d\d:\d\d:\d\d|[IWEF]\d{4} \d\d:\d\d|(?:INFO|WARNING|DEBUG|ERROR)[: ]|"
    r"Registered model '|Created version '|\s+[A-Za-z_][\w.]*\($|"  # MLflow's registry; a warning's source line
    r"WARNING: All log messages before absl|.*oneDNN|.*TF_ENABLE_ONEDNN_OPTS|.*tensorflow|.*cuda|"
    r".*Failed to query Ray Train|.*\bRunning\b.*\bDataset\b|.*it/s\]|.*\bLoading weights\b|"
    r"Trial |\s*warnings\.warn|.*Warning:|.*\d%\||.*\(raylet\)|.*\(autoscaler\))"
)


def console_worthy(line: str) -> str | None:
    """The text of ``line`` as the terminal should show it, or None if it belongs only in the log file."""
    line = _ANSI.sub("", line)
    if not line.strip():  # blank, or nothing but a progress bar's cursor moves
        return None
    stripped = _RAY_PREFIX.sub("", line, count=1)
    if stripped != line:  # a worker's line: only xlab's own lines
        return stripped if _OWN_LINE.match(stripped) else None
    if _OWN_LINE.match(line):
        return line
    return None if _NOISE.match(line) else line


def _pump(read_fd: int, log_file: Path, terminal: int, show_all: bool) -> None:
    """Copy the pipe to the log file (all) and the terminal (filtered) until no writer is left.

    It must never stop reading: a full pipe would block every writer of the process.
    """
    # Ray's log monitor now and then forwards a worker's lines twice, interleaved (seen: "step 1250",
    # "success at step 1000", "step 1250", "success at step 1000"): a line equal to one of the last few shown
    # is a repeat. xlab's own lines carry steps or counts, so they do not repeat legitimately this soon.
    recent: collections.deque[str] = collections.deque(maxlen=8)
    with open(read_fd, "rb", buffering=0) as pipe, open(log_file, "ab", buffering=0) as log:
        pending = b""
        while True:
            chunk = pipe.read(65536)
            if not chunk:
                break
            with contextlib.suppress(Exception):
                log.write(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if len(pending) > 1 << 20:  # a very long line without a newline (a progress bar): log only
                pending = b""
            for raw in lines:
                try:
                    text = raw.decode("utf-8", errors="replace")
                    shown = text if show_all else console_worthy(text.split("\r")[-1])
                    if shown is None or (shown in recent and shown.strip()):
                        continue
                    recent.append(shown)
                    os.write(terminal, (shown + "\n").encode())
                except Exception:  # noqa: BLE001 - the terminal may be gone; the log still gets everything
                    continue


_active: Path | None = None


def active_log() -> Path | None:
    """The log file of the :func:`console_capture` in force in this process, if any."""
    return _active


@contextlib.contextmanager
def console_capture(log_file: str | Path) -> Iterator[Path]:
    """Send fds 1 and 2 to ``log_file`` (all of it) and the terminal (filtered); yields the log path."""
    path = Path(log_file).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out, saved_err = os.dup(1), os.dup(2)
    terminal = os.dup(1)
    read_fd, write_fd = os.pipe()
    show_all = os.environ.get("XLAB_CONSOLE", "") == "all"
    # A daemon: processes that inherited the pipe (Ray's) may hold it open after the job; the thread then
    # keeps copying their output into the log file until this process exits.
    thread = threading.Thread(target=_pump, args=(read_fd, path, terminal, show_all), daemon=True)
    thread.start()
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    rich_console = None
    try:
        import rich

        # Rich (progress bars, tables) draws on the real terminal, not through the filter.
        rich_console = rich.get_console()
        rich.reconfigure(file=os.fdopen(os.dup(terminal), "w", buffering=1))
    except ImportError:
        pass
    global _active
    _active = path
    try:
        yield path
    finally:
        _active = None
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved_out, 1)
        os.dup2(saved_err, 2)
        os.close(saved_out)
        os.close(saved_err)
        if rich_console is not None:
            import rich

            rich.reconfigure(file=sys.stdout)
        thread.join(timeout=2.0)  # the pipe closes when no process holds it any more
