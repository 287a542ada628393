"""Reward sources (README "Reward functions"): loading FILE.py:FUNC / module:FUNC / lists with weights, and the errors."""

from __future__ import annotations

import math
import sys
import textwrap

import pytest
import torch

from alignkit.config import ConfigError
from alignkit.rewards import (
    FunctionReward,
    ModelReward,
    RewardError,
    RewardSet,
    RewardSource,
)
from alignkit.scoring import load_reward_functions, parse_reward_spec

PROMPTS = ["a", "b", "c"]
COMPLETIONS = ["one two", "three", "four five six"]


@pytest.fixture
def reward_file(tmp_path):
    path = tmp_path / "my_rewards.py"
    path.write_text(textwrap.dedent("""
        import numpy as np

        def length(prompts, completions, **kw):
            return [float(len(c.split())) for c in completions]

        def uses_column(prompts, completions, answer=None, completion_ids=None, **kw):
            return [1.0 if a in c else 0.0 for a, c in zip(answer, completions)]

        def boom(prompts, completions, **kw):
            raise KeyError("no such thing")

        def too_few(prompts, completions, **kw):
            return [1.0]

        def not_numbers(prompts, completions, **kw):
            return ["high"] * len(completions)

        def with_nan(prompts, completions, **kw):
            return [float("nan")] * len(completions)

        def with_none(prompts, completions, **kw):
            return [None] * len(completions)

        def numpy_out(prompts, completions, **kw):
            return np.ones(len(completions), dtype=np.float32)

        def tensor_out(prompts, completions, **kw):
            import torch
            return torch.arange(len(completions))

        NOT_CALLABLE = 3
    """))
    return path


def test_file_function(reward_file):
    rs = load_reward_functions(f"{reward_file}:length")
    assert rs.names == ["length"]
    total, per = rs(PROMPTS, COMPLETIONS)
    assert total.dtype == torch.float32 and total.tolist() == [2.0, 1.0, 3.0]
    assert per["length"].tolist() == [2.0, 1.0, 3.0]
    assert isinstance(rs.sources[0], RewardSource)


def test_columns_arrive_as_keywords(reward_file):
    rs = load_reward_functions(f"{reward_file}:uses_column")
    total, _ = rs(PROMPTS, COMPLETIONS, {"answer": ["two", "x", "six"], "completion_ids": [[1], [2], [3]]})
    assert total.tolist() == [1.0, 0.0, 1.0]


def test_module_function_and_shipped_files():
    rs = load_reward_functions("alignkit.assets.rewards.format:word_limit")
    total, _ = rs(["q"] * 2, ["short answer", " ".join(["w"] * 40)])
    assert total.tolist() == [1.0, 0.5]
    # a bare shipped file name is found without a path; chat-form completions work too
    rs = load_reward_functions("tokens.py:even_token_fraction")
    total, _ = rs(["q", "q"], [[{"role": "assistant", "content": "x"}]] * 2, {"completion_ids": [[2, 4, 5, 7], [1]]})
    assert total.tolist() == [0.5, 0.0]


def test_numpy_and_tensor_outputs(reward_file):
    total, _ = load_reward_functions(f"{reward_file}:numpy_out")(PROMPTS, COMPLETIONS)
    assert total.tolist() == [1.0, 1.0, 1.0]
    total, _ = load_reward_functions(f"{reward_file}:tensor_out")(PROMPTS, COMPLETIONS)
    assert total.tolist() == [0.0, 1.0, 2.0]


def test_list_with_weights(reward_file):
    rs = load_reward_functions([f"{reward_file}:length", f"{reward_file}:numpy_out"], [0.5, -2.0])
    total, per = rs(PROMPTS, COMPLETIONS)
    assert total.tolist() == pytest.approx([0.5 * 2 - 2, 0.5 * 1 - 2, 0.5 * 3 - 2])
    assert list(per) == ["length", "numpy_out"]
    # the YAML-ish string form of a list, and the same function twice gets unique names
    rs = load_reward_functions(f"[{reward_file}:length, {reward_file}:length]")
    assert rs.names == ["length", "length_2"]
    assert parse_reward_spec("[a.py:f, 'b.py:g']") == ["a.py:f", "b.py:g"]


def test_weight_count_mismatch(reward_file):
    with pytest.raises(RewardError, match="reward_weights has 1 entries for 2"):
        load_reward_functions([f"{reward_file}:length", f"{reward_file}:length"], [1.0])


