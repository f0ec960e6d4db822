"""The model protocol that evaluation, serving and the store rely on, and the kind registry."""

from dmf.core._protocol import COLD_START, FittedModel
from dmf.core._registry import kinds, model_class, register

__all__ = ["COLD_START", "FittedModel", "kinds", "model_class", "register"]
