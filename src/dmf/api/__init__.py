"""The function front door (``dmf.fit``) and model selection (cross-validation, grid search)."""

from dmf.api._fit import METHODS, fit
from dmf.api._search import cross_validate, grid_search

__all__ = ["METHODS", "cross_validate", "fit", "grid_search"]
