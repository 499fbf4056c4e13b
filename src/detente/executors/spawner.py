"""The pod spawner: a small helper process that starts pods for the local executor,
so the control plane never waits on a child's exec.

Why: ``os.posix_spawn`` holds the GIL until the child has exec'd (vfork), and on a busy
machine the child first waits for a CPU: each start blocked the reconciler — and the
API with it — for ≈ 4 ms (8.5 s of a 2,000-pod run). The control plane now writes a
batch's requests down a pipe and reads the answers after; this process spawns them.

Protocol (pipes, native byte order): a request is a 4-byte length and a marshalled
``(argv, env, blob)``; the answer is two int64, ``(pid, start)`` — the child's pid and
its start time in clock ticks (-1 if unread) — or ``(-errno, 0)`` if it could not be
exec'd. The child: a new session, standard streams on /dev/null, the signals Python
ignores back to their defaults, ``blob`` (the job's environment) on a memory file at
`ENV_FD`. End of input, or the control plane gone: the helper exits (its pods live
on). It reaps its children, so none lingers as a zombie. The control plane's end is
`detente.executors.spawn`.
"""

from __future__ import annotations

import marshal
import os
import signal
import struct
import sys

ANSWER = struct.Struct("=qq")
LENGTH = struct.Struct("=I")
ENV_FD = 9


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


def _reap(*_: object) -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def _start(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return -1


#: Signals Python ignores that a pod must not inherit ignored (as subprocess restores).
RESTORED = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGCHLD)


def _spawn(argv: list[str], env: dict[str, str], blob: bytes) -> int:
    """The pod's process, exec'd (OSError if it could not be): in a new session, its
    standard streams on /dev/null, ``blob`` on a memory file at `ENV_FD`."""
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (0, 1, 2)
    ]
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


def serve(rd: int, wr: int) -> None:
    """Answers requests from ``rd`` on ``wr`` until ``rd`` ends."""
    signal.signal(signal.SIGCHLD, _reap)
    parent = os.getppid()
    while True:
        head = read_exact(rd, LENGTH.size)
        # Requests left in the pipe by a control plane that died are not started: the
        # next one recovers its launching jobs itself, and would start them twice.
        if len(head) < LENGTH.size or os.getppid() != parent:
            return
        argv, env, blob = marshal.loads(read_exact(rd, LENGTH.unpack(head)[0]))
        try:
            pid = _spawn(argv, env, blob)
        except OSError as e:
            os.write(wr, ANSWER.pack(-(e.errno or 1), 0))
            continue
        os.write(wr, ANSWER.pack(pid, _start(pid)))


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
