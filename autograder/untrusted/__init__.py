"""Code that runs in the worker process next to student code: it must never import the
reference, the hidden tests or anything else from the trusted side."""
