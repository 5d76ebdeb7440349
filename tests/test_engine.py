"""The engine's decisions, with a fixed clock and fixed random draws: no server, no sleeping."""

from __future__ import annotations

import collections
import math
from typing import Any

import pytest

from django_fence.conf import FenceOptions, parse_options
from django_fence.envelope import Envelope, Step, decide
from django_fence.store import MISSING

OPTS = FenceOptions(beta=1.0, lock_timeout=10, wait_timeout=5, grace=60)


def envelope(soft_expiry: float, delta: float = 1.0) -> Envelope:
    return Envelope("v", soft_expiry, delta, stored_at=0.0)


def test_decide_miss_when_nothing_is_stored() -> None:
    assert decide(MISSING, 100.0, OPTS, 0.5) is Step.MISS


def test_decide_hit_for_plain_values() -> None:
    assert decide("plain", 100.0, OPTS, 1e-9) is Step.HIT
    assert decide(None, 100.0, OPTS, 1e-9) is Step.HIT  # a stored None is a value


def test_decide_hit_far_from_expiry() -> None:
    assert decide(envelope(1000.0), 100.0, OPTS, 1e-9) is Step.HIT  # -ln(1e-9) * 1 = 20.7 < 900


@pytest.mark.parametrize(("gap", "delta", "beta"), [(1.0, 1.0, 1.0), (2.0, 0.5, 1.0), (3.0, 1.0, 2.0)])
def test_decide_xfetch_boundary(gap: float, delta: float, beta: float) -> None:
    """XFetch refreshes early iff -delta * beta * ln(draw) >= gap, i.e. draw <= exp(-gap / (delta * beta))."""
    opts = FenceOptions(beta=beta)
    boundary = math.exp(-gap / (delta * beta))
    entry = envelope(100.0 + gap, delta)
    assert decide(entry, 100.0, opts, boundary * 0.999) is Step.EARLY
    assert decide(entry, 100.0, opts, min(1.0, boundary * 1.001)) is Step.HIT


def test_decide_never_early_with_beta_zero_or_no_measured_delta() -> None:
    assert decide(envelope(100.5), 100.0, FenceOptions(beta=0.0), 1e-12) is Step.HIT
    assert decide(envelope(100.5, delta=0.0), 100.0, OPTS, 1e-12) is Step.HIT


def test_decide_stale_inside_the_grace_window() -> None:
    assert decide(envelope(100.0), 100.0, OPTS, 0.5) is Step.STALE
    assert decide(envelope(100.0), 159.9, OPTS, 0.5) is Step.STALE


def test_decide_miss_past_the_grace_window_or_with_grace_zero() -> None:
    assert decide(envelope(100.0), 160.0, OPTS, 0.5) is Step.MISS
    assert decide(envelope(100.0), 100.0, FenceOptions(grace=0.0), 0.5) is Step.MISS


def test_decide_forever_values_never_expire() -> None:
    assert decide(envelope(math.inf, delta=100.0), 1e12, OPTS, 1e-12) is Step.HIT


def test_xfetch_early_rate_matches_the_paper() -> None:
    """Over uniform draws, the share of early refreshes is exp(-gap / (delta * beta))."""
    entry = envelope(101.0, delta=1.0)
    draws = [(i + 0.5) / 10000 for i in range(10000)]
    early = sum(decide(entry, 100.0, OPTS, d) is Step.EARLY for d in draws) / len(draws)
    assert early == pytest.approx(math.exp(-1.0), abs=0.001)


def test_parse_options_defaults_and_values() -> None:
    options, problems = parse_options({"BETA": 2, "GRACE": 0, "CHECK_INTERVAL": 0.01})
    assert problems == []
    assert options == FenceOptions(beta=2.0, grace=0.0, check_interval=0.01)
    assert parse_options({}) == (FenceOptions(), [])


@pytest.mark.parametrize("jitter", [0.0, 0.1])
def test_jitter_spreads_the_soft_expiry_of_keys_written_together(settings: Any, jitter: float) -> None:
    from django.core.cache import caches

    settings.CACHES = {
        "backing": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": f"jitter-{jitter}",
                    "OPTIONS": {"MAX_ENTRIES": 5000}},
        "default": {"BACKEND": "django_fence.backends.FencedCache", "LOCATION": "backing",
                    "OPTIONS": {"JITTER": jitter, "BETA": 0}},
    }
    cache = caches["default"]
    for index in range(1000):
        cache.get_or_set(f"k{index}", index, 100)
    entries = [caches["backing"].get(f"k{index}") for index in range(1000)]
    assert all(type(e) is Envelope for e in entries)
    lifetimes = [e.soft_expiry - e.stored_at for e in entries]
    assert min(lifetimes) >= 100 * (1 - jitter) - 1e-6 and max(lifetimes) <= 100 * (1 + jitter) + 1e-6
    per_second = collections.Counter(int(e.soft_expiry) for e in entries)
    if jitter:
        assert max(per_second.values()) < 150  # uniform over 20 s: about 50 a second
        assert max(lifetimes) - min(lifetimes) > 15
    else:
        assert max(lifetimes) - min(lifetimes) < 1e-6
