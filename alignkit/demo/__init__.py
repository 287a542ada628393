"""``alignkit demo``: the whole alignment pipeline on the embedded model, measured on held-out prompts.

See :mod:`alignkit.demo.pipeline` for the stages; :mod:`alignkit.commands.demo` is the command line.
Importing this package is cheap (torch is imported when the pipeline runs).
"""

from alignkit.demo.pipeline import (
    FULL,
    QUICK,
    DemoError,
    DemoSettings,
    build_pairs,
    choose_pair,
    run_demo,
    spread,
)

__all__ = ["FULL", "QUICK", "DemoError", "DemoSettings", "build_pairs", "choose_pair", "run_demo", "spread"]
