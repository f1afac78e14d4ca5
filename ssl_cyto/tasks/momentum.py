"""``MomentumTask``: the shared base of methods whose teacher is an exponential moving average.

BYOL (Grill et al., NeurIPS 2020), MoCo (He et al., CVPR 2020) and DINO (Caron et al., ICCV 2021)
keep a teacher (target / key / momentum) network that is not trained by gradients but follows the
student after every optimiser step::

    teacher = m * teacher + (1 - m) * student

with the momentum ``m`` cosine-scheduled from ``momentum_teacher`` to 1 over the run (BYOL's and
DINO's schedule; :meth:`ssl_cyto.tasks.schedule.ScheduleMixin.run_fraction` measures the run in
steps, the same on every rank). This base builds the teacher backbone (a frozen copy of the student), updates
every (student, teacher) pair of :meth:`MomentumTask.momentum_pairs` with lightly's
:func:`~lightly.models.utils.update_momentum`, and logs ``train/teacher_momentum``. A method adds its
heads to the pairs; the teacher is a sub-module, so it is saved in and restored from checkpoints.
"""

from __future__ import annotations

import copy
from typing import Any

from lightly.models.utils import deactivate_requires_grad, update_momentum
from torch import nn

from ssl_cyto.tasks.base import SSLTask
from ssl_cyto.tasks.schedule import cosine_at


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` whose parameters get no gradients and that has no stochastic depth or
    dropout (the teacher's starting point).

    The teacher runs in train mode with the student (so a CNN teacher's batch norm uses batch
    statistics, as in DINO's code), but it is never regularised: DINO and DINOv2 build their teacher
    without drop path (Caron et al. 2021, ``main_dino.py``; Oquab et al. 2023, ``ssl_meta_arch.py``).
    A deep copy of a student built with ``drop_path_rate`` would otherwise drop residual branches of
    the teacher at random and make its targets noisy.
    """
    teacher = copy.deepcopy(module)
    deactivate_requires_grad(teacher)
    without_stochastic_layers(teacher)
    return teacher


def without_stochastic_layers(module: nn.Module) -> None:
    """Replace every stochastic-depth layer of ``module`` (timm's ``DropPath``) by an identity and set
    every dropout probability to 0, in place."""
    from timm.layers import DropPath

    for name, child in list(module.named_children()):
        if isinstance(child, DropPath):
            setattr(module, name, nn.Identity())
        else:
            if isinstance(child, nn.modules.dropout._DropoutNd):
                child.p = 0.0
            without_stochastic_layers(child)


class MomentumTask(SSLTask):
    """Base of the methods with an EMA teacher (not trained on its own).

    Args:
        momentum_teacher: EMA momentum at the start of the run (cosine-scheduled to 1).
        **kwargs: the arguments of :class:`ssl_cyto.tasks.base.SSLTask`.

    Attributes:
        teacher_backbone: the EMA copy of ``backbone``.
        last_momentum: the momentum of the last teacher update (``None`` before the first).
    """

    def __init__(self, momentum_teacher: float = 0.996, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.teacher_backbone = frozen_copy(self.backbone)
        self.last_momentum: float | None = None

    @property
    def student_backbone(self) -> nn.Module:
        """The student backbone (``self.backbone``)."""
        return self.backbone

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The (student, teacher) modules moved after every step; methods append their heads."""
        return [(self.backbone, self.teacher_backbone)]

    def teacher_momentum(self) -> float:
        """EMA momentum at the current step: cosine from ``momentum_teacher`` to 1 over the run."""
        return cosine_at(self.run_fraction(self.trainer.global_step), self.hp.momentum_teacher, 1.0)

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step the student, then move the teacher: ``teacher = m * teacher + (1 - m) * student``."""
        m = self.teacher_momentum()
        super().optimizer_step(*args, **kwargs)
        for student, teacher in self.momentum_pairs():
            update_momentum(student, teacher, m=m)
        self.last_momentum = m
        self.log("train/teacher_momentum", m, on_step=True, on_epoch=False)
