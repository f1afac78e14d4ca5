"""``ssl-cyto fit``: pretraining, a LightningCLI that takes its raw arguments.

Before LightningCLI parses, three conveniences are applied to the arguments:

* ``--model NAME`` with a method of :data:`ssl_cyto.tasks.registry.METHODS` (``simclr``, ``dino``, any
  case) becomes that method's class path;
* ``--config NAME`` that is not a file but a packaged config (``ssl_cyto/configs/NAME.yaml``) becomes
  its path;
* ``--help`` is a short static page (methods, packaged configs, key options) that imports neither
  torch nor Lightning; ``--help-full`` is LightningCLI's whole parser.

A bad key or value exits 2 with one line naming it; a run stopped by the collapse / NaN guard exits 1,
keeping the last good checkpoint; a run preempted by a requeue signal (default SIGUSR1: one checkpoint,
SLURM requeue) and Ctrl-C exit 130, and rerunning the same command resumes; a run stopped by another
signal (default SIGTERM, e.g. ``scancel``: one checkpoint, no requeue) exits 128 + the signal number
(143 for SIGTERM).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ssl_cyto.cli.exit import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK

RESUME_HINT = "rerun the same command to resume from its last checkpoint"
#: Exit status of a run the collapse / NaN guard stopped (the last good checkpoint is kept).
EXIT_STOPPED = 1

KEY_OPTIONS = """\
  --config FILE|NAME                a YAML config, or the name of a packaged one (below)
  --model NAME                      the method (below); its options: --model.init_args.KEY=VALUE
  --model.init_args.backbone NAME   e.g. tiny_cnn, resnet50, vit_small_patch16_224
  --data.data PATH                  shards folder, image folder, catalog.parquet or synth:folder
  --data.batch_size N               per device;  --data.num_workers N  loader processes per device
  --data.val_size N                 labelled cells for the online kNN monitor (0: none)
  --trainer.default_root_dir DIR    the run folder (checkpoints, logs); rerun the same command to resume
  --trainer.max_steps N | --trainer.max_epochs N | --trainer.max_time DD:HH:MM:SS
  --trainer.devices N --trainer.num_nodes N --trainer.accelerator cpu|gpu --trainer.precision P
  --checkpoint.every_n_train_steps N   last.ckpt interval
  --run.logger csv|wandb|both|none  --run.resume true|false   --ckpt_path FILE
  --preemption.requeue_signals [..] signals that requeue under SLURM (default [SIGUSR1]; SIGTERM stops)
  --print_config                    print the resolved config and exit (no training)
  --help-full                       every option of the LightningCLI parser (imports torch)"""


def _config_dir() -> Path:
    from ssl_cyto.tasks.registry import CONFIG_DIR

    return CONFIG_DIR


def _config_summary(path: Path) -> str:
    """The first comment line of a config file (its one-line description)."""
    try:
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("#"):
                    text = line.lstrip("#").strip().split(". ")[0].split(" (")[0].rstrip(".:")
                    return text if len(text) <= 64 else text[:61].rsplit(" ", 1)[0] + "..."
                if line.strip():
                    break
    except OSError:
        pass
    return ""


def short_help() -> str:
    """The static ``ssl-cyto fit --help`` page (no torch import)."""
    from ssl_cyto.tasks.registry import METHODS

    methods = "\n".join(f"  {name:<14} {path.replace(':', '.')}" for name, path in METHODS.items())
    configs = "\n".join(f"  {p.stem:<22} {_config_summary(p)}" for p in sorted(_config_dir().glob("*.yaml")))
    return (
        "usage: ssl-cyto fit [--config FILE|NAME] [--model METHOD] [--KEY VALUE ...]\n\n"
        "Pretrain a self-supervised method with LightningCLI. Rerunning the same command resumes from\n"
        "the checkpoint with the highest global step under --trainer.default_root_dir. On SIGUSR1\n"
        "(SLURM: --signal=SIGUSR1@90) a run saves one checkpoint, requeues the SLURM job and exits 130;\n"
        "on SIGTERM (scancel) it saves one checkpoint and exits 143. See docs/training.md.\n\n"
        f"methods (--model NAME):\n{methods}\n\n"
        f"packaged configs (--config NAME):\n{configs}\n\n"
        f"key options:\n{KEY_OPTIONS}\n\n"
        "example:\n  ssl-cyto fit --config smoke_simclr --trainer.max_steps=20\n"
    )


def _value_of(argv: list[str], i: int, flag: str) -> tuple[str | None, int]:
    """The value of ``argv[i]`` as ``flag VALUE`` or ``flag=VALUE``: (value, how many items it spans)."""
    arg = argv[i]
    if arg == flag and i + 1 < len(argv):
        return argv[i + 1], 2
    if arg.startswith(flag + "="):
        return arg[len(flag) + 1 :], 1
    return None, 0


def rewrite_argv(argv: list[str]) -> list[str]:
    """Short method names and packaged config names replaced by their class path / file path."""
    from ssl_cyto.tasks.registry import METHODS

    methods = {name.lower(): path.replace(":", ".") for name, path in METHODS.items()}
    methods.update({path.rsplit(":", 1)[-1].lower(): path.replace(":", ".") for path in METHODS.values()})
    out: list[str] = []
    i = 0
    while i < len(argv):
        for flag in ("--model", "--config", "-c"):
            value, span = _value_of(argv, i, flag)
            if value is None:
                continue
            if flag == "--model" and value.lower() in methods:
                value = methods[value.lower()]
            elif flag != "--model" and not os.path.exists(value):
                packaged = _config_dir() / (value if value.endswith((".yaml", ".yml")) else f"{value}.yaml")
                if packaged.is_file():
                    value = str(packaged)
            out += [flag, value]
            i += span
            break
        else:
            out.append(argv[i])
            i += 1
    return out


def run_raw(argv: list[str]) -> int:
    """``ssl-cyto fit ARGV``; returns the exit status (2 for a bad config, 1 when the guard stopped a run,
    130 when preempted by a requeue signal, 128 + N when stopped by signal N without a requeue)."""
    if "--help-full" in argv:
        argv = ["--help" if a == "--help-full" else a for a in argv]
    elif "-h" in argv or "--help" in argv:
        print(short_help())
        return EXIT_OK
    from ssl_cyto.training.stop_flag import early_signals

    # The preemption flag first: a signal while torch is imported, the model built or DDP set up is
    # recorded and handled when training starts (checkpoint, requeue or stop), never fatal.
    with early_signals():
        return _run(rewrite_argv(argv))


def _run(argv: list[str]) -> int:
    from ssl_cyto.formats.errors import SslCytoError
    from ssl_cyto.training.callbacks import TrainingStopped
    from ssl_cyto.training.fit import fit_outcome

    try:
        outcome = fit_outcome(argv)
    except SystemExit as exc:  # --help-full, --print_config
        return exc.code if isinstance(exc.code, int) else (EXIT_OK if exc.code is None else EXIT_BAD_INPUT)
    except TrainingStopped as exc:
        print(f"ssl-cyto fit: stopped: {exc}", file=sys.stderr)
        return EXIT_STOPPED
    except (ValueError, FileNotFoundError) as exc:
        # Lightning and torch raise plain ValueError / FileNotFoundError for config values that the
        # parser cannot check; ours (SslCytoError) go to the dispatcher's one-line report.
        if isinstance(exc, SslCytoError) or os.environ.get("SSL_CYTO_DEBUG"):
            raise
        print(f"ssl-cyto fit: error: {exc}\n(set SSL_CYTO_DEBUG=1 for the traceback)", file=sys.stderr)
        return EXIT_BAD_INPUT
    stop = outcome.preempted
    if stop is not None:
        if stop.exit_code == EXIT_INTERRUPTED:
            print(f"ssl-cyto fit: preempted at step {stop.step}; {RESUME_HINT}", file=sys.stderr)
        elif stop.path:
            print(
                f"ssl-cyto fit: stopped by {stop.signal_name} at step {stop.step} (no requeue); "
                f"{RESUME_HINT} {stop.path}",
                file=sys.stderr,
            )
        else:
            print(
                f"ssl-cyto fit: stopped by {stop.signal_name} at step {stop.step}; no checkpoint saved",
                file=sys.stderr,
            )
        return stop.exit_code
    if outcome.checkpoint:
        print(f"ssl-cyto fit: final checkpoint {outcome.checkpoint}")
    return EXIT_OK
