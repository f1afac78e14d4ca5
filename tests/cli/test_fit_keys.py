"""The static ``ssl-cyto fit --help`` page (no torch import) names only keys the LightningCLI parser has:
every ``--a.b.c`` of ``KEY_OPTIONS`` is checked against the resolved config of a packaged config."""

from __future__ import annotations

import re

import pytest
import yaml

from ssl_cyto.cli import main as cli_main
from ssl_cyto.cli.fit import KEY_OPTIONS

#: Options of the help page that are not config keys (handled before or by the parser itself).
NOT_KEYS = {"config", "model", "print_config", "help-full"}


def test_every_key_of_the_help_page_is_a_parser_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["fit", "--config", "smoke_simclr", "--print_config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    found = re.findall(r"--([a-z_][\w.-]*)", KEY_OPTIONS)
    keys = sorted({k for k in found if k == k.lower()} - NOT_KEYS)  # not placeholders (KEY=VALUE)
    assert len(keys) > 15
    missing = []
    for key in keys:
        node = config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(key)
                break
            node = node[part]
    assert missing == [], f"ssl-cyto fit --help names keys the parser does not have: {missing}"
