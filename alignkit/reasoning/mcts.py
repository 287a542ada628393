"""Step-level Monte-Carlo tree search (after Xie et al. 2024, "Monte Carlo Tree Search Boosts Reasoning via
Iterative Preference Learning", arXiv:2405.00451), as small pure functions.

A node is a prefix of reasoning steps (the root: no step). One simulation:

1. **selection** (:func:`select`): from the root, repeatedly go to the child with the highest score until a
   node without children or a terminal node. ``puct`` (default, AlphaZero's rule with prior p = 1/K over
   the K children)::

       score(child) = Q(child) + c * p(child) * sqrt(N(parent)) / (1 + N(child))

   ``ucb1``: Q(child) + c * sqrt(ln N(parent) / N(child)), an unvisited child first. Q = value sum / N
   (0 for an unvisited node). Ties go to the earlier child.
2. **expansion** (:func:`expand`): a non-terminal leaf gets up to K children from ``expand_fn(steps)``
   (sampled next steps; duplicates and empty steps dropped). A child is terminal when ``is_terminal``
   says so (its step holds the final answer) or at ``max_depth`` steps.
3. **evaluation**: every new child is valued once by ``value_fn(list of step prefixes)`` (rollouts to the
   verifier, or the verifier itself for a finished solution): its N = 1 and value sum = v.
   A terminal leaf selected again is valued again by ``value_fn``.
4. **backup** (:func:`backup`): the selected path (root .. leaf) gets N += 1 and value sum += the mean
   value of the new children (or the terminal leaf's value).

Preference pairs (:func:`sibling_pairs`): for every node with at least two valued children, the children
with the highest and lowest Q give (prefix = the node's steps, chosen step, rejected step) when their gap
is at least ``min_gap``; pairs are returned largest gap first.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Node", "backup", "expand", "puct_score", "search", "select", "sibling_pairs", "ucb1_score"]

RULES = ("puct", "ucb1")


@dataclass
class Node:
    steps: tuple[str, ...] = ()
    prior: float = 1.0
    visits: int = 0
    value_sum: float = 0.0
    terminal: bool = False
    children: list[Node] = field(default_factory=list)

    @property
    def q(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0

    @property
    def step(self) -> str:
        return self.steps[-1] if self.steps else ""

    def size(self) -> int:
        return 1 + sum(c.size() for c in self.children)

    def as_dict(self) -> dict:
        return {"step": self.step, "visits": self.visits, "q": round(self.q, 4), "terminal": self.terminal,
                "children": [c.as_dict() for c in self.children]}


def puct_score(child: Node, parent_visits: int, c: float) -> float:
    return child.q + c * child.prior * math.sqrt(parent_visits) / (1 + child.visits)


def ucb1_score(child: Node, parent_visits: int, c: float) -> float:
    if child.visits == 0:
        return math.inf
    return child.q + c * math.sqrt(math.log(max(parent_visits, 1)) / child.visits)


def select(root: Node, c: float = 1.0, rule: str = "puct") -> list[Node]:
    """The path root .. leaf that selection follows (see the module docstring)."""
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; expected one of {', '.join(RULES)}")
    score = puct_score if rule == "puct" else ucb1_score
    path = [root]
    node = root
    while node.children and not node.terminal:
        best = max(range(len(node.children)), key=lambda i: (score(node.children[i], node.visits, c), -i))
        node = node.children[best]
        path.append(node)
    return path


def expand(node: Node, steps: Sequence[str], is_terminal: Callable[[str], bool], max_depth: int) -> list[Node]:
    """Add a child per distinct non-empty step (prior 1/number of children); returns the new children."""
    distinct: list[str] = []
    for s in steps:
        s = s.strip()
        if s and s not in distinct:
            distinct.append(s)
    depth = len(node.steps) + 1
    new = [Node(steps=(*node.steps, s), prior=1.0 / len(distinct), terminal=is_terminal(s) or depth >= max_depth)
           for s in distinct]
    node.children.extend(new)
    return new


def backup(path: Sequence[Node], value: float) -> None:
    for n in path:
        n.visits += 1
        n.value_sum += value


def search(root: Node, expand_fn: Callable[[tuple[str, ...], int], list[str]],
           value_fn: Callable[[list[tuple[str, ...]], int], list[float]], *, simulations: int, c: float = 1.0,
           rule: str = "puct", max_depth: int = 8, is_terminal: Callable[[str], bool] = lambda s: False) -> Node:
    """Run ``simulations`` simulations from ``root`` (in place; returns it). ``expand_fn(steps, sim)``:
    candidate next steps after ``steps``; ``value_fn(prefixes, sim)``: a value in [0, 1] per prefix; ``sim``
    is the simulation's index (for seeding)."""
    for sim in range(simulations):
        path = select(root, c, rule)
        leaf = path[-1]
        if leaf.terminal:
            backup(path, value_fn([leaf.steps], sim)[0])
            continue
        children = expand(leaf, expand_fn(leaf.steps, sim), is_terminal, max_depth)
        if not children:  # nothing sampled: this prefix is a dead end
            leaf.terminal = True
            backup(path, 0.0)
            continue
        values = value_fn([ch.steps for ch in children], sim)
        for ch, v in zip(children, values):
            ch.visits, ch.value_sum = 1, float(v)
        backup(path, sum(values) / len(values))
    return root


def sibling_pairs(root: Node, min_gap: float = 0.0) -> list[dict]:
    """Step-level pairs from siblings (see the module docstring), largest value gap first."""
    pairs = []
    stack = [root]
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        valued = [ch for ch in node.children if ch.visits > 0]
        if len(valued) < 2:
            continue
        best = max(valued, key=lambda ch: ch.q)
        worst = min(valued, key=lambda ch: ch.q)
        gap = best.q - worst.q
        if gap > 0 and gap >= min_gap:
            pairs.append({"prefix_steps": list(node.steps), "chosen_step": best.step, "rejected_step": worst.step,
                          "chosen_value": best.q, "rejected_value": worst.q, "gap": gap})
    pairs.sort(key=lambda p: (-p["gap"], len(p["prefix_steps"])))
    return pairs
