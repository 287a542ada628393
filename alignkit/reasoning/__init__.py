"""Reasoning tasks: a procedurally generated arithmetic word-problem set with reference step-by-step
solutions (:mod:`alignkit.reasoning.mathset`) and verifiable math rewards ``math:answer`` /
``math:format`` (:mod:`alignkit.reasoning.verify`). README "Reasoning data and verifiable math rewards".
"""

from alignkit.reasoning.mathset import generate_problems, load_math_problems, read_gsm8k
from alignkit.reasoning.verify import (
    MATH_REWARDS,
    answers_match,
    extract_answer,
    format_score,
    is_correct,
    math_answer,
    math_format,
    parse_number,
)

__all__ = [
    "MATH_REWARDS",
    "answers_match",
    "extract_answer",
    "format_score",
    "generate_problems",
    "is_correct",
    "load_math_problems",
    "math_answer",
    "math_format",
    "parse_number",
    "read_gsm8k",
]
