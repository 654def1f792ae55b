"""The sandbox's render farm: each task's real command, on a bounded number of stand-in nodes.

A task whose clock started (not holding) waits ``task_seconds`` (pending), then runs as soon as
one of ``instances`` stand-in nodes is free, oldest first, so tasks finish at different times as
on a farm. Running a task:

1. lay out the job's uploads in a folder of its own (``layout.lay_out``), the node's root;
2. run the task's command with ``sh -c``, absolute paths taken below the root, in the job's
   environment with the stand-in ``cnode`` first on ``PATH``; standard output and error go to
   the task's log;
3. when the process ends, its exit code is the task's: 0 is ``success``, anything else
   ``failed``; the files below the job's ``output_path`` (on the node) become the task's outputs,
   stored content-addressed like uploads; the node's folder is removed.

Every start of a task is one attempt at each of its frames (per tile: a task rendering tile K
of a frame is an attempt at that tile), counted in the store across all jobs and restarts
(``Store.count_attempts``). ``fail_frames`` (the frames set when the job was submitted) reach
the stand-in renderer while their attempt is within ``fail_attempts`` (0: every attempt); it
fails when it reaches one. ``preempt_frames`` reach it the same way within
``preempt_attempts``: when it reaches one it says so and waits, and the node is taken away (the
task's process group is killed, the frames it wrote are lost with the node). The task then goes
back to pending while the job's ``autoretry_policy`` ``{"preempted": {"max_retries": N}}`` has
retries left for it, else it stays ``preempted``. ``frame_seconds`` is how long the renderer
takes per frame (divided by the tile count for one tile). A killed task's process is stopped. A
task that was running when the sandbox stopped runs again after a restart (a new attempt). Each
process's group is its own, so a kill reaches the renderer under the wrapper.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from prefect_conductor.conductor_cloud.job.frames import parse_frame_spec
from prefect_conductor.conductor_cloud.job.paths import node_path
from prefect_conductor.sandbox.context import SandboxContext
from prefect_conductor.sandbox.node.layout import (
    SAFE_ROOT,
    LayoutError,
    files_below,
    lay_out,
    node_file,
    rooted,
    stand_in_bin,
)

POLL_SECONDS = 0.05

_TILE = re.compile(r"-tile_rendering\s+(\d+)\s+(\d+)")
"""``-tile_rendering <tiles> <tile_number>`` in a task's command."""


@dataclass
class Running:
    """A task's process on a stand-in node."""

    jid: int
    tid: int
    process: subprocess.Popen[bytes]
    root: Path
    log: IO[bytes]
    output_path: str
    uploaded: set[Path]
    generation: int
    preempt_mark: Path | None = None
    """A file the stand-in renderer makes when it reaches a frame whose node is taken away."""
    max_retries: int = 0
    """Conductor's retries after a preemption (the job's ``autoretry_policy``)."""
    preempted: bool = False


def tile_of(command: str) -> int:
    """The tile a task's command renders (``-tile_rendering N K`` with N > 1); 0: whole frames."""
    match = _TILE.search(command)
    return int(match.group(2)) if match and int(match.group(1)) > 1 else 0


def due(attempt: int, attempts: int) -> bool:
    """Whether a chosen frame misbehaves on this attempt (``attempts`` 0: on every one)."""
    return attempts == 0 or attempt <= attempts


def preempt_retries(payload: dict[str, Any]) -> int:
    """``autoretry_policy.preempted.max_retries`` of a stored job (0 when absent)."""
    policy = (payload.get("autoretry_policy") or {}).get("preempted") or {}
    return max(0, int(policy.get("max_retries") or 0))


def log_path(context: SandboxContext, jid: int, tid: int) -> Path:
    """Where a task's log is kept (the process's standard output and error)."""
    return context.data_dir / "logs" / f"{jid:05d}-{tid:03d}.log"


