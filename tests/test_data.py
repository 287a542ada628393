"""Data layer: reading each file format, validating rows by kind, errors, tokenising and truncation."""

from __future__ import annotations

import csv
import json
import logging

import pytest

from alignkit.data import (
    DataError,
    detect_kind,
    extract_prompt,
    load_examples,
    preference_to_unpaired,
    read_rows,
    tokenize_preference,
    tokenize_prompts,
    tokenize_sft,
    tokenize_unpaired,
)

U = "user"
A = "assistant"


def msg(role, content):
    return {"role": role, "content": content}


SAMPLES = {
    "lm": [{"text": "The cat sat on the mat."}, {"text": "Dogs bark."}],
    "prompt_completion": [{"prompt": "2 + 2 =", "completion": " 4"}, {"prompt": "Capital of France?", "completion": " Paris"}],
    "preference": [
        {"prompt": [msg(U, "Hi")], "chosen": [msg(A, "Hello!")], "rejected": [msg(A, "Go away.")]},
        {"prompt": [msg(U, "2+2?")], "chosen": [msg(A, "4")], "rejected": [msg(A, "5")]},
    ],
    "unpaired": [{"prompt": "Say hi", "completion": " hi", "label": True},
                 {"prompt": "Say hi", "completion": " no", "label": False}],
    "prompt": [{"prompt": "Write a poem."}, {"prompt": "Tell a joke."}],
}
FORMATS = ["jsonl", "json", "csv", "parquet", "disk"]


def write(tmp_path, fmt, rows, name="data"):
    """Write rows in one of the supported formats; return the path."""
    if fmt == "jsonl":
        p = tmp_path / f"{name}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif fmt == "json":
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps(rows))
    elif fmt == "csv":
        p = tmp_path / f"{name}.csv"
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with p.open("w", newline="") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, list) else str(v).lower() if isinstance(v, bool)
                            else v for k, v in r.items()})
    elif fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = tmp_path / f"{name}.parquet"
        pq.write_table(pa.Table.from_pylist(rows), p)
    elif fmt == "disk":
        from datasets import Dataset

        p = tmp_path / name
        Dataset.from_list(rows).save_to_disk(str(p))
    else:
        raise ValueError(fmt)
    return p


def write_lines(tmp_path, lines, name="data.jsonl"):
    p = tmp_path / name
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return p


# ----------------------------------------------------------------------------- reading


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(SAMPLES))
def test_every_format_every_kind(tmp_path, fmt, kind):
    rows = SAMPLES[kind]
    loaded = load_examples(write(tmp_path, fmt, rows), (kind,))
    assert loaded.kind == kind
    assert loaded.row_numbers == [1, 2]
    assert loaded.skipped == 0
    for got, want in zip(loaded.rows, rows):
        for k, v in want.items():
            assert got[k] == v, (k, got[k], v)


def test_jsonl_row_numbers_count_blank_lines(tmp_path):
    p = write_lines(tmp_path, ["", {"text": "a"}, "   ", {"text": "b"}])
    assert [n for n, _ in read_rows(p)] == [2, 4]


def test_json_wrapped_list_and_json_lines_named_json(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"data": [{"prompt": "x"}, {"prompt": "y"}]}))
    assert read_rows(p) == [(1, {"prompt": "x"}), (2, {"prompt": "y"})]
    p.write_text(json.dumps({"rows": [{"prompt": "x"}]}))
    assert read_rows(p) == [(1, {"prompt": "x"})]
    p.write_text('{"prompt": "x"}\n\n{"prompt": "y"}\n')
    assert read_rows(p) == [(1, {"prompt": "x"}), (3, {"prompt": "y"})]
    p.write_text(json.dumps({"other": 1}))
    with pytest.raises(DataError, match="d.json"):
        read_rows(p)


