"""The `decoder-nas` command line: parsing, the command table, tables, progress and the live view.

A thin layer over the Python API (`studies.Search`): nothing in the core imports this package.
"""

from .main import main

__all__ = ["main"]
