"""Answers from a fitted model: top-k recommendations, similar items and users, fold-in."""

from dmf.serving._foldin import fold_in, user_step
from dmf.serving._history import recommend_new
from dmf.serving._recommend import recommend, recommend_all, similar_items
from dmf.serving._users import recommend_users, similar

__all__ = [
    "fold_in",
    "recommend",
    "recommend_all",
    "recommend_new",
    "recommend_users",
    "similar",
    "similar_items",
    "user_step",
]