def test_csv_cells(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text('prompt,completion,label\n"[{""role"": ""user"", ""content"": ""hi""}]",[not json,TRUE\n'
                 "plain,,0\n")
    rows = read_rows(p)
    assert rows[0] == (1, {"prompt": [msg(U, "hi")], "completion": "[not json", "label": "TRUE"})
    assert rows[1] == (2, {"prompt": "plain", "completion": None, "label": "0"})


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: data file not found"):
        read_rows(tmp_path / "nope.jsonl")
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported data file type '.txt'"):
        read_rows(tmp_path / "d.txt")
    (tmp_path / "dir").mkdir()
    with pytest.raises(DataError, match="not one written by datasets' save_to_disk"):
        read_rows(tmp_path / "dir")


def test_saved_dataset_dict_uses_train_split(tmp_path):
    from datasets import Dataset, DatasetDict

    DatasetDict({"train": Dataset.from_list([{"prompt": "a"}]), "test": Dataset.from_list([{"prompt": "b"}])}) \
        .save_to_disk(str(tmp_path / "dd"))
    assert read_rows(tmp_path / "dd") == [(1, {"prompt": "a"})]


# ----------------------------------------------------------------------------- kinds


def test_detect_kind():
    assert detect_kind({"prompt": "p", "chosen": "c", "rejected": "r"}, ("preference",)) == "preference"
    # a preference row serves as a prompt row, a labelled row as prompt-completion
    assert detect_kind({"prompt": "p", "chosen": "c", "rejected": "r"}, ("prompt",)) == "prompt"
    assert detect_kind({"prompt": "p", "completion": "c", "label": True}, ("prompt_completion",)) == \
        "prompt_completion"
    assert detect_kind({"prompt": "p", "completion": "c", "label": True}, ("unpaired", "prompt")) == "unpaired"
    assert detect_kind({"messages": [msg(U, "x")]}, ("lm", "prompt_completion")) == "lm"
    assert detect_kind({"prompt": "p", "completion": "c"}, ("lm", "prompt_completion")) == "prompt_completion"
    # paired data is convertible for KTO
    assert detect_kind({"prompt": "p", "chosen": "c", "rejected": "r"}, ("unpaired",)) == "preference"
    assert detect_kind({"text": "x"}, ("preference",)) is None
    with pytest.raises(ValueError, match="unknown data kind"):
        detect_kind({"text": "x"}, ("bogus",))


def test_implicit_prompt(tmp_path):
    conv = [msg("system", "S"), msg(U, "Q")]
    row = {"chosen": conv + [msg(A, "good")], "rejected": conv + [msg(A, "bad")]}
    loaded = load_examples(write(tmp_path, "jsonl", [row]), "preference")
    r = loaded.rows[0]
    assert r["prompt"] == conv and r["chosen"] == [msg(A, "good")] and r["rejected"] == [msg(A, "bad")]
    assert extract_prompt([msg(U, "a")], [msg(U, "b")]) == ([], [msg(U, "a")], [msg(U, "b")])


@pytest.mark.parametrize("value,want", [(True, True), (False, False), ("true", True), ("FALSE", False),
                                        (1, True), (0, False), ("1", True), ("0", False)])
def test_label_values(tmp_path, value, want):
    p = write_lines(tmp_path, [{"prompt": "p", "completion": "c", "label": value}])
    assert load_examples(p, "unpaired").rows[0]["label"] is want


def test_preference_to_unpaired(tmp_path):
    rows = [{"prompt": "p1", "chosen": "c1", "rejected": "r1", "extra": 7},
            {"prompt": "p2", "chosen": "c2", "rejected": "r2", "extra": 8}]
    p = write(tmp_path, "jsonl", rows)
    conv = preference_to_unpaired(load_examples(p, "preference"))
    assert conv.kind == "unpaired"
    assert [(r["prompt"], r["completion"], r["label"], r["extra"]) for r in conv.rows] == [
        ("p1", "c1", True, 7), ("p1", "r1", False, 7), ("p2", "c2", True, 8), ("p2", "r2", False, 8)]
    assert conv.row_numbers == [1, 1, 2, 2]
    auto = load_examples(p, ("unpaired",))  # KTO on paired data
    assert auto.kind == "unpaired" and len(auto) == 4


# ----------------------------------------------------------------------------- malformed rows

GOOD_PREF = {"prompt": "p", "chosen": "c", "rejected": "r"}

MALFORMED = [
    # (kind, bad row, field, message fragment)
    ("preference", {"prompt": "p", "chosen": "c"}, "rejected", "missing"),
    ("preference", {"prompt": "p", "chosen": 5, "rejected": "r"}, "chosen",
     "expected a non-empty string or a list of chat messages"),
    ("preference", {"prompt": "p", "chosen": "c", "rejected": [msg("bot", "x")]}, "rejected", "role 'bot'"),
    ("preference", {"prompt": "p", "chosen": "c", "rejected": [{"role": "assistant"}]}, "rejected",
     "missing 'content'"),
    ("preference", {"prompt": "p", "chosen": "c", "rejected": [{"role": A, "content": 3}]}, "rejected",
     "'content' must be a string"),
    ("preference", {"prompt": "p", "chosen": "c", "rejected": []}, "rejected", "empty list"),
    ("preference", {"chosen": "c", "rejected": "r"}, "prompt", "missing"),
    ("preference", {"chosen": [msg(U, "a"), msg(A, "x")], "rejected": [msg(U, "b"), msg(A, "y")]}, "prompt",
     "share no leading messages"),
    ("preference", {"chosen": [msg(U, "a"), msg(A, "x")], "rejected": [msg(U, "a"), msg(A, "x")]}, "chosen",
     "empty completion"),
    ("prompt_completion", {"prompt": "p", "completion": ""}, "completion", "empty completion"),
    ("prompt_completion", {"prompt": "p", "completion": "   "}, "completion", "empty completion"),
    ("prompt_completion", {"prompt": "p", "completion": [msg(A, "")]}, "completion", "empty completion"),
    ("prompt_completion", {"prompt": None, "completion": "c"}, "prompt", "missing"),
    ("lm", {"messages": [msg(U, "hi"), {"role": "robot", "content": "x"}]}, "messages", "message 2: role 'robot'"),
    ("lm", {"messages": "hello"}, "messages", "expected a list of chat messages"),
    ("lm", {"text": ["a"]}, "text", "expected a non-empty string (use 'messages' for chat messages), got list"),
    ("lm", {"prompt": "p", "completion": "c"}, "text", "missing"),  # a row of another kind
    ("unpaired", {"prompt": "p", "completion": "c", "label": "maybe"}, "label", "expected a boolean"),
    ("unpaired", {"prompt": "p", "completion": "c", "label": None}, "label", "missing"),
    ("prompt", {"prompt": {"a": 1}}, "prompt", "got dict"),
]
GOOD = {"preference": GOOD_PREF, "prompt_completion": {"prompt": "p", "completion": "c"},
        "lm": {"messages": [msg(U, "a"), msg(A, "b")]}, "unpaired": {"prompt": "p", "completion": "c", "label": 1},
        "prompt": {"prompt": "p"}}


@pytest.mark.parametrize("kind,bad,field,fragment", MALFORMED)
def test_malformed_row_names_file_row_field(tmp_path, kind, bad, field, fragment):
    # line 1 valid, line 2 blank, line 3 malformed: the error must say row 3
    p = write_lines(tmp_path, [GOOD[kind], "", bad], name="train.jsonl")
    with pytest.raises(DataError) as ei:
        load_examples(p, (kind,))
    text = str(ei.value)
    assert text.startswith(str(p))
    assert "train.jsonl: row 3: field '" + field + "'" in text
    assert fragment in text
    assert ei.value.row == 3 and ei.value.field == field
    # skip_invalid: the row is skipped and counted
    loaded = load_examples(p, (kind,), skip_invalid=True)
    assert loaded.skipped == 1 and loaded.row_numbers == [1]


def test_error_message_format(tmp_path):
    p = write_lines(tmp_path, [GOOD_PREF] * 6 + [{"prompt": "p", "chosen": 1.5, "rejected": "r"}])
    with pytest.raises(DataError) as ei:
        load_examples(p, "preference")
    assert str(ei.value) == (f"{p}: row 7: field 'chosen': expected a non-empty string or a list of chat "
                             "messages, got float")


@pytest.mark.parametrize("fmt", ["json", "csv", "parquet", "disk"])
def test_row_numbers_other_formats(tmp_path, fmt):
    rows = [{"prompt": "p", "completion": "c"}, {"prompt": "p", "completion": "c"}, {"prompt": "p", "completion": ""}]
    # (an empty CSV cell reads as a missing value)
    reason = "missing" if fmt == "csv" else "empty completion"
    with pytest.raises(DataError, match=rf"row 3: field 'completion': {reason}"):
        load_examples(write(tmp_path, fmt, rows), "prompt_completion")


def test_invalid_json_line(tmp_path):
    p = write_lines(tmp_path, [{"text": "a"}, "", '{"text": "b",', "[1, 2]", {"text": "c"}], name="bad.jsonl")
    with pytest.raises(DataError, match=r"bad.jsonl: row 3: not valid JSON"):
        read_rows(p)
    with pytest.raises(DataError, match=r"bad.jsonl: row 3: not valid JSON"):
        load_examples(p, "lm")
    loaded = load_examples(p, "lm", skip_invalid=True)
    assert loaded.row_numbers == [1, 5] and loaded.skipped == 2
    assert "row 4: expected a JSON object" in str(loaded.errors[1])


def test_unrecognised_first_row(tmp_path):
    p = write_lines(tmp_path, [{"foo": 1}])
    with pytest.raises(DataError, match=r"row 1: field 'chosen': missing \(preference data needs 'prompt', "
                                        r"'chosen', 'rejected'; the row has fields 'foo'\)"):
        load_examples(p, "preference")


def test_each_row_has_its_own_kind(tmp_path):
    p = write_lines(tmp_path, [{"prompt": 3, "completion": "x"}, {"text": "a"}, {"prompt": "p", "completion": "c"}])
    loaded = load_examples(p, ("lm", "prompt_completion"), skip_invalid=True)
    assert loaded.kind == "lm" and loaded.row_numbers == [2, 3] and loaded.skipped == 1
    assert loaded.kinds == ["lm", "prompt_completion"]


def test_skip_invalid_warns_and_all_invalid_fails(tmp_path, caplog):
    p = write_lines(tmp_path, [{"text": "a"}, {"text": ""}, {"text": 3}])
    with caplog.at_level(logging.WARNING, logger="alignkit.data"):
        loaded = load_examples(p, "lm", skip_invalid=True)
    assert loaded.skipped == 2
    assert "skipped 2 invalid row(s)" in caplog.text
    p = write_lines(tmp_path, [{"text": ""}, {"text": 3}], name="all_bad.jsonl")
    with pytest.raises(DataError, match="all_bad.jsonl: no valid rows"):
        load_examples(p, "lm", skip_invalid=True)
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="empty.jsonl: no rows"):
        load_examples(tmp_path / "empty.jsonl", "lm")


