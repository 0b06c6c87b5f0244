"""CPU time of a process and of everything it started, read from Linux's /proc.

The model check compares a student's training time per step with the reference's (a run
that computes far more per step than it says is flagged). Wall time would miss a submission
that trains on threads or processes of its own beside the grader's loop; the CPU time of
the worker's whole process tree counts them: every thread of a live process, and the time
of the children each has reaped. Elsewhere than Linux the answer is None.
"""
from __future__ import annotations

import os

Tree = dict[int, tuple[int, int]]  # pid -> (parent pid, clock ticks of it and of its reaped children)


def processes() -> Tree | None:
    """Every process's parent and CPU ticks, or None without /proc."""
    try:
        entries = [entry.name for entry in os.scandir("/proc") if entry.name.isdigit()]
    except OSError:
        return None
    found: Tree = {}
    for pid in entries:
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # After the name: state, ppid, ..., utime, stime, cutime, cstime (stat fields 14-17).
        found[int(pid)] = (int(fields[1]), sum(int(value) for value in fields[11:15]))
    return found


def descendants(tree: Tree, root: int) -> list[int]:
    """`root` and every process under it."""
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in tree.items():
        children.setdefault(parent, []).append(pid)
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def tree_seconds(root: int) -> float | None:
    """CPU seconds used so far by `root` and every process under it (None without /proc)."""
    tree = processes()
    if tree is None or root not in tree:
        return None
    return sum(tree[pid][1] for pid in descendants(tree, root)) / os.sysconf("SC_CLK_TCK")


def holder_of_pipe(root: int, fd: int) -> int | None:
    """The topmost process under `root` that holds the other end of our pipe `fd`: how a
    worker forked by a template (whose pid the template does not tell) is found."""
    tree = processes()
    if tree is None:
        return None
    link = f"pipe:[{os.fstat(fd).st_ino}]"
    holders = set()
    for pid in descendants(tree, root):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{name}") == link for name in os.listdir(f"/proc/{pid}/fd")):
                holders.add(pid)
        except OSError:
            continue
    topmost = [pid for pid in holders if tree[pid][0] not in holders]
    return topmost[0] if len(topmost) == 1 else None
