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

``fail_frames`` (the frames set when the job was submitted) reach the stand-in renderer, which
fails when it reaches one; ``frame_seconds`` is how long it takes per frame. A killed task's
process is stopped. A task that was running when the sandbox stopped runs again after a
restart. Each process's group is its own, so a kill reaches the renderer under the wrapper.

Failing chosen frames only for their first attempts and preemption are not simulated yet;
``_environment`` and ``_finish`` are where they would go.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
                shutil.rmtree(running.root, ignore_errors=True)
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
                if running.process.poll() is not None:
                    if gone:
                        running.log.close()
                        shutil.rmtree(running.root, ignore_errors=True)
                    else:
                        self._finish(running)
                    del self.running[key]
            free = int(self.store.setting("instances")) - len(self.running)
            if free <= 0:
                return
            due = self.store.query(
                "SELECT t.jid, t.tid, t.frames, t.command, t.will_fail, j.payload"
                " FROM tasks t JOIN jobs j ON j.jid = t.jid"
                " WHERE t.started_at IS NOT NULL AND t.run_started IS NULL AND t.killed = 0"
                " AND j.killed = 0 AND t.started_at <= ?"
                " ORDER BY t.started_at, t.jid, t.tid LIMIT ?",
                time.time() - float(self.store.setting("task_seconds")),
                free,
            )
            for task in due:
                self._start(task)

    def _killed(self, jid: int, tid: int) -> bool:
        rows = self.store.query(
            "SELECT t.killed AS task, j.killed AS job FROM tasks t JOIN jobs j ON j.jid = t.jid"
            " WHERE t.jid = ? AND t.tid = ?",
            jid,
            tid,
        )
        return not rows or bool(rows[0]["task"] or rows[0]["job"])

    def _signal(self, running: Running) -> None:
        if running.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(running.process.pid, signal.SIGTERM)

    def _start(self, task: Any) -> None:
        jid, tid = int(task["jid"]), int(task["tid"])
        payload = json.loads(task["payload"])
        root = Path(tempfile.mkdtemp(prefix=f"{jid:05d}-{tid:03d}-", dir=self.nodes))
        log_file = log_path(self.context, jid, tid)
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log = log_file.open("wb")
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
        log.write(f"sandbox: {task['command']}\n".encode())
        log.flush()
        process = subprocess.Popen(
            ["sh", "-c", command],
            cwd=root,
            env=self._environment(payload, task, root),
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
        )

    def _environment(self, payload: dict[str, Any], task: Any, root: Path) -> dict[str, str]:
        """The job's environment on the node, with the stand-in renderer first on PATH."""
        environment = {str(k): str(v) for k, v in (payload.get("environment") or {}).items()}
        paths = [str(self.bin), environment.get("PATH", ""), os.environ.get("PATH", "")]
        environment["PATH"] = os.pathsep.join(p for p in paths if p)
        environment["SANDBOX_NODE_ROOT"] = str(root)
        environment["SANDBOX_OUTPUT_BYTES"] = str(int(self.store.setting("output_bytes")))
        environment["SANDBOX_FRAME_SECONDS"] = str(float(self.store.setting("frame_seconds")))
        if task["will_fail"]:
            environment["SANDBOX_FAIL_FRAMES"] = ",".join(
                str(f) for f in self.store.setting("fail_frames")
            )
        return environment

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
        shutil.rmtree(running.root, ignore_errors=True)

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
