"""``ssl-cyto --help`` and every command's ``--help`` answer at once: they import none of the heavy
libraries (``fit`` excepted, which is a LightningCLI), and every command is reachable."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ssl_cyto.cli import COMMANDS, RAW_ARGV_COMMANDS

HEAVY = ("torch", "pytorch_lightning", "faiss", "umap", "wandb", "lightly", "timm", "pandas", "sklearn")

PROBE = f"""
import json, sys
HEAVY = {HEAVY!r}
from ssl_cyto.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = sorted(m for m in HEAVY if m in sys.modules)
print("\\n@@" + json.dumps({{"code": code, "heavy": heavy}}))
"""


def _help(*words: str) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *words, "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "@@" in out.stdout, out.stderr
    text, _, tail = out.stdout.rpartition("@@")
    return json.loads(tail), text


def test_top_level_help_lists_every_command() -> None:
    result, text = _help()
    assert result == {"code": 0, "heavy": []}
    for words in COMMANDS:
        assert " ".join(words) in text


@pytest.mark.parametrize(
    "words", [w for w in COMMANDS if w not in RAW_ARGV_COMMANDS], ids=lambda w: "-".join(w)
)
def test_command_help_is_light(words: tuple[str, ...]) -> None:
    result, text = _help(*words)
    assert result["code"] == 0, text
    assert result["heavy"] == [], f"'ssl-cyto {' '.join(words)} --help' imported {result['heavy']}"
    assert "usage: ssl-cyto " + " ".join(words) in text


def test_group_help_lists_subcommands() -> None:
    result, text = _help("data")
    assert result["code"] == 0
    for sub in ("synth", "scan", "agreement"):
        assert sub in text


def test_unknown_command_is_a_usage_error() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, "-m", "ssl_cyto", "no-such-command"], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 2
    assert "unknown command 'no-such-command'" in out.stderr
