"""Schema versions of what nudge writes to disk, and the library versions it was written with.

A reader migrates an older schema and refuses a newer one with a message naming both versions (and, where
known, the libraries the artifact was written with), rather than failing somewhere deep inside unpickling.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable, Mapping
from functools import cache
from importlib.metadata import PackageNotFoundError, version

from engine.errors import NudgeError

# The libraries whose objects a checkpoint or a model artifact may pickle, or whose behaviour shaped it.
LIBRARIES = ("nudge", "pandas", "numpy", "pydantic", "sqlalchemy", "scikit-learn", "scipy", "lifetimes", "implicit",
             "cloudpickle")


def library_versions(names: Iterable[str] = LIBRARIES) -> dict[str, str]:
    """Python's version and each installed library's ({name: version}; libraries not installed are left out)."""
    return dict(_installed(tuple(names)))


@cache
def _installed(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    # Read once per process: the package metadata costs ~7 ms a call, and every checkpoint records it.
    found = [("python", platform.python_version())]
    for name in names:
        try:
            found.append((name, version(name)))
        except PackageNotFoundError:
            continue
    return tuple(found)


def check_schema(what: str, found: int, supported: int, libraries: Mapping[str, str] | None = None) -> None:
    """Raise `NudgeError` when `what` was written with a schema newer than this code reads."""
    if found > supported:
        written = f" (written with {_describe(libraries)})" if libraries else ""
        raise NudgeError(f"{what} has schema version {found}{written}; this nudge reads schema {supported} "
                         "and older: upgrade nudge to read it")


def _describe(libraries: Mapping[str, str]) -> str:
    return ", ".join(f"{name} {ver}" for name, ver in libraries.items())