class TaskRunner:
    """Starts due tasks on free stand-in nodes and settles the ones that ended."""

    def __init__(self, context: SandboxContext) -> None:
        self.context = context
        self.store = context.store
        self.running: dict[tuple[int, int], Running] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.bin = stand_in_bin(context.data_dir / "bin")
        self.nodes = self._nodes_folder()

    def _nodes_folder(self) -> Path:
        """The parent of the per-task roots: in the data folder when its path is plain (so a
        rooted path needs no quoting), else in the system's temporary folder."""
        wanted = self.context.data_dir / "nodes"
        if SAFE_ROOT.fullmatch(str(wanted.resolve())):
            wanted.mkdir(parents=True, exist_ok=True)
            return wanted.resolve()
        return Path(tempfile.mkdtemp(prefix="sandbox-nodes-"))

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Run again what a stopped sandbox left running, then work in a daemon thread."""
        self.store.execute(
            "UPDATE tasks SET run_started = NULL"
            " WHERE run_started IS NOT NULL AND run_ended IS NULL"
        )
        self._thread = threading.Thread(target=self._loop, name="sandbox-nodes", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            for running in list(self.running.values()):
                self._signal(running)
                running.process.wait(timeout=10)
                running.log.close()
                self._clean(running)
            self.running.clear()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.step()
            except Exception as problem:  # keep the farm alive; the log says why
                print(f"sandbox: the render node loop failed: {problem!r}", flush=True)

    # one pass ---------------------------------------------------------------------------------

    def step(self) -> None:
        """Settle ended or killed tasks, then start due ones while a node is free."""
        with self._lock:
            for key, running in list(self.running.items()):
                gone = running.generation != self.context.generation
                if gone or self._killed(running.jid, running.tid):
                    self._signal(running)
                elif running.preempt_mark is not None and running.preempt_mark.exists():
                    self._take_node_away(running)
                if running.process.poll() is not None:
                    if gone:
                        running.log.close()
                        self._clean(running)
                    elif running.preempted:
                        self._preempted(running)
                    else:
                        self._finish(running)
                    del self.running[key]
            free = int(self.store.setting("instances")) - len(self.running)
            if free <= 0:
                return
            ready = self.store.query(
                "SELECT t.jid, t.tid, t.frames, t.command, t.will_fail, t.will_preempt,"
                " t.preemptions, j.payload"
                " FROM tasks t JOIN jobs j ON j.jid = t.jid"
                " WHERE t.started_at IS NOT NULL AND t.run_started IS NULL AND t.killed = 0"
                " AND j.killed = 0 AND t.started_at <= ?"
                " ORDER BY t.started_at, t.jid, t.tid LIMIT ?",
                time.time() - float(self.store.setting("task_seconds")),
                free,
            )
            for task in ready:
                self._start(task)

    def _killed(self, jid: int, tid: int) -> bool:
        rows = self.store.query(
            "SELECT t.killed AS task, j.killed AS job FROM tasks t JOIN jobs j ON j.jid = t.jid"
            " WHERE t.jid = ? AND t.tid = ?",
            jid,
            tid,
        )
        return not rows or bool(rows[0]["task"] or rows[0]["job"])

    def _signal(self, running: Running, number: int = signal.SIGTERM) -> None:
        if running.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, number)

    def _take_node_away(self, running: Running) -> None:
        """Preempt: the node goes, with every process of the task on it."""
        if not running.preempted:
            running.preempted = True
            self._signal(running, signal.SIGKILL)

    def _clean(self, running: Running) -> None:
        shutil.rmtree(running.root, ignore_errors=True)
        if running.preempt_mark is not None:
            running.preempt_mark.unlink(missing_ok=True)

    def _start(self, task: Any) -> None:
        jid, tid = int(task["jid"]), int(task["tid"])
        payload = json.loads(task["payload"])
        root = Path(tempfile.mkdtemp(prefix=f"{jid:05d}-{tid:03d}-", dir=self.nodes))
        log_file = log_path(self.context, jid, tid)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log = log_file.open("ab" if task["preemptions"] else "wb")  # a retry keeps the story
        now = time.time()
        try:
            uploaded = lay_out(root, payload.get("upload_files") or [], self.context.blob_path)
        except (LayoutError, OSError, ValueError) as problem:
            log.write(f"sandbox: cannot lay out the job's files: {problem}\n".encode())
            log.close()
            shutil.rmtree(root, ignore_errors=True)
            self.store.execute(
                "UPDATE tasks SET run_started = ?, run_ended = ?, exit_code = ?"
                " WHERE jid = ? AND tid = ?",
                now,
                now,
                1,
                jid,
                tid,
            )
            return
        command = rooted(str(task["command"]), str(root))
        attempts = self.store.count_attempts(
            parse_frame_spec(str(task["frames"])), tile_of(str(task["command"]))
        )
        failing = self._chosen(task["will_fail"], "fail_frames", "fail_attempts", attempts)
        preempting = self._chosen(
            task["will_preempt"], "preempt_frames", "preempt_attempts", attempts
        )
        mark = Path(f"{root}.preempt") if preempting else None
        log.write(f"sandbox: {task['command']}\n".encode())
        log.flush()
        process = subprocess.Popen(
            ["sh", "-c", command],
            cwd=root,
            env=self._environment(payload, root, failing, preempting, mark),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.store.execute(
            "UPDATE tasks SET run_started = ? WHERE jid = ? AND tid = ?", now, jid, tid
        )
        self.running[(jid, tid)] = Running(
            jid,
            tid,
            process,
            root,
            log,
            str(payload.get("output_path") or ""),
            uploaded,
            self.context.generation,
            mark,
            preempt_retries(payload),
        )

    def _chosen(
        self, chosen: int, frames_key: str, attempts_key: str, attempts: dict[int, int]
    ) -> list[int]:
        """The task's frames in the setting ``frames_key`` whose attempt now is due to
        misbehave; none unless the task held one when its job was submitted (``chosen``)."""
        if not chosen:
            return []
        limit = int(self.store.setting(attempts_key))
        return [
            frame
            for frame in self.store.setting(frames_key)
            if frame in attempts and due(attempts[frame], limit)
        ]

    def _environment(
        self,
        payload: dict[str, Any],
        root: Path,
        failing: list[int],
        preempting: list[int],
        mark: Path | None,
    ) -> dict[str, str]:
        """The job's environment on the node, with the stand-in renderer first on PATH and the
        frames it fails on or loses its node at (this attempt)."""
        environment = {str(k): str(v) for k, v in (payload.get("environment") or {}).items()}
        paths = [str(self.bin), environment.get("PATH", ""), os.environ.get("PATH", "")]
        environment["PATH"] = os.pathsep.join(p for p in paths if p)
        environment["SANDBOX_NODE_ROOT"] = str(root)
        environment["SANDBOX_OUTPUT_BYTES"] = str(int(self.store.setting("output_bytes")))
        environment["SANDBOX_FRAME_SECONDS"] = str(float(self.store.setting("frame_seconds")))
        if failing:
            environment["SANDBOX_FAIL_FRAMES"] = ",".join(str(f) for f in failing)
        if preempting and mark is not None:
            environment["SANDBOX_PREEMPT_FRAMES"] = ",".join(str(f) for f in preempting)
            environment["SANDBOX_PREEMPT_MARK"] = str(mark)
        return environment

    def _preempted(self, running: Running) -> None:
        """The node is gone: back to pending while the job's retries last, else ``preempted``."""
        running.log.write(b"sandbox: the instance was preempted\n")
        running.log.close()
        self._clean(running)
        now = time.time()
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT preemptions FROM tasks WHERE jid = ? AND tid = ?",
                (running.jid, running.tid),
            ).fetchone()
            if row is not None and int(row["preemptions"]) < running.max_retries:
                db.execute(
                    "UPDATE tasks SET preemptions = preemptions + 1, started_at = ?,"
                    " run_started = NULL, run_ended = NULL, exit_code = NULL"
                    " WHERE jid = ? AND tid = ?",
                    (now, running.jid, running.tid),
                )
            else:
                db.execute(
                    "UPDATE tasks SET preemptions = preemptions + 1, preempted = ?, run_ended = ?"
                    " WHERE jid = ? AND tid = ?",
                    (now, now, running.jid, running.tid),
                )

    def _finish(self, running: Running) -> None:
        """Record the exit code and the outputs of a task whose process ended."""
        code = running.process.returncode
        running.log.write(f"sandbox: exit code {code}\n".encode())
        running.log.close()
        outputs: list[tuple[str, str, int]] = []
        if code == 0 and running.output_path:
            try:
                folder = node_file(running.root, node_path(running.output_path))
            except LayoutError:
                folder = None
            for relative, path in files_below(folder) if folder is not None else ():
                if path not in running.uploaded:  # what the task wrote, not what it was given
                    outputs.append((relative, *self._keep(path)))
        with self.store.transaction() as db:
            for relative, md5, size in outputs:
                db.execute(
                    "INSERT OR REPLACE INTO outputs (jid, tid, relative_path, md5, size)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (running.jid, running.tid, relative, md5, size),
                )
            db.execute(
                "UPDATE tasks SET run_ended = ?, exit_code = ?, rendered = 1"
                " WHERE jid = ? AND tid = ?",
                (time.time(), code, running.jid, running.tid),
            )
        self._clean(running)

    def _keep(self, path: Path) -> tuple[str, int]:
        """Store an output file content-addressed; its base64 md5 and size."""
        digest = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        target = self.context.blob_path(digest.digest())
        if not target.is_file():
            fd, name = tempfile.mkstemp(dir=self.context.incoming_dir)
            os.close(fd)
            shutil.copyfile(path, name)
            os.replace(name, target)
        return base64.b64encode(digest.digest()).decode(), path.stat().st_size
