"""The demo's time budget (ssl_cyto.demo.budget): the timed forward pass, the estimate of the stages after
pretraining against the measured 10-minute demo (results/pbc/demo_budget.md), and pretraining's share,
replayed on a fake clock."""

from __future__ import annotations

import itertools

import pytest

from ssl_cyto.demo.budget import (
    MARGIN_S,
    TIMED_BATCH,
    estimate_post_training_seconds,
    forward_seconds_per_cell,
    max_time,
    pretrain_seconds,
)

# results/pbc/demo_budget.md: 4,800 cells; scan + pack 17.1 s; after pretraining: learning curve + export
# 0.6, embed 6.6, index 0.0, probe 15.5, query 1.3, umap 29.9 (53.9 s); pretraining used 95 % of its budget.
N_CELLS = 4800
BEFORE_S = 17.1
AFTER_S = 0.6 + 6.6 + 0.0 + 15.5 + 1.3 + 29.9
FWD_S = 6.6 / N_CELLS  # one embedding pass per cell, as measured


def test_forward_pass_is_timed_on_the_clock_given() -> None:
    ticks = itertools.chain([0.0, 5.12, 10.0, 12.56], itertools.repeat(99.0))  # batches of 5.12 s and 2.56 s
    sec = forward_seconds_per_cell("tiny_cnn", {"width": 4, "depth": 2}, 32, clock=lambda: next(ticks))
    assert sec == pytest.approx(2.56 / TIMED_BATCH)  # the faster batch


def _demo_seconds(minutes: float, after_scale: float) -> tuple[float, float]:
    """(demo end, pretraining budget) of the measured demo replayed on a fake clock, its stages after
    pretraining ``after_scale`` times as slow (the forward pass measured as much slower too)."""
    clock = BEFORE_S
    post = estimate_post_training_seconds(N_CELLS, FWD_S * after_scale)
    budget = pretrain_seconds(minutes, clock, post, minimum=60.0)
    clock += 0.95 * budget  # the step budget's use of its share, as measured
    clock += AFTER_S * after_scale
    return clock, budget


def test_the_measured_demo_ends_before_its_minutes_without_wasting_them() -> None:
    end, budget = _demo_seconds(10, 1.0)
    assert end <= 600.0
    assert end >= 600.0 - 60.0  # before: 451 s, 149 s early (an estimate of 182 s for 54 s of work)
    assert budget > 401.0 + 60.0  # pretraining gets the time the old estimate held back


def test_a_slower_machine_still_ends_in_time() -> None:
    end, _ = _demo_seconds(10, 1.5)  # every stage after pretraining 1.5 x slower, and measured so
    assert end <= 600.0


def test_estimate_is_conservative_but_not_doubled() -> None:
    post = estimate_post_training_seconds(N_CELLS, FWD_S)
    assert AFTER_S < post < 1.6 * AFTER_S
    assert estimate_post_training_seconds(0, FWD_S) > MARGIN_S  # fixed costs even for no cells
    assert estimate_post_training_seconds(2 * N_CELLS, FWD_S) > post  # grows with the cells
    assert estimate_post_training_seconds(N_CELLS, 2 * FWD_S) > post  # and with the forward pass


def test_pretrain_share_and_max_time() -> None:
    assert pretrain_seconds(10, 20.0, 80.0, minimum=60.0) == 500.0
    assert pretrain_seconds(1, 20.0, 80.0, minimum=60.0) == 60.0  # at least the minimum
    assert max_time(3725.9) == "00:01:02:05"
