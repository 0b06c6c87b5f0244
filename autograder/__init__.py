"""The grader: hidden tests, the worker that runs student code, and the command line."""
import sys

# nbformat validates notebooks with jsonschema, whose format checkers import rfc3987_syntax
# where it is installed (Jupyter's dependencies install it). That module builds about 35 Lark
# parsers when imported: 1.5 s of every grading process (the command, each pool process, each
# Dask worker), for the "iri" formats that no notebook schema uses (python-jsonschema/jsonschema
# #1428, opendatahub-io/notebooks #3532). So a process that imports the grader goes without it,
# unless it was imported before; jsonschema then skips just those two format checks.
sys.modules.setdefault("rfc3987_syntax", None)
