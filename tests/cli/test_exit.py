"""Exit statuses decided once: expected errors are one line and 2, Ctrl-C is 130, bugs keep their traceback."""

from __future__ import annotations

import pytest

from ssl_cyto.cli.exit import EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, guarded
from ssl_cyto.formats.errors import InputError, MissingInputError, OutputError, SslCytoError


def test_statuses() -> None:
    assert (EXIT_OK, EXIT_BAD_INPUT, EXIT_INCOMPLETE, EXIT_INTERRUPTED) == (0, 2, 3, 130)


def test_ok_and_explicit_status() -> None:
    assert guarded(lambda: None) == 0
    assert guarded(lambda: EXIT_INCOMPLETE) == 3


@pytest.mark.parametrize("kind", [SslCytoError, InputError, MissingInputError, OutputError])
def test_expected_error_is_one_line(kind: type[Exception], capsys: pytest.CaptureFixture[str]) -> None:
    def fail() -> int:
        raise kind("catalog.parquet: no column 'path'; rescan with ssl-cyto data scan")

    assert guarded(fail) == 2
    err = capsys.readouterr().err
    assert err == "error: catalog.parquet: no column 'path'; rescan with ssl-cyto data scan\n"


def test_debug_shows_the_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    def fail() -> int:
        raise InputError("bad")

    assert guarded(fail, debug=True) == 2
    assert "Traceback" in capsys.readouterr().err


def test_interrupt_says_how_to_resume(capsys: pytest.CaptureFixture[str]) -> None:
    def stop() -> int:
        raise KeyboardInterrupt

    assert guarded(stop, resume_hint="rerun the same command to resume") == 130
    assert capsys.readouterr().err == "interrupted; rerun the same command to resume\n"


def test_a_bug_is_not_hidden() -> None:
    def bug() -> int:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        guarded(bug)


def test_errors_keep_their_builtin_bases() -> None:
    assert issubclass(InputError, ValueError)
    assert issubclass(MissingInputError, FileNotFoundError)
    assert str(MissingInputError("no such folder x")) == "no such folder x"
