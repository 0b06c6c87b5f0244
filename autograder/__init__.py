"""The grader: hidden tests, the worker that runs student code, and the command line."""
