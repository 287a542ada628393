"""``alignkit mcts-dpo``: iterated step-level preference learning from Monte-Carlo tree search (after Xie
et al. 2024, "Monte Carlo Tree Search Boosts Reasoning via Iterative Preference Learning", arXiv:2405.00451).

    for K in 1..iterations, from M = model:
        trees   for each math problem (data=, rows prompt + answer), a step-level tree search with M
                (alignkit.reasoning.mcts): `simulations` simulations, PUCT/UCB1 selection (`selection`,
                `exploration`), expansion by sampling `branching` next steps (each cut at its first line,
                at most `step_max_new_tokens` tokens), each new step valued by `rollouts` continuations
                to the verifier (a finished solution: the verifier itself), backup
        pairs   per problem, the `pairs_per_prompt` sibling pairs with the largest value gap
                (at least `min_gap`): Step-DPO rows (prompt, prefix_steps, chosen_step, rejected_step)
        model   one `alignkit step-dpo` run through the engine on those pairs, from M with M as the
                reference (every DPO key applies) -> M_K

Directory layout::

    config.yaml, metrics.jsonl (one row per iteration), summary.json, final -> iter-N/model/final
    iter-K/trees.jsonl    per problem: root value and visits, node count, the tree
    iter-K/pairs.jsonl    the Step-DPO rows
    iter-K/model/         the step-dpo run directory (config.yaml, metrics.jsonl, final/, checkpoints/)
    iter-K/stages.json, iter-K/summary.json (written last: the iteration is finished)

Resume (``resume=true``): finished iterations are kept; in an unfinished one the trees/pairs are reused when
their fingerprint (model, data, search settings) matches, and an interrupted step-dpo run continues from
its checkpoint (the stage machinery of the self-rewarding loop).
"""

from alignkit.pipelines.mcts_dpo.loop import MCTSDPO, MCTSDPOConfig, run_mcts_dpo

__all__ = ["MCTSDPO", "MCTSDPOConfig", "run_mcts_dpo"]
