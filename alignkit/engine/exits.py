"""How a run ends on the command line: the errors a user can cause and the exit code each gives.

0 done, 1 stopped early with a message (a pipeline's own stop), 2 a user error (config, data, model,
resume), 3 a diverged run, 130 interrupted. Every error is one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

USER_ERROR, DIVERGED, INTERRUPTED = 2, 3, 130


def user_error_types() -> tuple[type[BaseException], ...]:
    """The exceptions that report a mistake the user can fix (imported lazily: torch stays out of
    CLI start-up)."""
    from alignkit.config import ConfigError
    from alignkit.data import DataError
    from alignkit.engine.checkpoint import ResumeError
    from alignkit.engine.logging import MetricsFileError
    from alignkit.models import ModelNotFoundError

    return ConfigError, DataError, ResumeError, ModelNotFoundError, MetricsFileError


def run_for_exit_code(fn: Callable[[], Any],
                      stops: dict[type[BaseException], tuple[int, str]] | None = None) -> tuple[Any, int | None]:
    """``(fn(), None)``, or ``(None, code)`` after printing the error as one line: user errors give 2,
    :class:`~alignkit.engine.trainer.TrainingDiverged` 3, and each type in ``stops`` its
    ``(code, prefix)`` (e.g. a pipeline's ``LoopStopped``: ``(1, "stopped")``)."""
    from alignkit.engine.trainer import TrainingDiverged

    handled = tuple(stops or {}) + user_error_types() + (TrainingDiverged,)
    try:
        return fn(), None
    except handled as e:
        for kind, (code, prefix) in (stops or {}).items():
            if isinstance(e, kind):
                print(f"{prefix}: {e}", file=sys.stderr)
                return None, code
        print(f"error: {e}", file=sys.stderr)
        return None, DIVERGED if isinstance(e, TrainingDiverged) else USER_ERROR