@pytest.mark.parametrize("func, message", [
    ("boom", r"reward function 'boom' .* raised KeyError: 'no such thing' \(at .*my_rewards.py:\d+\)"),
    ("too_few", r"reward function 'too_few' returned 1 values for 3 completions"),
    ("not_numbers", r"reward function 'not_numbers' returned 'high' \(str\)"),
    ("with_nan", r"reward function 'with_nan' returned nan"),
    ("with_none", r"reward function 'with_none' returned None"),
])
def test_misbehaving_function_stops_with_its_name(reward_file, func, message):
    rs = load_reward_functions(f"{reward_file}:{func}")
    with pytest.raises(RewardError, match=message) as info:
        rs(PROMPTS, COMPLETIONS)
    assert isinstance(info.value, ConfigError)  # the CLI prints it and exits 2


@pytest.mark.parametrize("spec, message", [
    ("nowhere.py:f", r"file not found: nowhere.py \(shipped reward files: .*format.py"),
    ("{file}:missing", r"no function 'missing' in .*; it defines .*length"),
    ("{file}:NOT_CALLABLE", "is not a function"),
    ("no_such_module_xyz:f", "cannot import module 'no_such_module_xyz'"),
    ("just_a_name", "expected FILE.py:FUNC"),
    ("rm:/definitely/not/here", "no such reward model directory"),
    ("", "reward is empty"),
])
def test_loading_errors(reward_file, spec, message):
    with pytest.raises(RewardError, match=message):
        load_reward_functions(spec.format(file=reward_file))


def test_judge_specs_go_to_the_judges():
    rs = load_reward_functions("judge:self")  # unbound until a method hands it the policy
    assert len(rs) == 1 and isinstance(rs.sources[0], RewardSource)


def test_file_that_fails_to_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("x = 1 / 0\n")
    with pytest.raises(RewardError, match=r"importing .*bad.py raised ZeroDivisionError"):
        load_reward_functions(f"{bad}:f")


def test_rm_source_uses_scorer_and_checks_output(tmp_path, monkeypatch):
    class Scorer:
        def score(self, prompts, completions):
            return [float(len(c)) for c in completions]

    src = ModelReward(str(tmp_path), scorer=Scorer(), name="rm")
    rs = RewardSet([src])
    total, _ = rs(["p", "q"], ["ab", [{"role": "assistant", "content": "abc"}]])
    assert total.tolist() == [2.0, 3.0]

    # rm:PATH goes through alignkit.reward_model.load_reward_model
    import types

    fake = types.ModuleType("alignkit.reward_model")
    fake.load_reward_model = lambda path: Scorer()
    monkeypatch.setitem(sys.modules, "alignkit.reward_model", fake)
    rs = load_reward_functions(f"rm:{tmp_path}")
    assert isinstance(rs.sources[0], ModelReward) and rs.names == [tmp_path.name]
    assert rs(["p"], ["xyz"])[0].tolist() == [3.0]

    class Broken:
        def score(self, prompts, completions):
            return [math.inf] * len(completions)

    with pytest.raises(RewardError, match="returned inf"):
        RewardSet([ModelReward(str(tmp_path), scorer=Broken(), name="rm")])(["p"], ["x"])


def test_callables_and_foreign_sources():
    rs = load_reward_functions(lambda prompts, completions, **kw: [1] * len(completions))
    assert rs(["p"], ["c"])[0].tolist() == [1.0]

    class Judge:  # any object with a name and the call signature is a source
        name = "judge"

        def __call__(self, prompts, completions, **columns):
            return ["bad"]

    with pytest.raises(RewardError, match="'judge' returned 'bad'"):
        RewardSet([Judge()])(["p"], ["c"])
    with pytest.raises(RewardError, match="not callable"):
        FunctionReward(3, name="three")


def test_shipped_rewards():
    from alignkit.assets.rewards import format as fmt
    from alignkit.assets.rewards import tokens

    assert fmt.ends_with_phrase(None, ["All good. Done.", "Done. no"]) == [1.0, 0.0]
    assert fmt.one_sentence(None, ["One sentence here.", "Two. Sentences.", ""]) == [1.0, 0.0, 0.0]
    assert fmt.word_limit(None, ["a b c"], max_words=[2]) == [pytest.approx(2 / 3)]
    assert tokens.char_fraction(None, ["eEx "]) == [pytest.approx(2 / 3)]
    assert tokens.token_fraction(None, ["x"], completion_ids=[[5, 5, 1]], token_id=[5]) == [pytest.approx(2 / 3)]
