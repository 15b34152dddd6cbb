"""Memoizing pure functions that hot loops call with repeating arguments.

A rebuild of a projection asks for the same few hundred instants and days millions of times (the
bookings of a location share its grid). The cache's size is an engineering choice, not a rule, so it
lives here rather than in the domain modules whose rules the mutation tests pin down.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

R = TypeVar("R")

CACHE_ENTRIES = 65536  # per function: a year of 5-minute starts at a dozen locations fits


def memoized(function: Callable[..., R]) -> Callable[..., R]:
    """`function` with a bounded LRU cache of its answers (`CACHE_ENTRIES` entries); the arguments
    must be hashable and the function pure."""
    return lru_cache(maxsize=CACHE_ENTRIES)(function)
