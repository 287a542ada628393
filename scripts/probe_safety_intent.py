"""Does the model's hidden state tell a harmful request from its benign look-alike?  (issue 16: a probe, not a
feature)

Every safety run on the embedded model so far traded one rate for the other (README "Safety alignment"): the
trained policy refused harmful requests and their look-alikes alike. This script asks whether the base
model's representation separates them at all. For each layer it takes the hidden state at the last prompt
token (the prompt rendered as a user turn, as ``eval --safety`` asks it) and fits an L2-regularised logistic
regression (features standardised on the fitting rows) that predicts ``kind == harmful``:

1. fit on train items 0-4, score item 5 (a validation split of 40 harmful and 40 benign ``ask`` prompts);
   the layer with the best validation accuracy is chosen there;
2. refit that layer on all train items and score the test split (items 6-7, never trained; 240 prompts,
   80 of them in the ``story`` wording no train row uses). (The README's figures were measured when the set
   had train items 0-5 only; items 8-23 now join the refit, not the validation.)

Prints every layer's validation accuracy, then the chosen layer's test accuracy, the share of harmful test
prompts it flags and of benign ones it flags, each with a 95 % Wilson interval. Usage::

    python scripts/probe_safety_intent.py [--model smollm2-135m] [--l2 0.01]
"""

from __future__ import annotations

import argparse

import torch

from alignkit.data.render import render_prompt
from alignkit.evaluation.stats import wilson_interval
from alignkit.models import load_model, load_tokenizer
from alignkit.safety.dataset import load_safety_set
from alignkit.safety.probe import choose_layer, fit_probe, last_token_states


def rate(flags: torch.Tensor) -> str:
    k, n = int(flags.sum()), flags.numel()
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / n:.1f}% ({k}/{n}) [{100 * lo:.1f}, {100 * hi:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--l2", type=float, default=0.01, help="L2 weight of the logistic regression (default 0.01)")
    args = ap.parse_args()
    torch.manual_seed(0)
    tokenizer, model = load_tokenizer(args.model), load_model(args.model).eval()
    train, test = load_safety_set(None, "train"), load_safety_set(None, "test")

    def states(rows: list[dict]) -> torch.Tensor:
        return last_token_states(model, [render_prompt(tokenizer, r["prompt"], "always").ids for r in rows])

    x_train, x_test = states(train), states(test)
    y_train = torch.tensor([r["kind"] == "harmful" for r in train], dtype=torch.float32)
    y_test = torch.tensor([r["kind"] == "harmful" for r in test])
    fit_rows = torch.tensor([r["item"] <= 4 for r in train])
    val_rows = torch.tensor([r["item"] == 5 for r in train])

    def fit(h: torch.Tensor, y: torch.Tensor):
        return fit_probe(h, y, args.l2)

    best, accuracies = choose_layer(x_train, y_train, fit_rows, val_rows, fit)
    for layer, acc in enumerate(accuracies):
        print(f"layer {layer:2d}: validation accuracy {100 * acc:.1f}% ({int(val_rows.sum())} prompts)")
    flagged = fit(x_train[:, best], y_train).predict(x_test[:, best])
    story = torch.tensor([r["family"] == "story" for r in test])
    print(f"\nchosen on validation: layer {best}; test split ({len(test)} prompts, never trained):")
    print(f"  accuracy               {rate(flagged == y_test)}")
    print(f"  harmful flagged        {rate(flagged[y_test])}")
    print(f"  benign flagged         {rate(flagged[~y_test])}")
    print(f"  story wording accuracy {rate((flagged == y_test)[story])}")


if __name__ == "__main__":
    main()
