"""The schedules of the tasks: LR scaling, warm-up then cosine, and the decay of a time-capped run over its step budget."""

from __future__ import annotations

import pytest

from ssl_cyto.tasks import SimCLR
from tests.tasks.harness import TINY


def test_lr_schedule_warmup_then_cosine():
    task = SimCLR(**TINY, lr=0.4, warmup_steps=10, lr_scaling="linear", min_lr_ratio=0.1)

    class T:
        estimated_stepping_batches = 110
        world_size, accumulate_grad_batches, max_epochs, num_training_batches = 2, 1, 5, 22

    task.trainer = T()  # type: ignore[assignment]
    peak = 0.4 * (32 * 2) / 256
    assert task.lr_at(0, 32) == pytest.approx(peak / 10)
    assert task.lr_at(9, 32) == pytest.approx(peak)
    assert task.lr_at(60, 32) == pytest.approx(peak * (0.1 + 0.9 * 0.5))
    assert task.lr_at(110, 32) == pytest.approx(peak * 0.1)
    # warm-up in epochs follows the loader length (22 batches per epoch)
    task2 = SimCLR(**TINY, lr=0.4, warmup_epochs=0.5)
    task2.trainer = T()  # type: ignore[assignment]
    assert task2.lr_at(10, 32) == pytest.approx(peak)
    assert task2.lr_at(9, 32) == pytest.approx(peak * 10 / 11)


def test_time_capped_run_decays_over_its_step_budget():
    """A time-capped run decays over the step budget StepBudget fixed, never over wall time."""
    task = SimCLR(**TINY, lr=0.4, warmup_steps=10, lr_scaling="none", min_lr_ratio=0.0)

    class T:
        estimated_stepping_batches = float("inf")  # max_epochs huge, max_steps unset
        world_size, accumulate_grad_batches, max_epochs, num_training_batches = 1, 1, 1000, 20

    task.trainer = T()  # type: ignore[assignment]
    assert task.lr_at(500, 32) > 0.39  # no budget yet: 10**6-step horizon, still near the peak
    task.step_budget = 1010
    assert task.lr_at(510, 32) == pytest.approx(0.4 * 0.5)  # half the budget after warm-up
    assert task.lr_at(1010, 32) == pytest.approx(0.0, abs=1e-9)
    assert task.run_fraction(505) == pytest.approx(0.5)
