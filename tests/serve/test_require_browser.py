"""Without Chromium the page's tests skip, except where ``SSL_CYTO_REQUIRE_BROWSER=1`` (CI): they fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.serve import conftest


def test_missing_chromium_skips_or_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(conftest, "CHROMIUM", tmp_path / "no-chromium")
    monkeypatch.delenv(conftest.REQUIRE_BROWSER, raising=False)
    with pytest.raises(pytest.skip.Exception):
        conftest.require_chromium()
    monkeypatch.setenv(conftest.REQUIRE_BROWSER, "1")
    with pytest.raises(pytest.fail.Exception, match="browser is missing"):
        conftest.require_chromium()


def test_ci_sets_the_variable() -> None:
    run = (Path(__file__).resolve().parents[2] / ".ci" / "run").read_text()
    assert f"export {conftest.REQUIRE_BROWSER}=1" in run and "make test" in run
