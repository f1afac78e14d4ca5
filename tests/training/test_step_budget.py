"""StepBudget: a ``max_time`` run gets one step budget, decided after the probe steps on rank 0,
broadcast, applied to the task's schedules and the trainer's ``max_steps``, and kept in the checkpoint."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pytorch_lightning.callbacks import Timer

from ssl_cyto.training.callbacks import step_budget as sb
from ssl_cyto.training.callbacks.step_budget import StepBudget


class FakeTimer(Timer):
    def __init__(self, left: float) -> None:
        super().__init__(duration={"seconds": 100})
        self.left = left

    def time_remaining(self, stage: str = "train") -> float:  # type: ignore[override]
        return self.left


def _trainer(rank0: bool, broadcast_value: int | None = None, max_steps: int = -1) -> SimpleNamespace:
    epoch_loop = SimpleNamespace(max_steps=max_steps)
    strategy = SimpleNamespace(broadcast=lambda v, src=0: v if broadcast_value is None else broadcast_value)
    return SimpleNamespace(
        callbacks=[FakeTimer(left=60.0)],
        global_step=0,
        is_global_zero=rank0,
        strategy=strategy,
        fit_loop=SimpleNamespace(epoch_loop=epoch_loop),
        num_training_batches=10,
        accumulate_grad_batches=1,
        max_steps=max_steps,
    )


def _drive(cb: StepBudget, trainer: SimpleNamespace, module: SimpleNamespace, clock: list[float]) -> None:
    for step in range(1, 6):
        trainer.global_step = step
        clock[0] += 0.5  # 0.5 s per step
        cb.on_train_batch_end(trainer, module, None, None, step - 1)  # type: ignore[arg-type]


def test_budget_is_decided_once_broadcast_and_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(sb.time, "monotonic", lambda: clock[0])
    cb, trainer, module = (
        StepBudget(probe_steps=3, safety=0.5),
        _trainer(True),
        SimpleNamespace(step_budget=None),
    )
    _drive(cb, trainer, module, clock)
    # decided at step 4 (3 steps after the first): 4 + 0.5 * 60 s / 0.5 s = 64
    assert cb.budget == 64 and module.step_budget == 64 and trainer.fit_loop.epoch_loop.max_steps == 64
    # another rank takes rank 0's value whatever its own clock says
    other, module1 = StepBudget(probe_steps=3), SimpleNamespace(step_budget=None)
    _drive(other, _trainer(False, broadcast_value=64), module1, clock)
    assert other.budget == 64 and module1.step_budget == 64
    # resumed: the budget comes from the checkpoint and is applied at train start
    again, module2, trainer2 = StepBudget(), SimpleNamespace(step_budget=None), _trainer(True)
    again.load_state_dict(cb.state_dict())
    again.on_train_start(trainer2, module2)  # type: ignore[arg-type]
    assert module2.step_budget == 64 and trainer2.fit_loop.epoch_loop.max_steps == 64


def test_max_steps_caps_the_budget_and_no_timer_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(sb.time, "monotonic", lambda: clock[0])
    cb, trainer = StepBudget(probe_steps=2), _trainer(True, max_steps=30)
    _drive(cb, trainer, SimpleNamespace(step_budget=None), clock)
    assert cb.budget == 30
    idle, trainer = StepBudget(probe_steps=2), _trainer(True)
    trainer.callbacks = []
    _drive(idle, trainer, SimpleNamespace(step_budget=None), clock)
    assert idle.budget is None
    with pytest.raises(ValueError, match="safety"):
        StepBudget(safety=0)


def test_budget_counts_steps_and_epoch_ends_measured_with_a_fake_clock() -> None:
    """10-step epochs, 1 s a step, 5 s of epoch-end work, 100 s left when decided: the plan uses the time
    (98 % of it) instead of the old 0.9 x left / amortised rate (71 steps)."""
    cb, trainer, module = StepBudget(), _trainer(True), SimpleNamespace(step_budget=None)
    trainer.callbacks = [FakeTimer(left=100.0)]
    now = [0.0]
    cb.clock = lambda: now[0]
    for step in range(1, 12):
        now[0] += 1.0
        if step == 11:
            now[0] += 5.0  # the epoch end between step 10 and step 11
        trainer.global_step = step
        cb.on_train_batch_end(trainer, module, None, None, (step - 1) % 10)  # type: ignore[arg-type]
        if step == 10:
            cb.on_train_epoch_end(trainer, module)  # type: ignore[arg-type]
    assert cb.rates() == (1.0, 5.0)
    assert cb.budget == 74 and trainer.fit_loop.epoch_loop.max_steps == 74
    # 63 more steps (63 s) + 6 epoch ends on the way (30 s) + one for the end (5 s) = 98 s of 100
    assert sb.plan_steps(11, 100.0, 1.0, 5.0, 10, 1, 0.98) == 74
    assert sb.plan_steps(11, 100.0, 1.0, 5.0, 10, 1, 1.0) == 76  # 2 s more: 2 more steps
    assert sb.plan_steps(0, 100.0, 1.0, 0.0, None, 0, 1.0) == 100  # no epochs: every second a step
