"""Import a user's `module:Class`, looking in the model's version folder first.

A version folder may ship its own code (`net.py` beside a state_dict, `predictor.py` for the
python runtime), and two versions of one model usually ship modules of the same name. So that
each version gets its own code even when several share a process (tests, local mode), the
folder is on `sys.path` only during the import, and the modules loaded from it leave
`sys.modules` again afterwards: the class keeps them alive, the next version imports its own.
Consequence for users: import sibling modules at the top of the module, not inside functions.
Not thread-safe (it edits `sys.path`): a process loads its runtimes one at a time.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

from rayship_predictors.runtimes.errors import RuntimeLoadError, describe


def import_class(target: str, folder: Path, what: str) -> type:
    """The class `target` ("module:Class") names, from `folder` first, else installed packages.

    `what` starts every error message, e.g. "pytorch: model class".
    """
    module_name, colon, class_name = target.partition(":")
    if not (module_name and colon and class_name):
        raise RuntimeLoadError(f"{what} {target!r} must look like 'module:Class'")
    try:
        with _folder_first(folder, module_name.partition(".")[0]):
            module = importlib.import_module(module_name)
    except Exception as exc:
        raise RuntimeLoadError(
            f"{what} {target!r} not importable from {folder}: {describe(exc)}"
        ) from exc
    found = getattr(module, class_name, None)
    where = f"module {module_name!r} ({module.__file__})"
    if found is None:
        raise RuntimeLoadError(f"{what} {target!r} not found: {where} has no {class_name!r}")
    if not isinstance(found, type):
        raise RuntimeLoadError(f"{what} {target!r} is not a class in {where}")
    return found


@contextmanager
def _folder_first(folder: Path, top_level: str) -> Iterator[None]:
    """Put `folder` first on `sys.path` for an import, then leave the interpreter as it was.

    A module of the same top-level name already imported from elsewhere is set aside while the
    folder's copy is imported, then restored.
    """
    folder = folder.resolve()
    set_aside: dict[str, ModuleType] = {}
    if (folder / f"{top_level}.py").is_file() or (folder / top_level).is_dir():
        for name in [n for n in sys.modules if n == top_level or n.startswith(f"{top_level}.")]:
            set_aside[name] = sys.modules.pop(name)
    before = set(sys.modules)
    entry = str(folder)
    sys.path.insert(0, entry)
    importlib.invalidate_caches()  # the folder may be new, or rewritten since a last import
    try:
        yield
    finally:
        sys.path.remove(entry)
        for name in set(sys.modules) - before:
            if _loaded_from(sys.modules[name], folder):
                del sys.modules[name]
        sys.modules.update(set_aside)


def _loaded_from(module: ModuleType, folder: Path) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve().is_relative_to(folder)
