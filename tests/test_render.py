"""The one chat rule (alignkit.data.render): tokenisation, generation, judges and eval render a prompt
the same way, and producers of data write rows that read back to the tokens they sampled."""

from __future__ import annotations

import pytest

from alignkit.data import LoadedRows, tokenize_preference, tokenize_prompts
from alignkit.data.render import as_user_turn, conversational_row, render_prompt, request_prompt, row_mode
from alignkit.generation import encode_prompt
from alignkit.models import load_tokenizer

USER = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tiny-random")


def _rows(*rows):
    return LoadedRows(path="x.jsonl", kind="preference", rows=list(rows), row_numbers=list(range(1, len(rows) + 1)))


@pytest.mark.parametrize("mode", ["auto", "always", "never"])
@pytest.mark.parametrize("prompt", ["Name a colour.", USER])
def test_training_and_generation_see_the_same_prompt_tokens(tok, mode, prompt):
    if mode == "never" and isinstance(prompt, list):
        with pytest.raises(ValueError, match="never"):
            encode_prompt(tok, prompt, mode)
        return
    row = {"prompt": prompt, "chosen": "Blue.", "rejected": "No."}
    trained = tokenize_preference(_rows(row), tok, 128, mode)[0]["prompt_ids"]
    rolled_out = tokenize_prompts(_rows(row), tok, 128, mode)[0]["prompt_ids"]
    assert trained == rolled_out == encode_prompt(tok, prompt, mode)


def test_auto_follows_trl_a_string_is_plain_a_message_list_is_a_conversation(tok):
    plain = render_prompt(tok, "Name a colour.")
    assert plain.messages is None and plain.text == "Name a colour."
    assert "<|im_start|>" not in tok.decode(plain.ids)
    chat = render_prompt(tok, USER)
    assert chat.messages == USER and chat.text.endswith("<|im_start|>assistant\n")
    assert render_prompt(tok, "Name a colour.", "always").ids == chat.ids


def test_a_message_list_answer_makes_the_row_conversational(tok):
    assert row_mode("auto", "p", "a") == "never"
    assert row_mode("auto", "p", [{"role": "assistant", "content": "a"}]) == "always"
    row = {"prompt": "Name a colour.", "chosen": [{"role": "assistant", "content": "Blue."}],
           "rejected": [{"role": "assistant", "content": "No."}]}
    assert tokenize_preference(_rows(row), tok, 128)[0]["prompt_ids"] == render_prompt(tok, USER).ids


def test_requests_are_user_turns_and_rows_keep_the_sampled_form(tok):
    assert request_prompt(tok, "Name a colour.") == USER
    assert request_prompt(tok, "Name a colour.", "never") == "Name a colour."
    assert as_user_turn(USER) is USER
    assert conversational_row(USER, "Blue.") == (USER, [{"role": "assistant", "content": "Blue."}])
    assert conversational_row("p", "Blue.") == ("p", "Blue.")