# ----------------------------------------------------------------------------- tokenising


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def load(tmp_path, rows, kinds, name="data.jsonl"):
    return load_examples(write_lines(tmp_path, rows, name=name), kinds)


def test_sft_plain_prompt_completion_mask(tmp_path, tokenizer):
    loaded = load(tmp_path, [{"prompt": "The capital of France is", "completion": " Paris."}], "prompt_completion")
    (ex,) = tokenize_sft(loaded, tokenizer, 64)
    p, c = enc(tokenizer, "The capital of France is"), enc(tokenizer, " Paris.") + [tokenizer.eos_token_id]
    assert ex["input_ids"] == p + c
    assert ex["labels"] == [-100] * len(p) + c
    assert ex["row"] == 1
    (ex,) = tokenize_sft(loaded, tokenizer, 64, completion_only_loss=False)
    assert ex["labels"] == ex["input_ids"]


def test_sft_text_trains_everything(tmp_path, tokenizer):
    (ex,) = tokenize_sft(load(tmp_path, [{"text": "Hello world"}], "lm"), tokenizer, 64)
    assert ex["input_ids"] == enc(tokenizer, "Hello world") + [tokenizer.eos_token_id]
    assert ex["labels"] == ex["input_ids"]
    (ex,) = tokenize_sft(load(tmp_path, [{"text": "word " * 100}], "lm"), tokenizer, 16)
    assert len(ex["input_ids"]) == 16


