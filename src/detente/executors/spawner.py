"""The pod spawner: a small helper process that starts pods for the local executor,
so the control plane never waits on a child's exec — and, for a simple pod, is its
launcher too, so no bash launcher runs per pod.

Why: ``os.posix_spawn`` holds the GIL until the child has exec'd (vfork), and on a busy
machine the child first waits for a CPU: each start blocked the reconciler — and the
API with it — for ≈ 4 ms (8.5 s of a 2,000-pod run). And the bash launcher
(`launcher.sh`) cost as much CPU again as the job's own batch shell. Only stdlib here:
it is run by path (``python -I spawner.py``), whatever is installed.

Protocol (pipes, native byte order): a request is a 4-byte length and a marshalled
tuple; the answer is two int64, ``(pid, start)`` — the child's pid and its start time
in clock ticks (-1 if unread) — or ``(-errno, 0)`` if it could not be started.

* ``("exec", argv, env, blob)``: a process (the bash launcher, the Python shim) with
  ``blob`` (the job's environment) on a memory file at `ENV_FD`.
* ``("pod", script, args, env, cwd, log, exit_file, cgroups, batch_file)``: the pod's
  one task, ``bash script args`` with exactly ``env``, in ``cwd``, its output and
  errors appended to ``log``, in ``cgroups`` — ``(folder, [(file, value), …])``: made
  with those limits (or a kept one with the same limits beside it, `Kept`) and joined
  before it starts. When it ends
  this process records its code as ``CODE\\n`` (128+N if killed by signal N), on its
  log beside ``exit_file`` (`record_end`) or in ``exit_file`` (a ``.oom`` marker
  beside it if a memory group saw an OOM kill), then the
  pid, as an int64, to its exits pipe (a wake-up for the control plane; dropped if
  nobody reads). ``batch_file`` (if set) gets the task's pid (sbatch ``--signal=B:``).

Every child: a new session, standard input on /dev/null, the signals Python ignores
back to their defaults. End of input, or the control plane gone: no more requests are
read (a control plane that died recovers its launching jobs itself, and would start
them twice); the helper exits once its pods have ended. It reaps its children.
"""

from __future__ import annotations

import contextlib
import errno
import marshal
import os
import select
import signal
import struct
import sys
from pathlib import Path
from typing import Any

ANSWER = struct.Struct("=qq")
#: A pod's group: its folder, and its limit files with their values.
Group = tuple[str, list[tuple[str, str]]]
LENGTH = struct.Struct("=I")
PID = struct.Struct("=q")
ENV_FD = 9
#: The attribute of a pod's log that holds its end (`record_end`).
END = "user.detente.exit"
#: Signals Python ignores that a pod must not inherit ignored (as subprocess restores).
RESTORED = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)


