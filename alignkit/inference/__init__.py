"""Aligning a model without training it (README "Without training the policy"): in-context examples picked
per query (:mod:`.icl`), a prompt optimizer in front (BPO) and a response corrector after (Aligner)
(:mod:`.rewriters`), combined for the commands by :mod:`.aids`."""