def test_sft_chat_prompt_completion(tmp_path, tokenizer):
    rows = [{"prompt": [msg(U, "What is 2+2?")], "completion": [msg(A, "It is 4.")]}]
    (ex,) = tokenize_sft(load(tmp_path, rows, "prompt_completion"), tokenizer, 128)
    prompt_text = tokenizer.apply_chat_template([msg(U, "What is 2+2?")], tokenize=False, add_generation_prompt=True)
    p = enc(tokenizer, prompt_text)
    assert ex["input_ids"][: len(p)] == p
    assert ex["labels"][: len(p)] == [-100] * len(p)
    assert tokenizer.decode(ex["labels"][len(p):]) == "It is 4.<|im_end|>"


def test_chat_template_modes(tmp_path, tokenizer):
    rows = [{"prompt": "What is 2+2?", "completion": "4"}]
    loaded = load(tmp_path, rows, "prompt_completion")
    (plain,) = tokenize_sft(loaded, tokenizer, 128, "auto")
    assert tokenizer.decode(plain["input_ids"]) == "What is 2+2?4<|im_end|>"
    (chat,) = tokenize_sft(loaded, tokenizer, 128, "always")
    want = tokenizer.apply_chat_template([msg(U, "What is 2+2?"), msg(A, "4")], tokenize=False)
    assert tokenizer.decode(chat["input_ids"]) == want.rstrip("\n")
    assert tokenizer.decode([x for x in chat["labels"] if x != -100]) == "4<|im_end|>"
    msgs = load(tmp_path, [{"prompt": [msg(U, "q")], "completion": "a"}], "prompt_completion", name="m.jsonl")
    with pytest.raises(DataError, match=r"m.jsonl: row 1: field 'prompt': is a list of chat messages but "
                                        r"chat_template is 'never'"):
        tokenize_sft(msgs, tokenizer, 128, "never")


