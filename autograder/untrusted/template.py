"""The template: a process that has imported torch once and forks a fresh worker per request.

Started by autograder/isolation/template_client.py inside the same bubblewrap sandbox as a
classic worker, as
    python -I -S template.py CONTROL_FD SETUP_JSON
where SETUP_JSON holds what this side of the sandbox cannot import from the grader:
{"tmpfs_bytes": size of a worker's private /tmp, "public_dir": ..., "site_dirs": [...],
 "kept_under_tmp": [folders bound under /tmp], "own_user_namespace": bool}.
It imports only what every worker imports (torch, numpy, the public course and check
modules, pyplot, `wire`, the worker's `Server`), warms up Adam, and never receives anything of a submission: only
the three file descriptors of a new worker (its request and reply pipes and its output)
and its resource limits. So a forked worker finds in its memory what a fresh one would.

Each worker is forked twice. The first child (the keeper) moves into new mount, PID,
network, IPC and UTS namespaces; its own child is PID 1 there: it mounts private tmpfs
folders over /tmp (binding again on it the folders the sandbox bound under /tmp: a checkout
or a Python installed there) and /dev/shm, its own /proc (the template's would show the
template; an empty tmpfs where the kernel refuses), sets the limits, drops every capability
(bounding set included) and serves the grader like a classic worker. The keeper waits for it
and exits with its status (signal N as 128 + N, like bubblewrap); if the keeper dies the
worker dies (parent-death signal), and with PID 1 every process it started.

Making those namespaces takes CAP_SYS_ADMIN in the user namespace that owns them. Under a
root grader the template runs as the real uid 65534 with no capability at all, so the
keeper first makes a user namespace of its own (`own_user_namespace`). Under an
unprivileged grader the template runs in bubblewrap's user namespace, which forbids new
ones (--disable-userns), and bubblewrap lets it keep CAP_SYS_ADMIN and CAP_SETPCAP there
(--cap-add): enough to make the worker's namespaces and drop the bounding set, nothing
outside that user namespace, and not the mounts bubblewrap made (they belong to its outer
user namespace). The worker gives them all up before it serves.

Control messages are JSON over a SOCK_SEQPACKET socket; the grader sends
{"op": "fork", "id": N, "limits": {...}} with the three descriptors attached, and
{"op": "kill", "id": N}; the template answers {"ready": ...} once, then {"forked": N} and
{"exited": N, "status": S}.
"""
import ctypes
import json
import os
import resource
import select
import signal
import socket
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE = 0x2, 0x4, 0x8, 0x4000, 0x40000
MS_BIND = 0x1000
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_READ, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 4, 23, 24, 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
WORKDIR = "/tmp/work"  # the worker's home, temporary and current folder, on its private /tmp
SHM_AND_PROC = {"/dev/shm": "size=64m,mode=1777", "/proc": "size=4k,mode=555"}  # tmpfs options
LIMITS = {"memory_bytes": resource.RLIMIT_AS, "cpu_seconds": resource.RLIMIT_CPU, "file_bytes": resource.RLIMIT_FSIZE,
          "open_files": resource.RLIMIT_NOFILE, "processes": resource.RLIMIT_NPROC, "core_bytes": resource.RLIMIT_CORE}
SETUP_FAILED = 121  # the worker's exit status when its namespaces or limits could not be set up

libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as stream:
        stream.write(text)


def _mount_tmpfs(target: str, options: str) -> None:
    if os.path.isdir(target):
        _check(libc.mount(b"tmpfs", target.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, options.encode()), f"tmpfs on {target}")


def _drop_capabilities() -> None:
    """Empty bounding set (those it holds, which takes CAP_SETPCAP), then capset(2) with empty
    sets: the worker keeps no capability, even in its own namespace, and can gain none."""
    for capability in range(64):
        if libc.prctl(PR_CAPBSET_READ, capability, 0, 0, 0) == 1:
            _check(libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0), "bounding set")
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()
    _check(libc.capset(header, data), "capset")
    _check(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def enter_namespaces(own_user_namespace: bool) -> None:
    """In the keeper: new namespaces; in a user namespace of its own (mapping our unprivileged
    uid and gid to themselves) where the template holds no capability to make them."""
    namespaces = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS
    if not own_user_namespace:
        _check(libc.unshare(namespaces), "unshare")
        return
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | namespaces), "unshare")
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid} {uid} 1")
    _write("/proc/self/gid_map", f"{gid} {gid} 1")


def _private_tmp(tmpfs_bytes: int, kept: list[str]) -> None:
    """A fresh tmpfs over /tmp, with the folders in `kept` (bound under the old /tmp) bound
    again at their paths on it, read-only as they were (their mounts are locked)."""
    held = [os.open(path, os.O_PATH | os.O_DIRECTORY) for path in kept]  # still reachable once hidden
    _mount_tmpfs("/tmp", f"size={tmpfs_bytes},mode=1777")
    for path, fd in zip(kept, held):
        os.makedirs(path, 0o755, exist_ok=True)
        _check(libc.mount(f"/proc/self/fd/{fd}".encode(), path.encode(), None, MS_BIND | MS_REC, None), f"bind {path}")
        os.close(fd)


