"""Answers from a fitted model: top-k recommendations, similar items, fold-in of new users."""

from dmf.serving._foldin import fold_in
from dmf.serving._recommend import recommend, recommend_all, similar_items

__all__ = ["fold_in", "recommend", "recommend_all", "similar_items"]
