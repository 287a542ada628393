"""Does the model's hidden state tell a harmful request from its benign look-alike?  (issue 16: a probe, not a
feature)

Every safety run on the embedded model so far traded one rate for the other (README "Safety alignment"): the
trained policy refused harmful requests and their look-alikes alike. This script asks whether the base
model's representation separates them at all. For each layer it takes the hidden state at the last prompt
token (the prompt rendered as a user turn, as ``eval --safety`` asks it) and fits an L2-regularised logistic
regression (features standardised on the fitting rows) that predicts ``kind == harmful``:

1. fit on train items 0-4, score item 5 (a validation split of 40 harmful and 40 benign ``ask`` prompts);
   the layer with the best validation accuracy is chosen there;
2. refit that layer on all train items (0-5) and score the test split (items 6-7, never trained; 240 prompts,
   80 of them in the ``story`` wording no train row uses).

Prints every layer's validation accuracy, then the chosen layer's test accuracy, the share of harmful test
prompts it flags and of benign ones it flags, each with a 95 % Wilson interval. Usage::

    python scripts/probe_safety_intent.py [--model smollm2-135m] [--l2 0.01]
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from alignkit.data.render import render_prompt
from alignkit.evaluation.stats import wilson_interval
from alignkit.models import load_model, load_tokenizer
from alignkit.safety.dataset import load_safety_set


@torch.no_grad()
def last_token_states(model, tokenizer, rows: list[dict]) -> torch.Tensor:
    """[N, layers + 1, H]: every layer's hidden state at the last prompt token (layer 0: the embeddings)."""
    out = []
    for row in rows:
        ids = torch.tensor([render_prompt(tokenizer, row["prompt"], "always").ids])
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
        out.append(torch.stack([h[0, -1].float() for h in hidden]))
    return torch.stack(out)


def fit_probe(x: torch.Tensor, y: torch.Tensor, l2: float):
    """Logistic regression on standardised features; returns predict(x) -> bool [N]."""
    mean, std = x.mean(0), x.std(0) + 1e-4
    z = (x - mean) / std
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200)

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda q: ((q - mean) / std) @ w + b > 0


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
    x_train, x_test = last_token_states(model, tokenizer, train), last_token_states(model, tokenizer, test)
    y_train = torch.tensor([r["kind"] == "harmful" for r in train], dtype=torch.float32)
    y_test = torch.tensor([r["kind"] == "harmful" for r in test])
    fit_rows = torch.tensor([r["item"] <= 4 for r in train])
    val_rows = ~fit_rows
    scores = []
    for layer in range(x_train.shape[1]):
        predict = fit_probe(x_train[fit_rows, layer], y_train[fit_rows], args.l2)
        acc = (predict(x_train[val_rows, layer]) == y_train[val_rows].bool()).float().mean().item()
        scores.append(acc)
        print(f"layer {layer:2d}: validation accuracy {100 * acc:.1f}% ({int(val_rows.sum())} prompts)")
    best = max(range(len(scores)), key=lambda i: (scores[i], i))
    predict = fit_probe(x_train[:, best], y_train, args.l2)
    flagged = predict(x_test[:, best])
    story = torch.tensor([r["family"] == "story" for r in test])
    print(f"\nchosen on validation: layer {best}; test split ({len(test)} prompts, never trained):")
    print(f"  accuracy               {rate(flagged == y_test)}")
    print(f"  harmful flagged        {rate(flagged[y_test])}")
    print(f"  benign flagged         {rate(flagged[~y_test])}")
    print(f"  story wording accuracy {rate((flagged == y_test)[story])}")


if __name__ == "__main__":
    main()
