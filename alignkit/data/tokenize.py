"""Turning validated rows into token id lists.

Chat template use (``chat_template`` config key) follows the one chat rule of
:mod:`alignkit.data.render`: under ``"auto"`` a row is rendered with the tokenizer's chat template when
any of its text fields is a list of chat messages (a plain-string field in such a row is wrapped: a
prompt as a user message, a completion as an assistant message); rows of plain strings are plain text.
``"always"`` renders every prompt/completion row with the chat template (a language-modelling ``text``
field stays plain text: there is no turn to wrap it in); ``"never"``: plain text only.

Plain text: the prompt (or ``text``) is tokenised with the tokenizer's special tokens (a BOS where the
tokenizer adds one), a completion without them, and the EOS token is appended to a completion/text.
Chat: the prompt is rendered with ``add_generation_prompt=True``; the completion is the rest of the
rendered conversation up to and including the end-of-turn token that closes the last completion
message (the template's trailing newline is dropped). Prompt and completion are tokenised separately
so that ``prompt_ids`` is shared by ``chosen_ids`` and ``rejected_ids``.

Multi-turn ``messages`` (SFT): the whole rendered conversation is tokenised once with offsets; the
labelled tokens are those overlapping an assistant message's content in the rendered text plus the
special token that ends that turn. Nothing assumes that tokenisation is prefix-stable.

Truncation keeps the response: a prompt of ``max_length`` tokens or more is a malformed row; a longer
pair loses prompt tokens from the left (keeping at least ``min(len(prompt), max_length // 2)``, and a
leading BOS), then response tokens from the right. Multi-turn conversations and plain text are cut
from the right.

Every function takes ``(loaded, tokenizer, max_length, chat_template, skip_invalid)`` and returns a
list of example dicts of Python int lists, each with ``"row"``: its 1-based row number in the file.
Rows skipped under ``skip_invalid`` are added to ``loaded.skipped``/``loaded.errors``.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from typing import Any

from alignkit.data.io import DataError
from alignkit.data.render import (
    NoChatTemplate,
    check_mode,
    encode_text,
    is_messages,
    render_messages,
    render_prompt,
    row_mode,
)
from alignkit.data.schema import LoadedRows, preference_to_unpaired

logger = logging.getLogger("alignkit.data")

IGNORE_INDEX = -100
NO_ROOM = "prompt leaves no room for the response after truncation"


def special_token_ids(tokenizer: Any) -> set[int]:
    """Ids of the tokenizer's special tokens (EOS, BOS, PAD, and added tokens marked special, such as
    ``<|im_end|>``): the candidates for a chat turn's end token."""
    ids = {i for i in getattr(tokenizer, "all_special_ids", []) if i is not None}
    for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items():
        if getattr(tok, "special", False):
            ids.add(int(i))
    return ids