def test_multi_turn_only_assistant_trained(tmp_path, tokenizer):
    conv = [msg("system", "You are terse."), msg(U, "Hi"), msg(A, "Hello!"), msg(U, "Name a colour."),
            msg(A, "Blue"), msg(U, "Another one, as a list"), msg(A, "- red\n- green")]
    (ex,) = tokenize_sft(load(tmp_path, [{"messages": conv}], "lm"), tokenizer, 512)
    assert tokenizer.decode(ex["input_ids"]) == tokenizer.apply_chat_template(conv, tokenize=False)
    runs, cur = [], []
    for tok_id, lab in zip(ex["input_ids"], ex["labels"]):
        if lab != -100:
            assert lab == tok_id
            cur.append(lab)
        elif cur:
            runs.append(cur)
            cur = []
    if cur:
        runs.append(cur)
    assert [tokenizer.decode(r) for r in runs] == [m["content"] + "<|im_end|>" for m in conv if m["role"] == A]


def test_multi_turn_assistant_content_also_in_user_turn(tmp_path, tokenizer):
    # the assistant text also occurs earlier (in the default system prompt and the user turn)
    conv = [msg(U, "Hugging Face"), msg(A, "Face")]
    (ex,) = tokenize_sft(load(tmp_path, [{"messages": conv}], "lm"), tokenizer, 512)
    assert tokenizer.decode([x for x in ex["labels"] if x != -100]) == "Face<|im_end|>"
    n = len([x for x in ex["labels"] if x != -100])
    assert ex["labels"][-n - 1:] == ex["input_ids"][-n - 1:-1] + [-100]  # trailing newline untrained


def test_multi_turn_truncation(tmp_path, tokenizer):
    conv = [msg(U, "Hi"), msg(A, "Hello!"), msg(U, "more"), msg(A, "word " * 50)]
    (ex,) = tokenize_sft(load(tmp_path, [{"messages": conv}], "lm"), tokenizer, 60)
    assert len(ex["input_ids"]) == 60
    no_assistant = [{"messages": [msg(U, "x" * 400), msg(A, "ok")]}, {"messages": [msg(U, "only a question")]}]
    loaded = load(tmp_path, no_assistant, "lm", name="conv.jsonl")
    with pytest.raises(DataError, match=r"conv.jsonl: row 1: field 'messages': no assistant tokens left after "
                                        r"truncation"):
        tokenize_sft(loaded, tokenizer, 60)
    loaded = load(tmp_path, no_assistant, "lm", name="conv.jsonl")
    with pytest.raises(DataError, match=r"conv.jsonl: no valid rows left after tokenising \(2 skipped\)"):
        tokenize_sft(loaded, tokenizer, 60, skip_invalid=True)
    assert loaded.skipped == 2
    assert "row 2: field 'messages': no assistant message to train on" in str(loaded.errors[1])


def test_sft_on_preference_rows_uses_chosen(tmp_path, tokenizer):
    (ex,) = tokenize_sft(load(tmp_path, [GOOD_PREF], "preference"), tokenizer, 64)
    assert ex["input_ids"] == enc(tokenizer, "p") + enc(tokenizer, "c") + [2]
    assert ex["labels"] == [-100] + enc(tokenizer, "c") + [2]


