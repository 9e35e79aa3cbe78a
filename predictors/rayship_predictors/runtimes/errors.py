"""How a runtime says a version folder cannot be loaded.

Every runtime raises `RuntimeLoadError`, and `loader` is the only module that imports the
runtimes, so this lives apart from both: the runtimes import it without importing the loader.
"""

from __future__ import annotations


class RuntimeLoadError(Exception):
    """A version folder could not be loaded; the message is meant for the model's owner."""


def describe(exc: BaseException) -> str:
    """One line about a foreign exception for a `RuntimeLoadError` message.

    Import errors already read as sentences ("No module named 'net'"); anything else keeps its
    type, since "KeyError: 'fc.weight'" says more than "'fc.weight'".
    """
    if isinstance(exc, ImportError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