class _Tokenizer:
    """The tokenizer plus the row-level helpers every tokenising function needs."""

    def __init__(self, loaded: LoadedRows, tokenizer: Any, max_length: int, chat_template: str) -> None:
        check_mode(chat_template)
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        self.path = loaded.path
        self.tok = tokenizer
        self.max_length = max_length
        self.mode = chat_template
        self.eos = tokenizer.eos_token_id
        self.bos = tokenizer.bos_token_id
        self.special = special_token_ids(tokenizer)

    # -- primitives ---------------------------------------------------------------------------
    def encode(self, text: str, special: bool) -> list[int]:
        return encode_text(self.tok, text, special)

    def encode_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        enc = self.tok(text, add_special_tokens=False, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]

    def with_eos(self, ids: list[int]) -> list[int]:
        if self.eos is not None and (not ids or ids[-1] != self.eos):
            ids = ids + [self.eos]
        return ids

    def use_chat(self, row: dict, fields: tuple[str, ...]) -> bool:
        if self.mode == "never":
            lists = [f for f in fields if is_messages(row.get(f))]
            if lists:
                raise DataError("is a list of chat messages but chat_template is 'never'", field=lists[0])
        return row_mode(self.mode, *(row.get(f) for f in fields)) == "always"

    def render(self, messages: list[dict], generation_prompt: bool, field: str) -> str:
        try:
            return render_messages(self.tok, messages, generation_prompt, field)
        except NoChatTemplate as e:
            raise NoChatTemplate(e.reason, path=self.path) from None

    # -- chat spans -------------------------------------------------------------------------------
    def locate(self, messages: list[dict], i: int, text: str, floor: int, field: str) -> tuple[int, int] | None:
        """Char span of ``messages[i]["content"]`` in ``text`` (the rendered conversation), searching
        from the end of the rendered ``messages[:i]`` (with the generation prompt before an assistant
        turn) when that is a prefix of ``text``, else from ``floor``."""
        start = floor
        if i > 0:
            try:
                prefix = self.render(messages[:i], messages[i]["role"] == "assistant", field)
            except NoChatTemplate:
                raise
            except DataError:
                prefix = None
            if prefix is not None and len(prefix) >= floor and text.startswith(prefix):
                start = len(prefix)
        content = messages[i]["content"]
        s = text.find(content, start)
        if s < 0 and content.strip():
            content = content.strip()
            s = text.find(content, start)
        return None if s < 0 else (s, s + len(content))

    def turn_end(self, messages: list[dict], i: int, text: str, content_end: int) -> int:
        """Char offset where turn ``i`` ends: the length of the rendered ``messages[:i + 1]`` when that
        is a prefix of ``text``, else the start of the next message's content, else the text's end."""
        if i + 1 >= len(messages):
            return len(text)
        try:
            prefix = self.render(messages[: i + 1], False, "messages")
        except NoChatTemplate:
            raise
        except DataError:
            prefix = None
        if prefix is not None and len(prefix) > content_end and text.startswith(prefix):
            return len(prefix)
        nxt = self.locate(messages, i + 1, text, content_end, "messages")
        return nxt[0] if nxt is not None else len(text)

    def end_token(self, ids: list[int], offsets: list[tuple[int, int]], after: int, limit: int) -> int | None:
        """Index of the first special token starting at or after char ``after`` (and before ``limit``)."""
        starts = [a for a, _ in offsets]
        j = bisect.bisect_left(starts, after)
        while j < len(ids) and starts[j] < limit:
            if ids[j] in self.special and offsets[j][1] > offsets[j][0]:
                return j
            j += 1
        return None

    # -- prompt / completion ------------------------------------------------------------------
    def prompt(self, row: dict, chat: bool) -> tuple[list[int], str, list[dict] | None]:
        try:
            r = render_prompt(self.tok, row["prompt"], "always" if chat else "never")
        except NoChatTemplate as e:
            raise NoChatTemplate(e.reason, path=self.path) from None
        return r.ids, r.text, r.messages

    def completion(self, value: Any, field: str, prompt_text: str, prompt_msgs: list[dict] | None) -> list[int]:
        if prompt_msgs is None:
            ids = self.with_eos(self.encode(value, special=False))
        else:
            comp = value if isinstance(value, list) else [{"role": "assistant", "content": value}]
            msgs = prompt_msgs + comp
            full = self.render(msgs, False, field)
            if not full.startswith(prompt_text):
                raise DataError("the chat template does not render the prompt as the start of the conversation "
                                "(prompt and completion cannot be split); use chat_template=never or another "
                                "template", field=field)
            rest = full[len(prompt_text):]
            ids, offsets = self.encode_offsets(rest)
            span = self.locate(msgs, len(msgs) - 1, full, len(prompt_text), field)
            if span is not None:
                k = self.end_token(ids, offsets, span[1] - len(prompt_text), len(rest))
                if k is not None:
                    ids = ids[: k + 1]
        if not ids:
            raise DataError("empty completion after tokenisation", field=field)
        return ids

    def cut_prompt(self, ids: list[int], keep: int) -> list[int]:
        if keep >= len(ids):
            return ids
        if self.bos is not None and ids and ids[0] == self.bos and keep >= 2:
            return [ids[0]] + ids[len(ids) - keep + 1:]
        return ids[len(ids) - keep:]

    def fit(self, prompt: list[int], responses: list[list[int]]) -> tuple[list[int], list[list[int]]]:
        """Apply the truncation rule to a prompt and its response(s) (which share the prompt)."""
        L = self.max_length
        if len(prompt) >= L:
            raise DataError(f"{NO_ROOM} ({len(prompt)} prompt tokens, max_length {L})", field="prompt")
        longest = max(len(r) for r in responses)
        if len(prompt) + longest <= L:
            return prompt, responses
        keep = max(L - longest, min(len(prompt), L // 2))
        prompt = self.cut_prompt(prompt, keep)
        room = L - len(prompt)
        return prompt, [r[:room] for r in responses]


def _run(loaded: LoadedRows, skip_invalid: bool, fn: Callable[[dict, str], dict], what: str) -> list[dict]:
    out = []
    before = loaded.skipped
    for row_no, row, kind in loaded.with_kinds():
        try:
            ex = fn(row, kind)
        except NoChatTemplate:
            raise
        except DataError as err:
            err = err.with_location(loaded.path, row_no)
            if not skip_invalid:
                raise err from None
            loaded.record_skip(err)
            continue
        ex["row"] = row_no
        out.append(ex)
    n = loaded.skipped - before
    if n:
        logger.warning("%s: skipped %d row(s) while tokenising for %s (skip_invalid=true); first: %s",
                       loaded.path, n, what, loaded.errors[before])
    if not out:
        raise DataError(f"no valid rows left after tokenising ({loaded.skipped} skipped)", path=loaded.path)
    return out


def _check_kind(loaded: LoadedRows, kinds: tuple[str, ...], fn: str) -> None:
    other = sorted(set(loaded.kinds) - set(kinds))
    if other:
        raise ValueError(f"{fn} handles {', '.join(kinds)} data, got {other[0]!r} rows from {loaded.path}")


# ----------------------------------------------------------------------------- public


def tokenize_sft(loaded: LoadedRows, tokenizer: Any, max_length: int, chat_template: str = "auto",
                 skip_invalid: bool = False, completion_only_loss: bool = True) -> list[dict]:
    """Rows of kind lm / prompt_completion / preference (prompt + chosen, for IFT) ->
    ``{"input_ids", "labels", "row"}``.

    Labels are ``-100`` where no loss is taken: prompt tokens (prompt-completion and preference rows),
    and everything but assistant content + end-of-turn tokens (``messages`` rows). ``text`` rows train
    on every token. ``completion_only_loss=False`` trains on every token of every row.
    """
    _check_kind(loaded, ("lm", "prompt_completion", "preference"), "tokenize_sft")
    t = _Tokenizer(loaded, tokenizer, max_length, chat_template)
    L = max_length

    def lm(row: dict, kind: str) -> dict:
        if "messages" in row and row["messages"] is not None:
            if t.mode == "never":
                raise DataError("is a list of chat messages but chat_template is 'never'", field="messages")
            msgs = row["messages"]
            text = t.render(msgs, False, "messages")
            ids, offsets = t.encode_offsets(text)
            if not completion_only_loss:
                ids = ids[:L]
                return {"input_ids": ids, "labels": list(ids)}
            if not any(m["role"] == "assistant" for m in msgs):
                raise DataError("no assistant message to train on", field="messages")
            trained = [False] * len(ids)
            ends = [b for _, b in offsets]
            floor = 0
            for i, m in enumerate(msgs):
                if m["role"] != "assistant":
                    continue
                span = t.locate(msgs, i, text, floor, "messages")
                if span is None:
                    raise DataError(f"message {i + 1}: cannot find the assistant content in the text the chat "
                                    "template renders", field="messages")
                s, e = span
                floor = e
                j = bisect.bisect_right(ends, s)
                while j < len(ids) and offsets[j][0] < e:
                    trained[j] = True
                    j += 1
                k = t.end_token(ids, offsets, e, t.turn_end(msgs, i, text, e))
                if k is not None:
                    trained[k] = True
            ids, trained = ids[:L], trained[:L]
            if not any(trained):
                raise DataError(f"no assistant tokens left after truncation to max_length {L}", field="messages")
            return {"input_ids": ids, "labels": [x if keep else IGNORE_INDEX for x, keep in zip(ids, trained)]}
        ids = t.with_eos(t.encode(row["text"], special=True))[:L]
        return {"input_ids": ids, "labels": list(ids)}

    def pair(row: dict, kind: str) -> dict:
        field = "completion" if kind == "prompt_completion" else "chosen"
        chat = t.use_chat(row, ("prompt", field))
        p_ids, p_text, p_msgs = t.prompt(row, chat)
        c_ids = t.completion(row[field], field, p_text, p_msgs)
        p_ids, (c_ids,) = t.fit(p_ids, [c_ids])
        prompt_labels = list(p_ids) if not completion_only_loss else [IGNORE_INDEX] * len(p_ids)
        return {"input_ids": p_ids + c_ids, "labels": prompt_labels + c_ids}

    return _run(loaded, skip_invalid, lambda row, kind: (lm if kind == "lm" else pair)(row, kind), "sft")


def tokenize_preference(loaded: LoadedRows, tokenizer: Any, max_length: int, chat_template: str = "auto",
                        skip_invalid: bool = False) -> list[dict]:
    """Preference rows -> ``{"prompt_ids", "chosen_ids", "rejected_ids", "row"}``; chosen and rejected
    share the prompt and end in the end token (EOS / end-of-turn) unless truncated."""
    _check_kind(loaded, ("preference",), "tokenize_preference")
    t = _Tokenizer(loaded, tokenizer, max_length, chat_template)

    def one(row: dict, kind: str) -> dict:
        chat = t.use_chat(row, ("prompt", "chosen", "rejected"))
        p_ids, p_text, p_msgs = t.prompt(row, chat)
        c_ids = t.completion(row["chosen"], "chosen", p_text, p_msgs)
        r_ids = t.completion(row["rejected"], "rejected", p_text, p_msgs)
        p_ids, (c_ids, r_ids) = t.fit(p_ids, [c_ids, r_ids])
        return {"prompt_ids": p_ids, "chosen_ids": c_ids, "rejected_ids": r_ids}

    return _run(loaded, skip_invalid, one, "preference")


def tokenize_unpaired(loaded: LoadedRows, tokenizer: Any, max_length: int, chat_template: str = "auto",
                      skip_invalid: bool = False) -> list[dict]:
    """Unpaired rows (or paired preference rows, converted) ->
    ``{"prompt_ids", "completion_ids", "label": bool, "row"}``."""
    if "preference" in loaded.kinds:
        loaded = preference_to_unpaired(loaded)
    _check_kind(loaded, ("unpaired",), "tokenize_unpaired")
    t = _Tokenizer(loaded, tokenizer, max_length, chat_template)

    def one(row: dict, kind: str) -> dict:
        chat = t.use_chat(row, ("prompt", "completion"))
        p_ids, p_text, p_msgs = t.prompt(row, chat)
        c_ids = t.completion(row["completion"], "completion", p_text, p_msgs)
        p_ids, (c_ids,) = t.fit(p_ids, [c_ids])
        return {"prompt_ids": p_ids, "completion_ids": c_ids, "label": bool(row["label"])}

    return _run(loaded, skip_invalid, one, "unpaired")


def tokenize_prompts(loaded: LoadedRows, tokenizer: Any, max_length: int, chat_template: str = "auto",
                     skip_invalid: bool = False, max_prompt_length: int | None = None) -> list[dict]:
    """Rows with a prompt (any kind but lm) -> ``{"prompt_ids", "prompt_text", "prompt", "columns", "row"}``.

    ``prompt_text`` is what the model sees (the chat template with the generation prompt for chat
    rows), ``prompt`` the original field and ``columns`` the row's other fields (for reward functions).
    A prompt of ``max_length`` tokens or more is malformed (no room to generate); a prompt longer than
    ``max_prompt_length`` (if given) keeps its last ``max_prompt_length`` tokens (and a leading BOS).
    """
    _check_kind(loaded, ("prompt", "prompt_completion", "preference", "unpaired"), "tokenize_prompts")
    t = _Tokenizer(loaded, tokenizer, max_length, chat_template)

    def one(row: dict, kind: str) -> dict:
        chat = t.use_chat(row, ("prompt",))
        p_ids, p_text, _ = t.prompt(row, chat)
        if len(p_ids) >= max_length:
            raise DataError(f"{NO_ROOM} ({len(p_ids)} prompt tokens, max_length {max_length})", field="prompt")
        if max_prompt_length is not None and len(p_ids) > max_prompt_length:
            p_ids = t.cut_prompt(p_ids, max_prompt_length)
            p_text = tokenizer.decode(p_ids)
        columns = {k: v for k, v in row.items() if k != "prompt"}
        return {"prompt_ids": p_ids, "prompt_text": p_text, "prompt": row["prompt"], "columns": columns}

    return _run(loaded, skip_invalid, one, "prompts")


def tokenize_completion(tokenizer: Any, prompt: Any, completion: Any, chat_template: str = "auto"
                        ) -> tuple[list[int], list[int]]:
    """``(prompt_ids, completion_ids)`` of one prompt and answer exactly as the tokenisers above see a
    row holding them (no truncation): what a producer of data compares with the ids it sampled."""
    loaded = LoadedRows(path="<row>", kind="prompt_completion", rows=[], row_numbers=[])
    t = _Tokenizer(loaded, tokenizer, 2**31, chat_template)
    row = {"prompt": prompt, "completion": completion}
    p_ids, p_text, p_msgs = t.prompt(row, t.use_chat(row, ("prompt", "completion")))
    return p_ids, t.completion(completion, "completion", p_text, p_msgs)