def test_preference_tokens(tmp_path, tokenizer):
    rows = [{"prompt": [msg(U, "Hi")], "chosen": [msg(A, "Hello there!")], "rejected": [msg(A, "No.")]},
            {"prompt": "Q:", "chosen": " yes", "rejected": " no"}]
    exs = tokenize_preference(load(tmp_path, rows, "preference"), tokenizer, 128)
    assert exs[0]["prompt_ids"] == enc(tokenizer, tokenizer.apply_chat_template([msg(U, "Hi")], tokenize=False,
                                                                               add_generation_prompt=True))
    assert tokenizer.decode(exs[0]["chosen_ids"]) == "Hello there!<|im_end|>"
    assert tokenizer.decode(exs[0]["rejected_ids"]) == "No.<|im_end|>"
    assert exs[1]["prompt_ids"] == enc(tokenizer, "Q:")
    assert exs[1]["chosen_ids"] == enc(tokenizer, " yes") + [2]
    assert [e["row"] for e in exs] == [1, 2]


def test_truncation_keeps_response(tmp_path, tokenizer):
    prompt = " ".join(f"w{i}" for i in range(12))
    p = enc(tokenizer, prompt)
    assert 20 < len(p) < 40
    # prompt + response too long: the prompt loses tokens from the left, the response survives
    rows = [{"prompt": prompt, "chosen": " short", "rejected": " also short"}]
    (ex,) = tokenize_preference(load(tmp_path, rows, "preference"), tokenizer, len(p) + 2)
    r = enc(tokenizer, " also short") + [2]
    assert len(ex["prompt_ids"]) + len(r) == len(p) + 2  # the longer response decides
    assert ex["prompt_ids"] == p[len(p) - len(ex["prompt_ids"]):]
    assert ex["rejected_ids"] == r
    assert ex["chosen_ids"] == enc(tokenizer, " short") + [2]
    # a long response: the prompt keeps max_length // 2 tokens, the response is cut from the right
    long_resp = " " + " ".join(f"r{i}" for i in range(60))
    rows = [{"prompt": prompt, "completion": long_resp}]
    (ex,) = tokenize_sft(load(tmp_path, rows, "prompt_completion", name="b.jsonl"), tokenizer, 40)
    assert len(ex["input_ids"]) == 40
    assert ex["labels"].count(-100) == 20
    assert ex["input_ids"][:20] == p[-20:]
    assert ex["input_ids"][20:] == enc(tokenizer, long_resp)[:20]
    # a short prompt is kept whole
    rows = [{"prompt": "Hi", "completion": long_resp}]
    (ex,) = tokenize_sft(load(tmp_path, rows, "prompt_completion", name="c.jsonl"), tokenizer, 40)
    assert ex["input_ids"][:1] == enc(tokenizer, "Hi") and len(ex["input_ids"]) == 40


def test_prompt_too_long(tmp_path, tokenizer):
    rows = [{"prompt": "short", "completion": " ok"}, {"prompt": "word " * 30, "completion": " ok"}]
    path = write_lines(tmp_path, rows, name="long.jsonl")
    with pytest.raises(DataError) as ei:
        tokenize_sft(load_examples(path, "prompt_completion"), tokenizer, 20)
    assert str(ei.value).startswith(f"{path}: row 2: field 'prompt': prompt leaves no room for the response "
                                    "after truncation")
    loaded = load_examples(path, "prompt_completion", skip_invalid=True)
    exs = tokenize_sft(loaded, tokenizer, 20, skip_invalid=True)
    assert [e["row"] for e in exs] == [1] and loaded.skipped == 1
    for fn in (tokenize_preference, tokenize_unpaired, tokenize_prompts):
        rows = [{"prompt": "word " * 30, "chosen": "a", "rejected": "b"}]
        with pytest.raises(DataError, match=r"row 1: field 'prompt': prompt leaves no room"):
            fn(load(tmp_path, rows, "preference", name="p.jsonl"), tokenizer, 20)


