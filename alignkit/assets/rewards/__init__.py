"""Verifiable reward functions shipped with alignkit (``reward=FILE.py:FUNC`` finds these files by bare name,
or import them as ``alignkit.assets.rewards.MODULE:FUNC``). Each has TRL's reward-function signature."""
