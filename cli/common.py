"""What every command shares: one-line errors, JSON output, progress on a terminal only."""

from __future__ import annotations

import functools
import json
import os
import sys

import click

from repack.errors import LossyConversionError, RepackError


def fail(message: str, code: int = 2) -> None:
    click.echo(f"repack: error: {message}", err=True)
    sys.exit(code)


def handle_errors(fn):
    """Known errors become one line and an exit code; a traceback only with REPACK_DEBUG=1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except RepackError as e:
            if os.environ.get("REPACK_DEBUG"):
                raise
            if isinstance(e, LossyConversionError) and e.plan is not None and kwargs.get("as_json"):
                click.echo(json.dumps(e.plan.to_dict(), indent=2))
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:  # the reader went away (`repack inspect x | head`): stop quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(141)
        except Exception as e:  # a bug: still one line, but say how to get the traceback
            if os.environ.get("REPACK_DEBUG"):
                raise
            fail(f"internal error: {type(e).__name__}: {e} (set REPACK_DEBUG=1 for the traceback)", 70)

    return wrapper


def show_progress(quiet: bool, as_json: bool) -> bool:
    return not quiet and not as_json and sys.stderr.isatty()


def emit_json(data) -> None:
    click.echo(json.dumps(data, indent=2, default=str))
