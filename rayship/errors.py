"""The user errors of Rayship: what a person can fix, as exception types of the project's own.

Everything raised as a `RayshipError` is a mistake or a condition outside the code (a bad
manifest, a missing version, an unreachable cluster) and its message says what to fix, so the
CLI prints it in one line and the operator turns it into a status reason. Anything else is a
bug and keeps its traceback: no `except ValueError` stands between a bug and its stack.

The storage errors (`rayship.storage.errors`) and `ManifestError` (`rayship.manifest`) subclass
these; the operator maps each type to the condition reason users read.
"""

from __future__ import annotations


class RayshipError(Exception):
    """A user-facing error; the message names the object or field at fault and what to do."""


class InvalidSpec(RayshipError):
    """A ModelDeployment, or one of its fields (a URI, a version name), is not valid."""


class CredentialsError(RayshipError):
    """A referenced Secret is missing or lacks a key; the message names it, never a value."""


class ClusterUnreachable(RayshipError):
    """A Ray cluster's dashboard refused a call or could not be reached."""


class PortInUse(RayshipError):
    """A port `rayship serve` was told to listen on is taken (or not this host's)."""


class MissingDependency(RayshipError):
    """An optional part of Rayship is not installed; the message names the extra to install."""
