"""Building training data with AI feedback, and the pieces the self-rewarding loop is made of.

Builders (each also an ``alignkit data`` subcommand, each writing a format of README "Data formats"):

* :func:`~alignkit.aifeedback.backtranslate.backtranslate` -- instruction backtranslation
  (unlabelled texts -> prompt-completion rows);
* :func:`~alignkit.aifeedback.critique.critique_revise` -- critique and revise (preference rows:
  chosen = revised, rejected = original);
* :func:`~alignkit.aifeedback.rlaif.rlaif_pairs` -- candidates from one model judged by another
  (preference rows);
* :func:`~alignkit.aifeedback.eft.build_eft_examples` -- evaluation fine-tuning examples (judge format)
  from ranked data.

Shared pieces: :mod:`.instructions` (few-shot prompt synthesis and filters), :mod:`.pairs` (best vs
worst selection, histograms), :mod:`.judging` (the bridge to :mod:`alignkit.judges`),
:mod:`.generation` (model calls), :mod:`.prompts` (all prompt wording), :mod:`.io` (atomic files).
Heavy modules (torch, transformers, the judges) are imported only when a model is used.
"""
