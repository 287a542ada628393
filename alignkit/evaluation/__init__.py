"""Evaluation: verifiable instruction following (gold pass rates), pairwise win rates, perplexity, KL
from a reference model, rewards, and reward-model accuracy. ``alignkit eval`` is built on
:func:`alignkit.evaluation.runner.evaluate_models`.

Importing this package is cheap (no torch); the model metrics live in :mod:`alignkit.evaluation.metrics`.
"""

from alignkit.evaluation.constraints import (
    REGISTRY,
    ConstraintError,
    check_constraint,
    constraint_reward,
    constraint_types,
    describe_constraint,
    validate_constraint,
)
from alignkit.evaluation.instructions import (
    DEFAULT_INSTRUCTIONS,
    Instruction,
    InstructionFileError,
    check_instruction,
    load_instructions,
    score_responses,
)
from alignkit.evaluation.winrate import JudgeError, WinRate, load_judge, pairwise_winrate

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "REGISTRY",
    "ConstraintError",
    "Instruction",
    "InstructionFileError",
    "JudgeError",
    "WinRate",
    "check_constraint",
    "check_instruction",
    "constraint_reward",
    "constraint_types",
    "describe_constraint",
    "load_instructions",
    "load_judge",
    "pairwise_winrate",
    "score_responses",
    "validate_constraint",
]
