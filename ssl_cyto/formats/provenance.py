"""Provenance of an artefact: the git commit, package versions and the machine it was made on.

Written into ``model.json``, ``embed.json`` and the head of every report.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

VERSIONED_PACKAGES = ("torch", "torchvision", "timm", "lightly", "pytorch-lightning", "ssl-cyto")


def git_commit() -> str | None:
    """The commit of the ssl_cyto checkout this code runs from, or None (a wheel install, no git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def package_versions() -> dict[str, str]:
    """Versions of the installed packages that shape a backbone's outputs."""
    versions = {}
    for pkg in VERSIONED_PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return versions


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux: fall back to platform below
    return platform.processor() or platform.machine() or "unknown CPU"


def _ram_gib() -> float | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024**2
    except OSError:
        return None
    try:  # macOS / BSD
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    except (ValueError, OSError, AttributeError):
        return None


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def hardware_summary() -> str:
    """One line describing the machine: CPU model, cores, RAM, GPUs (via torch.cuda), torch version.

    torch is imported here (not at module level); if it is missing, the summary says so.
    """
    parts = [f"CPU: {_cpu_model()}", f"{_usable_cores()} usable cores (of {os.cpu_count()})"]
    ram = _ram_gib()
    parts.append(f"RAM: {ram:.1f} GiB" if ram is not None else "RAM: unknown")
    try:
        import torch

        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            parts.append("GPU: " + ", ".join(names))
        else:
            parts.append("GPU: none")
        parts.append(f"torch {torch.__version__}")
    except ImportError:
        parts.append("torch: not installed")
    parts.append(f"Python {platform.python_version()} on {platform.system()} {platform.release()}")
    return "; ".join(parts)


