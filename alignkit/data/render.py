"""The chat rule: how a prompt becomes the text and token ids a model sees. The one place that decides.

``mode`` (the ``chat_template`` config key, ``--chat-template`` on the commands):

* ``"auto"`` (default, TRL's convention) -- a list of ``{"role", "content"}`` messages is conversational
  and goes through the tokenizer's chat template with the generation prompt; a plain string is used as
  it is (plain text). In a data row, one conversational field makes the whole row conversational (a
  string prompt beside message-list answers is that conversation's user turn): see :func:`row_mode`.
* ``"always"`` -- a string is wrapped as one user message and rendered with the chat template.
* ``"never"`` -- plain text only; chat messages are an error.

Text that the code itself phrases as a request to an assistant (a judge's rubric, an instruction to
follow, a chat turn typed by a person, a prompt the self-rewarding loop writes) is a user turn by nature:
producers wrap it with :func:`as_user_turn` before it reaches this rule, and write it to files as
messages, so that a file reads back to exactly the tokens it was sampled with.

Plain text is tokenised with the tokenizer's special tokens (a BOS where the tokenizer adds one, never a
trailing EOS); rendered chat text is tokenised without them (the template writes its own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.data.io import DataError

CHAT_MODES = ("auto", "always", "never")

Prompt = str | list[dict[str, Any]]


class NoChatTemplate(DataError):
    """Chat messages (or ``chat_template=always``) with a tokenizer that has no chat template: a problem
    of the whole file or setting, which ``skip_invalid`` must not hide."""


@dataclass
class RenderedPrompt:
    """``ids``: the prompt's token ids; ``text``: what they spell (the rendered template for chat);
    ``messages``: the conversation for a chat prompt, ``None`` for plain text."""

    ids: list[int]
    text: str
    messages: list[dict[str, Any]] | None


def check_mode(mode: str) -> str:
    if mode not in CHAT_MODES:
        raise ValueError(f"chat_template must be one of {', '.join(CHAT_MODES)}, got {mode!r}")
    return mode


def is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(m, dict) for m in value)


def has_chat_template(tokenizer: Any) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def as_user_turn(prompt: Prompt) -> list[dict[str, Any]]:
    """A request as a conversation: a string becomes one user message; messages stay as they are."""
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def request_prompt(tokenizer: Any, prompt: Prompt, mode: str = "auto") -> Prompt:
    """A request to an assistant in the form to sample it in: a user turn when the tokenizer has a chat
    template and ``mode`` is not ``"never"``; else the plain string."""
    if check_mode(mode) == "never" or not has_chat_template(tokenizer):
        return prompt
    return as_user_turn(prompt)


def conversational_row(prompt: Prompt, completion: str) -> tuple[Prompt, Any]:
    """``(prompt, completion)`` as a producer writes them after sampling ``prompt``: with a message-list
    prompt, the completion is an assistant message (the row is conversational and re-renders to the
    sampled tokens); with a plain-text prompt both stay strings."""
    if is_messages(prompt):
        return prompt, [{"role": "assistant", "content": completion}]
    return prompt, completion


def row_mode(mode: str, *fields: Any) -> str:
    """The mode for one data row: under ``"auto"`` a row with any message-list field is conversational
    (``"always"``), else plain. A message list under ``"never"`` is an error naming the field."""
    check_mode(mode)
    if mode == "never":
        return mode
    return "always" if mode == "always" or any(is_messages(f) for f in fields) else "never"


def encode_text(tokenizer: Any, text: str, special: bool) -> list[int]:
    """Token ids of plain text; ``special``: with the tokenizer's special tokens (a BOS where it adds
    one), but never with an EOS that a post-processor appends (the caller decides where EOS goes)."""
    ids = list(tokenizer(text, add_special_tokens=special)["input_ids"])
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    if special and ids and ids[-1] == eos and eos != bos and not text.endswith(tokenizer.eos_token or "\0"):
        ids.pop()
    return ids


def render_messages(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool,
                    field: str = "prompt") -> str:
    """The chat template's text for ``messages`` (``generation_prompt``: end with the assistant header)."""
    if not has_chat_template(tokenizer):
        raise NoChatTemplate("chat messages (or chat_template=always) need a chat template, and this tokenizer "
                             "has none; use plain strings with chat_template=never", field=field)
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    except Exception as e:  # jinja raises TemplateError (and templates raise their own errors)
        raise DataError(f"the chat template cannot render these messages: {e}", field=field) from None
    return text if isinstance(text, str) else text[0]  # a batch of one


def render_prompt(tokenizer: Any, prompt: Prompt, mode: str = "auto") -> RenderedPrompt:
    """How ``prompt`` is shown to the model before it answers (see the module docstring for ``mode``)."""
    check_mode(mode)
    if isinstance(prompt, str):
        if mode != "always":
            return RenderedPrompt(encode_text(tokenizer, prompt, special=True), prompt, None)
        prompt = as_user_turn(prompt)
    elif not is_messages(prompt):
        raise TypeError(f"a prompt must be a string or a list of chat messages, got {type(prompt).__name__}")
    elif mode == "never":
        raise DataError("is a list of chat messages but chat_template is 'never'", field="prompt")
    text = render_messages(tokenizer, prompt, True)
    return RenderedPrompt(encode_text(tokenizer, text, special=False), text, prompt)
