"""Method registry: CLI name -> ``"module:Class"`` (imported lazily so ``--help`` stays fast)."""

from __future__ import annotations

import importlib

METHODS: dict[str, str | None] = {
    "sft": "alignkit.methods.sft:SFT",
    "rm": "alignkit.methods.rm:RM",
    "dpo": "alignkit.methods.dpo:DPO",
    "kto": "alignkit.methods.kto:KTO",
    "ift": "alignkit.methods.ift:IFT",
    "ppo": "alignkit.methods.ppo:PPO",
    "grpo": "alignkit.methods.grpo:GRPO",
    "online-dpo": "alignkit.methods.online_dpo:OnlineDPO",
    "self-reward": "alignkit.pipelines.self_reward:SelfReward",
    "cost": "alignkit.methods.cost:Cost",
    "safe-grpo": "alignkit.methods.safe_grpo:SafeGRPO",
    "safe-ppo": "alignkit.methods.safe_ppo:SafePPO",
    "bpo": "alignkit.methods.rewriters:BPOMethod",
    "aligner": "alignkit.methods.rewriters:AlignerMethod",
    "prm": "alignkit.methods.prm:PRM",
    "step-dpo": "alignkit.methods.step_dpo:StepDPO",
    "sppo": "alignkit.methods.sppo:SPPO",
    "mcts-dpo": "alignkit.pipelines.mcts_dpo:MCTSDPO",
}


def get_method(name: str):
    target = METHODS[name]
    if target is None:
        return None
    module, _, cls = target.partition(":")
    return getattr(importlib.import_module(module), cls)
