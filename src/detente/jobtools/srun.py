"""``srun`` inside a detente job: one job step over the job's allocation.

As Slurm's srun within an allocation: ``-N/--nodes``, ``-n/--ntasks``,
``--ntasks-per-node``, ``-w/--nodelist``, ``-x/--exclude``, ``-c/--cpus-per-task``,
``--gpus-per-task`` (each task its own slice of its node's GPUs, as Slurm's implied
``--gpu-bind=per_task``), ``-l/--label``, ``-K/--kill-on-bad-exit``, ``--export``,
``-J``, ``-D``. Without ``-n``/``-N`` it runs the job's own layout (``SLURM_NTASKS``
tasks as ``SLURM_TASKS_PER_NODE``). Tasks are laid out in blocks (consecutive ranks
on one node) and get Slurm's step variables (``SLURM_PROCID``, ``SLURM_LOCALID``,
``SLURM_NODEID``, ``SLURM_STEPID``, …, and torch's ``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``); srun's stdin goes to every task, as Slurm's default. srun forwards
the signals it gets to its tasks, waits for all, reports each failed task as Slurm
does, and exits with the highest exit code. On the local executor every virtual
node is this machine, so a step's tasks run here, in the batch pod's process group
(a job's stop reaches them).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from detente.api.hostlist import compress, expand
from detente.jobtools import alloc

STEP_FD = "DETENTE_STEP_FD"
STEPS_FILE = "DETENTE_STEPS_FILE"
FORWARD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
           signal.SIGUSR2, signal.SIGCONT, signal.SIGALRM)  # fmt: skip
#: Accepted with no effect here (said so on stderr, never silently).
NO_EFFECT = ("--cpu-bind", "--gpu-bind", "--mem", "--mem-per-cpu", "--time", "--distribution",
             "--mpi")  # fmt: skip


class SrunError(Exception):
    pass


@dataclass(frozen=True)
class Task:
    rank: int
    local: int
    nodeid: int
    share: alloc.NodeShare
    gpus: tuple[int, ...]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="srun", allow_abbrev=False, add_help=True)
    p.add_argument("-N", "--nodes", type=_count)
    p.add_argument("-n", "--ntasks", type=_count)
    p.add_argument("--ntasks-per-node", type=_count)
    p.add_argument("-w", "--nodelist")
    p.add_argument("-x", "--exclude")
    p.add_argument("-c", "--cpus-per-task", type=float)
    p.add_argument("--gpus-per-task", type=lambda v: _count(v.rsplit(":", 1)[-1]))
    p.add_argument("-l", "--label", action="store_true")
    p.add_argument("-K", "--kill-on-bad-exit", action="store_true")
    p.add_argument("--export", default="ALL")
    p.add_argument("-J", "--job-name")
    p.add_argument("-D", "--chdir")
    p.add_argument("-u", "--unbuffered", action="store_true")
    p.add_argument("--overlap", action="store_true")
    p.add_argument("--exact", action="store_true")
    p.add_argument("--het-group")
    for opt in NO_EFFECT:
        p.add_argument(opt, dest=f"ignored_{opt[2:].replace('-', '_')}")
    p.add_argument("command", nargs=argparse.REMAINDER)
    return p


def normalize(argv: list[str]) -> list[str]:
    """Slurm's optional values (``-K1``, ``--kill-on-bad-exit=0``) as argparse flags;
    only the options before the command are touched."""
    out = []
    for i, tok in enumerate(argv):
        if not tok.startswith("-"):
            return out + argv[i:]
        name, eq, val = tok.partition("=")
        if name in ("--kill-on-bad-exit", "-K0", "-K1") or (name == "-K" and eq):
            val = val if eq else name[2:] or "1"
            out += ["-K"] if val != "0" else []
            continue
        out.append(tok)
    return out


def _count(v: str) -> int:
    n = int(v.split("-", 1)[0])  # "2-4": at least 2; a step takes exactly its minimum
    if n < 1:
        raise ValueError(v)
    return n


def _nodes(a: argparse.Namespace, shares: list[alloc.NodeShare]) -> list[alloc.NodeShare]:
    """The step's candidate nodes, in the job's order: ``-w`` first, without ``-x``."""
    names = [s.node for s in shares]
    chosen = list(shares)
    if a.nodelist:
        want = expand(a.nodelist)
        if bad := [w for w in want if w not in names]:
            raise SrunError(f"--nodelist: {compress(bad)} not in the job's allocation "
                            f"({compress(names)})")  # fmt: skip
        chosen = [s for s in shares if s.node in want] + [s for s in shares if s.node not in want]
    if a.exclude:
        out = set(expand(a.exclude))
        chosen = [s for s in chosen if s.node not in out]
    if not chosen:
        raise SrunError("no node of the allocation is left for the step")
    return chosen


def layout(a: argparse.Namespace, shares: list[alloc.NodeShare]) -> list[Task]:
    """The step's tasks: which node each rank runs on and which GPUs it sees."""
    chosen = _nodes(a, shares)
    n, nn, per = a.ntasks, a.nodes, a.ntasks_per_node
    if nn is None and a.nodelist and not a.exclude:
        nn = len(expand(a.nodelist))
    if n is None and nn is None and per is None:
        counts = [s.tasks for s in chosen]
    else:
        if n is None:
            n = (nn or len(chosen)) * (per or 1)
        nn = nn or (min(len(chosen), -(-n // per)) if per else min(n, len(chosen)))
        if nn > len(chosen):
            raise SrunError(f"--nodes={nn}: the step may use {len(chosen)} node(s) of the job")
        counts = [per] * nn if per and per * nn == n else alloc.block(n, nn)
    return _tasks(a, chosen, counts)


def _tasks(a: argparse.Namespace, chosen: list[alloc.NodeShare], counts: list[int]) -> list[Task]:
    cpt = a.cpus_per_task or float(os.environ.get("SLURM_CPUS_PER_TASK") or 1)
    gpt = a.gpus_per_task or int(os.environ.get("SLURM_GPUS_PER_TASK") or 0)
    tasks, rank = [], 0
    for nodeid, (share, k) in enumerate(zip(chosen, counts, strict=False)):
        if k * cpt > share.cpus + 1e-9:
            raise SrunError(f"Unable to create step: More processors requested than permitted "
                            f"({k} task(s) × {cpt:g} CPUs on {share.node}, which has "
                            f"{share.cpus:g})")  # fmt: skip
        if gpt and k * gpt > len(share.gpus):
            raise SrunError(f"Unable to create step: {k} task(s) × {gpt} GPUs on {share.node}, "
                            f"which has {len(share.gpus)}")  # fmt: skip
        for local in range(k):
            gpus = share.gpus[local * gpt : (local + 1) * gpt] if gpt else share.gpus
            tasks.append(Task(rank, local, nodeid, share, gpus))
            rank += 1
    return tasks


def _export(spec: str, env: dict[str, str]) -> dict[str, str]:
    items = [x for x in spec.split(",") if x]
    out = dict(env)
    if items and items[0].upper() in ("ALL", "NONE") and items.pop(0).upper() == "NONE":
        out = {k: v for k, v in env.items() if k.startswith(("SLURM_", "DETENTE_"))}
    for it in items:
        k, eq, val = it.partition("=")
        out[k] = val if eq else env.get(k, "")
    return out


def task_env(base: dict[str, str], tasks: list[Task], t: Task, step: int) -> dict[str, str]:
    """Slurm's step variables for task ``t`` over the job's own (exported) ones."""
    nodes = list(dict.fromkeys(x.share.node for x in tasks))
    counts = [sum(1 for x in tasks if x.share.node == n) for n in nodes]
    env = dict(base)
    env.update(
        SLURM_STEP_ID=str(step), SLURM_STEPID=str(step), SLURM_PROCID=str(t.rank),
        SLURM_LOCALID=str(t.local), SLURM_NODEID=str(t.nodeid), SLURMD_NODENAME=t.share.node,
        SLURM_STEP_NODELIST=compress(nodes), SLURM_NODELIST=compress(nodes),
        SLURM_STEP_NUM_NODES=str(len(nodes)), SLURM_NNODES=str(len(nodes)),
        SLURM_STEP_NUM_TASKS=str(len(tasks)), SLURM_NTASKS=str(len(tasks)),
        SLURM_NPROCS=str(len(tasks)), SLURM_STEP_TASKS_PER_NODE=alloc.tasks_per_node(counts),
        SLURM_TASKS_PER_NODE=alloc.tasks_per_node(counts), SLURM_TOPOLOGY_ADDR=t.share.node,
        CUDA_VISIBLE_DEVICES=",".join(map(str, t.gpus)), SLURM_STEP_GPUS=",".join(map(str, t.gpus)),
        SLURM_LAUNCH_NODE_IPADDR="127.0.0.1", SLURM_SRUN_COMM_HOST="127.0.0.1",
        # torch.distributed's env:// names for the same (a convenience Slurm lacks).
        RANK=str(t.rank), LOCAL_RANK=str(t.local), WORLD_SIZE=str(len(tasks)),
        LOCAL_WORLD_SIZE=str(counts[t.nodeid]), NODE_RANK=str(t.nodeid),
        GROUP_RANK=str(t.nodeid),
    )  # fmt: skip
    return env


class Channel:
    """This step's line to the batch pod (`detente.executors.steps`): its socket when
    the Python shim runs the pod, else the steps file the bash launcher names (ids
    taken under a lock); a no-op (step 0) where there is neither, as in a manifest's
    pod."""

    def __init__(self, name: str, nodes: str, ntasks: int) -> None:
        self.mine: socket.socket | None = None
        self.file = os.environ.get(STEPS_FILE) if STEP_FD not in os.environ else None
        self.step = 0
        rec = {"name": name, "nodes": nodes, "ntasks": ntasks}
        if self.file:
            self.step = self._append(lambda n: {"event": "start", "step": n, **rec,
                                                "start": time.time()})  # fmt: skip
            return
        try:
            shared = socket.socket(fileno=int(os.environ[STEP_FD]))
        except (KeyError, ValueError, OSError):
            return
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            socket.send_fds(shared, [json.dumps({"op": "start", **rec}).encode()],
                            [theirs.fileno()])  # fmt: skip
            self.step = int(json.loads(mine.recv(4096))["step"])
            self.mine = mine if self.step >= 0 else None
        except (OSError, ValueError, KeyError, TypeError):
            mine.close()
        finally:
            theirs.close()
            shared.detach()  # inherited: later steps use it too
        self.step = max(self.step, 0)

    def _append(self, record: Callable[[int], dict[str, object]]) -> int:
        """Appends ``record(step id)`` under the file's lock; the id is the number of
        steps started before (0 if the file cannot be used)."""
        assert self.file is not None
        try:
            with open(self.file, "a+") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                f.seek(0)
                n = sum(1 for ln in f if '"event": "start"' in ln)
                f.write(json.dumps(record(n)) + "\n")
                return n
        except OSError:
            self.file = None
            return 0

    def end(self, code: int) -> None:
        if self.file:
            state = "COMPLETED" if code == 0 else "FAILED"
            self._append(lambda _n: {"event": "end", "step": self.step, "end": time.time(),
                                     "exit_code": code, "state": state})  # fmt: skip
        if self.mine is not None:
            with contextlib.suppress(OSError):
                self.mine.send(json.dumps({"exit": code}).encode())
            self.mine.close()
