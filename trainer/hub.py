"""Fail in seconds, not minutes, when the Hugging Face hub cannot answer.

Without a network the hub clients retry for 30-90 s and then print a page of warnings. So before a
hub download we ask two cheap questions: is offline mode on (then the clients read only the local
cache, which answers quickly), and else does the hub's host (or the proxy in the way) accept a
connection within a few seconds?
"""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request
from pathlib import Path

from huggingface_hub import constants

PROBE_SECONDS = 3.0
_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """HF_HUB_OFFLINE set now, or when huggingface_hub was imported (it reads the variable once)."""
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_reachable(timeout: float = PROBE_SECONDS) -> bool:
    """Whether a TCP connection to the hub's endpoint, or to the HTTPS proxy, opens within `timeout`."""
    url = urllib.parse.urlparse(urllib.request.getproxies().get("https") or constants.ENDPOINT)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname, port), timeout=timeout):
            return True
    except OSError:  # refused, unresolvable host, or timed out
        return False


def require_hub(repo: str, what: str, error: type[Exception]) -> None:
    """Raise `error` (its message starting with `what`) at once when fetching `repo` from the hub could
    only end in minutes of retries.

    A local folder needs no hub; in offline mode the hub clients read the local cache and report a
    miss quickly themselves.
    """
    if not Path(repo).exists() and not hub_offline() and not hub_reachable():
        raise error(f"{what}: the Hugging Face hub cannot be reached (offline?); "
                    "to use a copy cached earlier, set HF_HUB_OFFLINE=1")
