"""Run a benchmark's child process from another checkout of decoder-nas, to compare before and after
side by side: `python -c PREAMBLE.format(tree=...) + code` imports that tree's packages instead of
the installed (editable) ones; an empty tree leaves the installed ones."""

PREAMBLE = """
import sys
if {tree!r}:
    sys.meta_path[:] = [f for f in sys.meta_path if "Editable" not in getattr(f, "__name__", "")]
    sys.path.insert(0, {tree!r})
"""
