"""The estimators: each model kind states its per-block work; the training loop runs it."""

from dmf.models._als import ALS
from dmf.models._baseline import Baseline
from dmf.models._blend import Blend, blend
from dmf.models._popular import Popular
from dmf.models._rank_blend import RankBlend
from dmf.models._recommender import Recommender
from dmf.models.sgd import BPR, SGD

__all__ = [
    "ALS",
    "BPR",
    "SGD",
    "Baseline",
    "Blend",
    "Popular",
    "RankBlend",
    "Recommender",
    "blend",
]
