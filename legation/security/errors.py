"""The CA's exception: I/O and key-material problems, never user mesh config.

`CAError` carries a one-line message that names the file (or setting) at
fault, so `legation serve` can print it and exit.
"""

from __future__ import annotations


class CAError(Exception):
    """The CA cannot load, create, persist or use its key material."""
