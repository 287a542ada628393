"""Separation versus calibration of safety-trained models (issue 16; README "Safety alignment", later runs
of 2026-12-07). For models trained on ``--answer-prefix "Sure! "`` rows, scores every prompt of the chosen
items and wordings by s = log p("I") - log p("Sure") at the first answer token
(:mod:`alignkit.safety.calibration`) and prints, per wording family and overall: the ROC AUC of harmful
against benign (separation), harmful compliance / over-refusal at s = 0 (where greedy decoding puts the
model: calibration), and the lowest compliance any threshold reaches with at most 10 % over-refusal.

The default items 21-23 in the ``ask`` and ``story`` wordings are the validation split of the README (train
items, held out from the runs that are compared on them, in the test split's mix of wordings). Usage::

    python scripts/safety_first_token_roc.py --model runs/sft --model runs/safe-grpo [--items 21-23]
"""

from __future__ import annotations

import argparse

from alignkit.commands.safety_data import parse_items
from alignkit.data.render import as_user_turn, render_prompt
from alignkit.models import load_model, load_tokenizer
from alignkit.safety.calibration import auc, compliance_at_over_refusal, rates_at, refusal_scores
from alignkit.safety.dataset import WORDINGS
from alignkit.safety.items import ITEMS


def rows(items: set[int], families: list[str]) -> list[tuple[str, str, str]]:
    """(kind, family, prompt) for every category, item, kind and wording."""
    out = []
    for entries in ITEMS.values():
        for i, (harmful, benign, _answer) in enumerate(entries):
            if i in items:
                for kind, request in (("harmful", harmful), ("benign", benign)):
                    out += [(kind, f, w.format(r=request)) for f in families for w in WORDINGS[f]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="a model or run directory (repeatable)")
    ap.add_argument("--items", default="21-23", help="item numbers of each category (default 21-23)")
    ap.add_argument("--families", default="ask,story", help="wording families (default ask,story)")
    args = ap.parse_args()
    families = args.families.split(",")
    data = rows(parse_items(args.items), families)
    tokenizer = load_tokenizer(args.model[0])
    refuse, answer = (tokenizer.encode(t, add_special_tokens=False) for t in ("I", "Sure"))
    if len(refuse) != 1 or len(answer) != 1:
        raise SystemExit("this tokenizer does not spell 'I' and 'Sure' as one token each")
    prompt_ids = [render_prompt(tokenizer, as_user_turn(p)).ids for _, _, p in data]
    print(f"{len(data)} prompts: items {args.items}, wordings {args.families}")
    for spec in args.model:
        scores = refusal_scores(load_model(spec).eval(), prompt_ids, refuse[0], answer[0])
        parts = []
        for fam in families + ["all"]:
            h = [s for s, (k, f, _) in zip(scores, data) if k == "harmful" and fam in (f, "all")]
            b = [s for s, (k, f, _) in zip(scores, data) if k == "benign" and fam in (f, "all")]
            comply, over = rates_at(h, b)
            parts.append(f"{fam}: AUC {auc(h, b):.3f}, at s=0 compliance {100 * comply:.1f}% over-refusal "
                         f"{100 * over:.1f}%, best compliance with <=10% over-refusal "
                         f"{100 * compliance_at_over_refusal(h, b, 0.10):.1f}%")
        print(f"{spec}\n  " + "\n  ".join(parts), flush=True)


if __name__ == "__main__":
    main()