def test_unpaired_tokens(tmp_path, tokenizer):
    rows = [{"prompt": "Q", "completion": " good", "label": "true"}, {"prompt": "Q", "completion": " bad", "label": 0}]
    exs = tokenize_unpaired(load(tmp_path, rows, "unpaired"), tokenizer, 64)
    assert [e["label"] for e in exs] == [True, False]
    assert exs[0]["completion_ids"] == enc(tokenizer, " good") + [2]
    exs = tokenize_unpaired(load(tmp_path, [GOOD_PREF], "preference", name="p.jsonl"), tokenizer, 64)
    assert [(e["label"], e["row"]) for e in exs] == [(True, 1), (False, 1)]


def test_prompts(tmp_path, tokenizer):
    rows = [{"prompt": [msg(U, "Solve 1+1")], "answer": "2"}, {"prompt": "Once upon a time", "answer": "x"}]
    exs = tokenize_prompts(load(tmp_path, rows, "prompt"), tokenizer, 128)
    want = tokenizer.apply_chat_template([msg(U, "Solve 1+1")], tokenize=False, add_generation_prompt=True)
    assert exs[0]["prompt_text"] == want and exs[0]["prompt_text"].endswith("<|im_start|>assistant\n")
    assert exs[0]["prompt_ids"] == enc(tokenizer, want)
    assert exs[0]["columns"] == {"answer": "2"}
    assert exs[1]["prompt_text"] == "Once upon a time"
    (short,) = tokenize_prompts(load(tmp_path, rows[1:], "prompt", name="b.jsonl"), tokenizer, 128,
                                max_prompt_length=2)
    assert short["prompt_ids"] == enc(tokenizer, "Once upon a time")[-2:]


def test_wrong_kind_for_tokeniser(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="tokenize_preference handles preference"):
        tokenize_preference(load(tmp_path, [{"text": "a"}], "lm"), tokenizer, 64)


FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "data"


@pytest.mark.parametrize("name,kind,fn", [
    ("lm_text.jsonl", "lm", tokenize_sft), ("lm_messages.jsonl", "lm", tokenize_sft),
    ("prompt_completion.jsonl", "prompt_completion", tokenize_sft),
    ("preference.jsonl", "preference", tokenize_preference), ("unpaired.jsonl", "unpaired", tokenize_unpaired),
    ("prompts.jsonl", "prompt", tokenize_prompts)])
def test_fixture_files(tokenizer, name, kind, fn):
    loaded = load_examples(FIXTURES / name, ("lm", "prompt_completion", "preference", "unpaired", "prompt"))
    assert loaded.kind == kind and len(loaded) == 8
    assert len(fn(loaded, tokenizer, 128)) == 8


# ------------------------------------------------------------------------- mixed kinds (issue 11)
def test_a_file_may_mix_messages_and_prompt_completion_rows(tmp_path):
    from alignkit.models import load_tokenizer

    path = tmp_path / "mixed.jsonl"
    rows = [{"messages": [msg(U, "Hi"), msg(A, "Hello!")]},
            {"prompt": "Say yes.", "completion": "Yes."},
            {"text": "plain text row"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = load_examples(path, ("lm", "prompt_completion"))
    assert loaded.kinds == ["lm", "prompt_completion", "lm"]
    examples = tokenize_sft(loaded, load_tokenizer("tiny-random"), 128)
    assert [e["row"] for e in examples] == [1, 2, 3]
    # the prompt-completion row trains on its completion only
    assert examples[1]["labels"][0] == -100 and examples[1]["labels"][-1] != -100


def test_a_row_that_fits_no_kind_keeps_the_precise_error(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n" + json.dumps({"prompt": "q"}) + "\n")
    with pytest.raises(DataError, match=r"mixed.jsonl: row 2: field 'completion': missing"):
        load_examples(path, ("lm", "prompt_completion"))


def test_a_conversation_without_an_assistant_turn_is_an_error(tmp_path, tokenizer):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c"}) + "\n"
                    + json.dumps({"messages": [msg(U, "only a question")]}) + "\n")
    with pytest.raises(DataError, match=r"m.jsonl: row 2: field 'messages': no assistant message"):
        tokenize_sft(load_examples(path, ("lm", "prompt_completion")), tokenizer, 64)


def test_kto_file_may_mix_paired_and_unpaired_rows(tmp_path):
    path = tmp_path / "k.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c", "label": True}) + "\n"
                    + json.dumps({"prompt": "q", "chosen": "good", "rejected": "bad"}) + "\n")
    loaded = load_examples(path, ("unpaired",))
    assert loaded.kinds == ["unpaired"] * 3 and [r["label"] for r in loaded.rows] == [True, True, False]
    assert loaded.row_numbers == [1, 2, 2]


