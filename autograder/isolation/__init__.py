"""How student code is contained, in one place (docs/isolation.md: the trust model).

- `limits.py`: the one table of a worker's limits (`Limits`: time budgets; the rlimits and
  the size of its private folders), shared by both ways of starting a worker. Imports nothing.
- `sandbox.py`: detects, once per process, which isolation this machine gives (bubblewrap or
  process limits only), and builds bubblewrap's command line. Each grading process detects
  once and passes the `Isolation` down.
- `process.py`: a worker started the classic way: a fresh sandboxed Python with the worker's
  environment and rlimits (also the nbgrader kernel's runner).
- `template_client.py`: the grader's side of the template (`untrusted/template.py`), the
  sandboxed process that forks each worker in milliseconds.

The talking to a worker (requests, replies, kill) is `worker_client.py`; the code that runs
inside the sandbox is `untrusted/`, which never imports this package: what it needs from it
(a size, a limit) is passed to it on its command line or in its messages.
"""
