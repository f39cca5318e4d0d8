"""Multi-objective studies over the decoder design space, and the `decoder-nas` command line.

The Python API is `Search` (studies/api.py); every command is a thin layer over one of its methods:

    from studies import Search
    search = Search.create("my-study", storage="runs.journal", data="builtin:pydoc")
    search.run(trials=12)
    front = search.front()
"""

import importlib
from typing import Any

_MODULE_OF = {
    "DEFAULT_STUDY": "settings", "Export": "api", "FrontPoint": "api", "Promotion": "api", "Search": "api",
    "Deletion": "api", "delete_study": "api", "list_studies": "api", "StudyError": "errors", "DEFAULT_OBJECTIVES": "measures",
    "OBJECTIVES": "measures", "Objective": "measures", "Pruning": "settings", "StudySettings": "settings",
    "SearchSpace": "space", "load_space": "space", "DEFAULT_STORAGE": "storage.backends",
    "Takeaway": "export.model_export", "export_run": "export.model_export",
}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    """Names load on first use (PEP 562), so `decoder-nas --help` pays for none of them."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
