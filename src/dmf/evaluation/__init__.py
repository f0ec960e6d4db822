"""How good a fitted model is: error and ranking metrics as blocked reductions."""

from dmf.evaluation._metrics import evaluate, to_ratings

__all__ = ["evaluate", "to_ratings"]
