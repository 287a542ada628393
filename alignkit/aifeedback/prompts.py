"""The prompts the AI-feedback builders and the self-rewarding loop send to a model (alignkit's own
wording). Each returns a user message string; the chat template wraps it.

* :func:`new_request_prompt` -- few-shot request synthesis (self-instruct style, as in Self-Rewarding LMs);
* :func:`instruction_from_response_prompt` -- instruction backtranslation (response -> instruction);
* :func:`rate_pair_prompt` -- 1-5 quality rating of an (instruction, response) pair (self-curation);
* :func:`critique_request` / :func:`revision_request` -- critique-and-revise turns;
* :func:`judge_prompt` / :func:`eft_justification` -- the pointwise 0-5 judge format used to build
  evaluation-fine-tuning (EFT) examples.
"""

from __future__ import annotations

from collections.abc import Sequence

# ----------------------------------------------------------------------------- request synthesis


def new_request_prompt(examples: Sequence[str]) -> str:
    listed = "\n".join(f"{i}. {_one_line(e)}" for i, e in enumerate(examples, start=1))
    return (
        "Below are some requests that people have sent to an AI assistant.\n\n"
        f"{listed}\n\n"
        "Write one new request that a person might send to the assistant. Make it self-contained, make it "
        "something that can be answered in text, and choose a different topic from the requests above. "
        "Reply with the new request only, without numbering, quotes or comments."
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------------------- backtranslation


def instruction_from_response_prompt(response: str) -> str:
    return (
        "The text below is the answer an AI assistant gave to a user. Work out what the user asked for: "
        "write the instruction or question that this text answers best. Reply with the instruction only.\n\n"
        f"<text>\n{response.strip()}\n</text>"
    )


def rate_pair_prompt(instruction: str, response: str) -> str:
    return (
        "Rate how well the response below serves as an AI assistant's answer to the instruction, on a scale "
        "from 1 to 5:\n"
        "1 - unrelated to the instruction, or unusable;\n"
        "2 - touches the instruction but misses most of it;\n"
        "3 - answers it partly, or answers it with notable problems;\n"
        "4 - a good, helpful answer with minor flaws;\n"
        "5 - an excellent answer written the way a helpful assistant would write it.\n\n"
        f"<instruction>\n{instruction.strip()}\n</instruction>\n\n"
        f"<response>\n{response.strip()}\n</response>\n\n"
        "Give a one-sentence reason, then end with a line of the form \"Score: N\" (N from 1 to 5)."
    )


# ----------------------------------------------------------------------------- critique and revise


def critique_request(principle: str) -> str:
    return (
        "Look back at your previous answer with this principle in mind:\n"
        f"\"{principle.strip()}\"\n"
        "Describe specifically where the answer falls short of the principle and what should change. "
        "Be brief and concrete."
    )


def revision_request() -> str:
    return (
        "Now write an improved version of your previous answer to the original request that fixes the "
        "problems you described. Reply with the improved answer only, without any preface."
    )


# ----------------------------------------------------------------------------- pointwise judge (EFT)

def judge_prompt(question, answer: str) -> str:
    """The pointwise grading request for (question, answer): exactly the prompt the LLM judges send
    (``alignkit.judges.pointwise_prompt``: additive 0-5 rubric, short justification, final ``Score: N``),
    so that EFT examples teach the format the model is later asked to judge in."""
    from alignkit.judges import pointwise_prompt

    return pointwise_prompt(question, answer)


_MET = (
    "It is relevant to the question.",
    "It covers a substantial part of what was asked.",
    "It handles the essential elements of the question usefully.",
    "It reads as a direct, complete, clear and well organised assistant answer.",
    "It is precisely tailored to the question, expert, and has nothing extraneous.",
)
_UNMET = (
    "It is not relevant to the question.",
    "It leaves most of what was asked unanswered.",
    "It misses essential elements of the question.",
    "It is not as direct, complete or well organised as an assistant's answer should be.",
    "It is not yet precisely tailored to the question or free of extraneous content.",
)


def eft_justification(score: int) -> str:
    """A rubric-based justification for an integer score 0-5 (the additive rubric: criteria 1..score
    hold, criterion score+1 does not), ending in the ``Score: N`` line."""
    if not 0 <= score <= 5:
        raise ValueError(f"score must be 0-5, got {score}")
    parts = list(_MET[:score])
    if score < 5:
        parts.append(_UNMET[score])
    return " ".join(parts) + f"\nScore: {score}"
