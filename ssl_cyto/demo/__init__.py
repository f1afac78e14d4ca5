"""ssl_cyto.demo: the whole pipeline end to end (``ssl-cyto demo``), through the library's functions.

* :mod:`~ssl_cyto.demo.pipeline` - :func:`run_demo`, the stages in order;
* :mod:`~ssl_cyto.demo.stages` - :class:`StageLog` (progress line and wall time per stage), :class:`DemoError`;
* :mod:`~ssl_cyto.demo.budget` - how much of ``--minutes`` pretraining gets;
* :mod:`~ssl_cyto.demo.learning_curve` - online kNN and loss per step, from the run's CSV log;
* :mod:`~ssl_cyto.demo.demo_report` - ``report.md``.
"""

from ssl_cyto.demo.pipeline import run_demo
from ssl_cyto.demo.stages import DemoError, StageLog

__all__ = ["DemoError", "StageLog", "run_demo"]
