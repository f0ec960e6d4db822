"""Model kinds by name: classes register themselves, the store looks them up.

A leaf module (as zarr's codec registry): the store and the front door find
model classes here instead of importing one another.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["kinds", "model_class", "register"]

_KINDS: dict[str, type] = {}

#: The package whose import registers dmf's own model kinds.
_BUILTIN = "dmf.models"


def register(kind: str, cls: type) -> None:
    """Record ``cls`` as the class of models of ``kind`` (the last definition wins)."""
    _KINDS[kind] = cls


def model_class(kind: str) -> type | None:
    """The class registered for ``kind``, or ``None`` when no class has that kind."""
    if kind not in _KINDS:
        importlib.import_module(_BUILTIN)  # a plugin import, as entry points are loaded
    return _KINDS.get(kind)


def kinds() -> dict[str, Any]:
    """Every registered kind and its class."""
    importlib.import_module(_BUILTIN)
    return dict(_KINDS)