def read_exact(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd``; fewer only at its end."""
    chunks, got = [], 0
    while got < n:
        b = os.read(fd, n - got)
        if not b:
            break
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _start(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return -1


def _spawn(argv: list[str], env: dict[str, str], blob: bytes, out: int | None = None) -> int:
    """The process, exec'd (OSError if it could not be): in a new session, standard
    input on /dev/null, output on ``out`` (else /dev/null), ``blob`` on `ENV_FD`."""
    actions: list[Any] = [(os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]
    if out is None:
        actions += [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (1, 2)]
    else:
        actions += [(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, out, 2)]
    mem = None
    if blob:
        mem = os.memfd_create("detente-env")
        _write(mem, blob)
        os.lseek(mem, 0, os.SEEK_SET)
        actions.append((os.POSIX_SPAWN_DUP2, mem, ENV_FD))  # dup2 clears close-on-exec
    try:
        return os.posix_spawn(argv[0], argv, env, file_actions=actions, setsid=True,
                              setsigdef=RESTORED)  # fmt: skip
    finally:
        if mem is not None:
            os.close(mem)


class Pods:
    """The pods this process launched directly, until their ends are written."""

    def __init__(self, exits: int) -> None:
        self.exits = exits
        #: pid → (exit file, its groups, log)
        self.running: dict[int, tuple[str, list[tuple[Key | None, str]], str]] = {}
        self.kept = Kept()

    def start(self, script: str, args: list[str], env: dict[str, str], cwd: str, log: str,
              exit_file: str, groups: list[Group], batch_file: str) -> int:  # fmt: skip
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        taken: list[tuple[Key | None, Group]] = []
        try:
            os.chdir(cwd)  # a missing folder fails the start here, before any group is made
            taken = self.kept.take(groups)
            pid = _spawn_in([g for _, g in taken], ["/bin/bash", script, *args], env, out)
        except BaseException:
            self.kept.give_back([(key, d) for key, (d, _) in taken])
            raise
        finally:
            os.chdir("/")
            os.close(out)
        self.running[pid] = (exit_file, [(key, d) for key, (d, _) in taken], log)
        if batch_file:
            _write_text(batch_file, str(pid))
        return pid

    def reap(self) -> None:
        """Writes the end of every pod that ended (and reaps other children)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self.running:
                self._ended(pid, status)

    def _ended(self, pid: int, status: int) -> None:
        exit_file, groups, log = self.running.pop(pid)
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        if any(_oom_killed(d) for key, d in groups if key is None):
            with contextlib.suppress(OSError):
                _write_text(exit_file[: -len(".exit")] + ".oom", "oom\n")
            _append(log, "detente: out of memory: the job exceeded its --mem\n")
        while True:  # while the disk is full, retry every second
            try:
                record_end(exit_file, code)
                break
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                    break  # its folder is gone: waiting would not help (it spun for ever)
                select.select([], [], [], 1.0)
        with contextlib.suppress(OSError):  # nobody reads, or it is full: the sweep finds it
            os.write(self.exits, PID.pack(pid))
        self.kept.give_back(groups)


def record_end(exit_file: str, code: int) -> None:
    """The pod's end, ``CODE\\n``: as the `END` attribute of its log (beside its exit
    file) where the filesystem takes user attributes, else as its exit file. No new
    file a pod: on this machine's ext4 without a journal, making one scans past every
    inode freed in the last minutes (``recently_deleted`` in the inode allocator), and
    the two spawners spin on the pods' folder's lock meanwhile — the exit files cost
    ≈ 0.3–0.5 s of a 2,000-pod ``true`` run. OSError if neither can be written."""
    data = f"{code}\n".encode()
    try:
        os.setxattr(exit_file[: -len(".exit")] + ".log", END, data)
    except OSError:  # no log (a failed start), no user attributes here, no room
        _write_text(exit_file, data.decode())


def ended(exit_file: Path) -> str | None:
    """What a pod's end record holds (`record_end`; the local executor parses it),
    None without one. The log's attribute is only the daemon's to set: the log is its
    own, mode 0600, so a pod of another user cannot write it (one of its own user
    could write either record)."""
    try:
        return os.getxattr(str(exit_file)[: -len(".exit")] + ".log", END).decode()
    except OSError:
        pass
    try:
        return exit_file.read_text()
    except OSError:
        return None


def _spawn_in(groups: list[Group], argv: list[str], env: dict[str, str], out: int) -> int:
    """`_spawn`, the task born in ``groups``: this process joins them for the spawn and
    leaves after; a group it cannot join is said in the pod's log."""
    joined = []
    try:
        for d, files in groups:
            try:
                _make_and_join(d, files)
                joined.append(d)
            except OSError as e:
                os.write(out, f"detente: {os.path.basename(d)} not joined ({e.strerror}): "
                              "limit not enforced\n".encode())  # fmt: skip
        return _spawn(argv, env, b"", out)
    finally:
        for d in joined:  # back out of them, to the groups' parent
            _join(os.path.dirname(d))


def _make_and_join(folder: str, files: list[tuple[str, str]]) -> None:
    """This process into ``folder``: a kept group (its limits written), or one made
    with ``files``' limits first (v1 and v2 names alike: those the controller has)."""
    try:
        _join(folder)
        return
    except FileNotFoundError:
        pass
    with contextlib.suppress(FileExistsError):
        os.mkdir(folder)
    for name, value in files:
        if os.path.exists(f"{folder}/{name}"):
            _write_text(f"{folder}/{name}", value)
    _join(folder)


def _join(folder: str) -> None:
    """This process (single-threaded) into ``folder``, and what it forks after. v1:
    "0" into its ``tasks`` moves the calling thread, which the kernel does without the
    global threadgroup lock (`cgroup_procs_write_start`) — whose taking waits for an RCU
    grace period when no move ran lately: ≈ 6 ms a move in and out here, up to 36 ms
    under load, against 0.15 ms. v2 (no ``tasks``): the pid into ``cgroup.procs``.
    FileNotFoundError: no such group."""
    try:
        fd = os.open(f"{folder}/tasks", os.O_WRONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        fd = os.open(f"{folder}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
        text = str(os.getpid())
    else:
        text = "0"
    try:
        _write(fd, text.encode())
    finally:
        os.close(fd)


Key = tuple[str, tuple[tuple[str, str], ...]]  # a group's parent folder and limits


class Kept:
    """Pods' groups kept for the next pod with the same parent and limits, once empty.
    Making a group and removing it take the kernel's cgroup lock, which a move into a
    group holds while it waits for an RCU grace period (milliseconds when no move ran
    lately): a group made by the control plane for each pod and removed by its settle
    had them wait on the spawners' moves. Memory groups are not kept (their OOM count
    would pass to the next pod): removed once empty."""

    def __init__(self) -> None:
        self.free: dict[Key, list[str]] = {}
        self.held: list[tuple[Key | None, str]] = []  # ended, a stray process still in it
        self.made = 0

    def take(self, groups: list[Group]) -> list[tuple[Key | None, Group]]:
        """A group for each planned one: a kept one, or a new one beside it."""
        out: list[tuple[Key | None, Group]] = []
        for folder, files in groups:
            if any(name.startswith("memory.") for name, _ in files):
                out.append((None, (folder, files)))
                continue
            key = (os.path.dirname(folder), tuple((n, v) for n, v in files))
            if not (free := self.free.get(key)):
                self.made += 1
                free = [f"{key[0]}/detente-kept-{os.getpid()}-{self.made}"]
            out.append((key, (free.pop(), files)))
        return out

    def give_back(self, groups: list[tuple[Key | None, str]]) -> None:
        """An ended pod's groups (and those still held before): kept once empty, a
        memory group removed."""
        held, self.held = [*self.held, *groups], []
        for key, folder in held:
            if _busy(folder):
                self.held.append((key, folder))
            elif key is None:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
            else:
                self.free.setdefault(key, []).append(folder)

    def close(self) -> None:
        """Removes the groups kept (and those held, if now empty)."""
        kept = [f for free in self.free.values() for f in free] + [f for _, f in self.held]
        for folder in kept:
            with contextlib.suppress(OSError):
                os.rmdir(folder)


def _busy(folder: str) -> bool:
    try:
        with open(f"{folder}/cgroup.procs", "rb") as f:
            return bool(f.read(1))
    except OSError:
        return False  # gone (swept): made again when next taken


def _write_text(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _write(fd, text.encode())
    finally:
        os.close(fd)


def _append(path: str, text: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except OSError:
        return
    try:
        _write(fd, text.encode())
    finally:
        os.close(fd)


def _oom_killed(group: str) -> bool:
    for name in ("memory.events", "memory.oom_control"):
        try:
            with open(f"{group}/{name}") as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == "oom_kill" and v.strip() not in ("", "0"):
                        return True
        except OSError:
            continue
    return False


def _answer(pods: Pods, req: tuple[Any, ...]) -> tuple[int, int]:
    """A pod that could not start (no such folder, an unwritable log) leaves why in a
    ``.reason`` beside its exit file, as the bash launcher does."""
    try:
        pid = pods.start(*req[1:]) if req[0] == "pod" else _spawn(*req[1:])
    except OSError as e:
        if req[0] == "pod":
            why = f"{e.strerror}: {e.filename}" if e.filename else str(e.strerror or e)
            with contextlib.suppress(OSError):
                _write_text(req[6][: -len(".exit")] + ".reason", why)
        return -(e.errno or 1), 0
    return pid, _start(pid)


def serve(rd: int, wr: int, exits: int) -> None:
    """Answers requests from ``rd`` on ``wr`` until ``rd`` ends (or the control plane
    is gone), then waits for its pods."""
    # Its pipes were passed on (dup2 cleared close-on-exec), and whatever else the
    # control plane had open came along: no pod may inherit any of them.
    os.closerange(max(rd, wr, exits) + 1, os.sysconf("SC_OPEN_MAX"))
    for fd in (rd, wr, exits):
        os.set_inheritable(fd, False)
    os.set_blocking(exits, False)
    sig_r, sig_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(sig_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the select below
    pods, parent, reading = Pods(exits), os.getppid(), True
    while reading or pods.running:
        ready, _, _ = select.select([rd, sig_r] if reading else [sig_r], [], [], 5.0)
        if sig_r in ready:
            while True:
                try:
                    if not os.read(sig_r, 512):
                        break
                except BlockingIOError:
                    break
        pods.reap()
        if rd not in ready:
            continue
        head = read_exact(rd, LENGTH.size)
        if len(head) < LENGTH.size or os.getppid() != parent:
            reading = False
            continue
        req = marshal.loads(read_exact(rd, LENGTH.unpack(head)[0]))
        os.write(wr, ANSWER.pack(*_answer(pods, req)))
    pods.kept.close()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
