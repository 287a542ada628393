"""Knowledge distillation from a teacher's token distribution (Hinton et al. 2015, "Distilling the Knowledge
in a Neural Network"; reverse KL for language models: Gu et al. 2024, "MiniLLM"). Pure tensor functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, direction: str = "forward",
                    temperature: float = 1.0) -> torch.Tensor:
    """Per-position KL between the teacher's and the student's next-token distributions, shape [M].

    With p_T = softmax(teacher / tau), p_S = softmax(student / tau) over the vocabulary ([M, V] logits)::

        forward:  tau^2 * sum_v p_T(v) (log p_T(v) - log p_S(v))      KL(p_T || p_S), mode-covering
        reverse:  tau^2 * sum_v p_S(v) (log p_S(v) - log p_T(v))      KL(p_S || p_T), mode-seeking

    The tau^2 factor keeps gradient sizes comparable across temperatures (Hinton et al.). The teacher's
    logits are detached; both must index the same vocabulary (the same tokenizer).
    """
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student and teacher logits differ in shape: {list(student_logits.shape)} vs "
                         f"{list(teacher_logits.shape)} (distillation needs the same tokenizer)")
    log_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    if direction == "forward":
        kl = (log_t.exp() * (log_t - log_s)).sum(-1)
    elif direction == "reverse":
        kl = (log_s.exp() * (log_s - log_t)).sum(-1)
    else:
        raise ValueError(f"direction must be 'forward' or 'reverse', got {direction!r}")
    return kl * temperature**2