# ------------------------------------------------------------- downloaded preference layouts (issue 11)
def test_ultrafeedback_layout_prompt_column_and_whole_conversations(tmp_path, tokenizer):
    row = {"prompt": "Name a colour.",
           "chosen": [msg(U, "Name a colour."), msg(A, "Blue.")],
           "rejected": [msg(U, "Name a colour."), msg(A, "No.")]}
    r = load_examples(write_lines(tmp_path, [row]), "preference").rows[0]
    assert r["prompt"] == [msg(U, "Name a colour.")] and r["chosen"] == [msg(A, "Blue.")]
    (ex,) = tokenize_preference(load_examples(write_lines(tmp_path, [row]), "preference"), tokenizer, 128)
    plain = {"prompt": [msg(U, "Name a colour.")], "chosen": [msg(A, "Blue.")], "rejected": [msg(A, "No.")]}
    (want,) = tokenize_preference(load_examples(write_lines(tmp_path, [plain], name="b.jsonl"), "preference"),
                                  tokenizer, 128)
    assert {k: ex[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} == \
        {k: want[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")}


def test_ultrafeedback_layout_prompt_must_match(tmp_path):
    row = {"prompt": "Something else.",
           "chosen": [msg(U, "Name a colour."), msg(A, "Blue.")],
           "rejected": [msg(U, "Name a colour."), msg(A, "No.")]}
    with pytest.raises(DataError, match=r"row 1: field 'prompt': does not match the conversation"):
        load_examples(write_lines(tmp_path, [row]), "preference")


def test_hh_rlhf_plain_text_layout(tmp_path):
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant: Blue is a colour."
    rejected = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant: Blah."
    r = load_examples(write_lines(tmp_path, [{"chosen": chosen, "rejected": rejected}]), "preference").rows[0]
    assert r["prompt"] == "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a colour.\n\nAssistant:"
    assert (r["chosen"], r["rejected"]) == (" Blue is a colour.", " Blah.")


def test_plain_text_pairs_split_at_the_longest_common_prefix(tmp_path):
    r = load_examples(write_lines(tmp_path, [{"chosen": "I like cats", "rejected": "I like cars"}]),
                      "preference").rows[0]
    assert (r["prompt"], r["chosen"], r["rejected"]) == ("I like", " cats", " cars")
    with pytest.raises(DataError, match="share no leading"):
        load_examples(write_lines(tmp_path, [{"chosen": "yes", "rejected": "no"}], name="n.jsonl"), "preference")


def test_pick_pairs_disjoint_best_against_worst_with_margin():
    from alignkit.data.pairs import pick_pair, pick_pairs

    scores = [0.5, 1.0, 0.0, 1.0, 0.0, 0.5, 0.0, 1.0]
    # best first: 1, 3, 7 (1.0), 0, 5 (0.5), ...; worst first: 2, 4, 6 (0.0), 0, 5, ...
    assert pick_pairs(scores, 1) == [(1, 2)] == [pick_pair(scores)]
    assert pick_pairs(scores, 4) == [(1, 2), (3, 4), (7, 6)]  # the 4th would be (0, 0.5)-(0, ...) : same item
    assert pick_pairs(scores, 2) == [(1, 2), (3, 4)]
    assert pick_pairs(scores, 4, min_margin=0.5) == [(1, 2), (3, 4), (7, 6)]  # 1.0 - 0.0 > 0.5
    assert pick_pairs(scores, 4, min_margin=1.0) == []  # no pair beats a margin of 1
    assert pick_pairs([0.3, 0.3, 0.3], 2) == []  # a tie
    assert pick_pairs([1.0, 0.5, 0.0, None], 3, usable=[True, True, False, True]) == [(0, 1)]
    # among equals the rank decides: prefer untruncated chosen (rank 0) and truncated rejected
    truncated = [True, False, False, True]
    assert pick_pairs([1.0, 1.0, 0.0, 0.0], 1, chosen_rank=lambda i: truncated[i],
                      rejected_rank=lambda i: not truncated[i]) == [(1, 3)]
