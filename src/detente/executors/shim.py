"""The process that stands for one pod.

``python -m detente.executors.shim EXIT NTASKS BASE PODLOG -- CMD…``

It starts ``NTASKS`` copies of the command (ranks ``BASE`` … ``BASE + NTASKS - 1``),
copies their output both to its own stdout/stderr (the job's ``--output`` and
``--error`` files) and to ``PODLOG`` (this pod's log), waits for all, and writes the
pod's exit code to ``EXIT`` atomically (write, then rename). It leads its own session,
so it outlives a crash of the control plane, which re-adopts it by the token in its
environment. SIGTERM sent to the process group reaches the tasks; the shim itself
keeps waiting so it can record how they ended.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading


def _code(rc: int) -> int:
    return 128 - rc if rc < 0 else rc  # killed by signal N → 128 + N, as shells report


def _pump(src: int, dests: tuple[int, ...]) -> None:
    while chunk := os.read(src, 65536):
        for d in dests:
            os.write(d, chunk)
    os.close(src)


def main(argv: list[str]) -> int:
    exit_path, ntasks, base, pod_log = argv[0], int(argv[1]), int(argv[2]), argv[3]
    cmd = argv[argv.index("--") + 1 :]
    # A handler (not SIG_IGN) so that the tasks, after exec, get the default action.
    signal.signal(signal.SIGTERM, lambda *_: None)
    log = os.open(pod_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    merged = os.fstat(1).st_ino == os.fstat(2).st_ino
    procs, pumps = [], []
    for local in range(ntasks):
        env = dict(os.environ)
        rank = base + local
        env.update(RANK=str(rank), LOCAL_RANK=str(local), SLURM_PROCID=str(rank))
        env.update(SLURM_LOCALID=str(local))
        err = subprocess.STDOUT if merged else subprocess.PIPE
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)
        procs.append(p)
        for pipe, fd in ((p.stdout, 1), (p.stderr, 2)):
            if pipe is not None:
                t = threading.Thread(target=_pump, args=(os.dup(pipe.fileno()), (fd, log)))
                pipe.close()
                t.start()
                pumps.append(t)
    codes = [_code(p.wait()) for p in procs]
    for t in pumps:
        t.join()
    code = next((c for c in codes if c != 0), 0)
    tmp = exit_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(code))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, exit_path)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
