"""The errors a user can fix: each is a SmallvisionError, which an entry script prints as one line (exit status 2)
instead of a traceback; any other exception is a bug and propagates whole."""

from __future__ import annotations

import signal

import pytest

from smallvision import errors
from smallvision.entrypoints import friendly_errors

FIXABLE = [errors.ConfigError, errors.DataError, errors.DivergedError, errors.WeightsUnavailableError]


@pytest.fixture(autouse=True)
def sigint_handler_as_it_was():
    """friendly_errors installs its Ctrl-C handler, for the process: this one is pytest's."""
    handler = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, handler)


def fail_with(error: Exception):
    @friendly_errors
    def main() -> None:
        raise error

    return main


@pytest.mark.parametrize("kind", FIXABLE, ids=lambda kind: kind.__name__)
def test_each_fixable_error_is_one_line_and_exit_status_2(kind, capsys):
    assert issubclass(kind, errors.SmallvisionError)
    with pytest.raises(SystemExit) as stopped:
        fail_with(kind("data.source=x does not exist: give a folder or an archive"))()
    assert stopped.value.code == 2
    assert capsys.readouterr().err == "smallvision: error: data.source=x does not exist: give a folder or an archive\n"


def test_every_error_class_of_the_module_is_listed_here():
    classes = {v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception)}
    assert classes == {errors.SmallvisionError, *FIXABLE}


def test_an_error_that_is_not_the_users_to_fix_propagates_whole():
    with pytest.raises(ValueError, match="a bug"):
        fail_with(ValueError("a bug"))()