def become_worker(limits: dict, setup: dict) -> None:
    """In PID 1 of the new namespaces: private folders, limits, no capabilities."""
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "private mounts")
    _private_tmp(setup["tmpfs_bytes"], setup["kept_under_tmp"])  # while /proc is the template's
    for target, options in SHM_AND_PROC.items():
        if target == "/proc" and libc.mount(b"proc", b"/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None) == 0:
            continue  # its own PID namespace's /proc; where the kernel refuses it, an empty one
        _mount_tmpfs(target, options)
    os.mkdir(WORKDIR, 0o700)
    os.chdir(WORKDIR)
    for name, value in limits.items():
        resource.setrlimit(LIMITS[name], (value, value))
    _drop_capabilities()


def _keeper(request_fd: int, reply_fd: int, output_fd: int, limits: dict, setup: dict, serve) -> None:
    """The first child: set up, fork the worker, wait for it, exit with its status."""
    try:
        signal.set_wakeup_fd(-1)  # the template's way of hearing of its children: not the worker's
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # else /proc/self/uid_map belongs to root
        os.setsid()
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        keep = {0, 1, 2, request_fd, reply_fd}
        for fd in os.listdir("/proc/self/fd"):
            if int(fd) not in keep:
                try:
                    os.close(int(fd))
                except OSError:
                    pass
        enter_namespaces(setup["own_user_namespace"])
        worker = os.fork()
    except BaseException as error:  # noqa: BLE001 - say why, and tell the grader by the status
        os.write(2, f"the worker could not be set up: {error}\n".encode())
        os._exit(SETUP_FAILED)
    if worker == 0:
        try:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            become_worker(limits, setup)
        except BaseException as error:  # noqa: BLE001
            os.write(2, f"the worker could not be set up: {error}\n".encode())
            os._exit(SETUP_FAILED)
        try:
            serve(request_fd, reply_fd)
        finally:
            os._exit(0)
    for fd in (request_fd, reply_fd):
        os.close(fd)
    _, status = os.waitpid(worker, 0)
    os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))


class ForkServer:
    """The template's loop: forks a worker per request, kills and reaps them."""

    def __init__(self, control: socket.socket, setup: dict, serve):
        self.control, self.setup, self.serve = control, setup, serve
        self.children: dict[int, int] = {}  # keeper pid -> request id

    def send(self, message: dict) -> None:
        self.control.send(json.dumps(message).encode())

    def fork(self, request: dict, fds: list[int]) -> None:
        request_fd, reply_fd, output_fd = fds
        limits = {k: int(v) for k, v in request["limits"].items() if k in LIMITS}
        pid = os.fork()
        if pid == 0:
            self.control.close()
            _keeper(request_fd, reply_fd, output_fd, limits, self.setup, self.serve)
        for fd in fds:
            os.close(fd)
        self.children[pid] = request["id"]
        self.send({"forked": request["id"]})

    def kill(self, request: dict) -> None:
        for pid, child in self.children.items():
            if child == request["id"]:
                os.kill(pid, signal.SIGKILL)

    def reap(self) -> None:
        while self.children:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid == 0:
                return
            child = self.children.pop(pid, None)
            if child is not None:
                code = 128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                self.send({"exited": child, "status": code})

    def run(self) -> None:
        wakeup_read, wakeup_write = os.pipe()
        os.set_blocking(wakeup_write, False)
        signal.set_wakeup_fd(wakeup_write)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        while True:
            ready, _, _ = select.select([self.control, wakeup_read], [], [])
            if wakeup_read in ready:
                os.read(wakeup_read, 4096)
                self.reap()
            if self.control in ready:
                data, fds, _, _ = socket.recv_fds(self.control, 65536, 3)
                if not data:
                    return  # the grader is gone
                request = json.loads(data)
                if request["op"] == "fork" and len(fds) == 3:
                    self.fork(request, fds)
                elif request["op"] == "kill":
                    self.kill(request)
                else:
                    for fd in fds:
                        os.close(fd)
            self.reap()


def main() -> None:
    control = socket.socket(fileno=int(sys.argv[1]))
    here = __file__.rsplit("/", 1)[0]
    setup = json.loads(sys.argv[2])
    sys.path[:0] = [here, setup["public_dir"], *setup["site_dirs"]]
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # its workers cannot read or write its memory
    import worker

    libraries = worker.load_libraries()
    worker.preload()
    worker.warm_up(libraries)
    template = ForkServer(control, setup, lambda request_fd, reply_fd: worker.serve(request_fd, reply_fd, libraries))
    template.send({"ready": True})
    template.run()


if __name__ == "__main__":
    main()
