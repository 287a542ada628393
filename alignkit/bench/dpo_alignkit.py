"""Child process of ``alignkit bench dpo``: the alignkit side."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from alignkit.bench import child_settings, emit_result, train_alignkit


def main() -> None:
    from alignkit.methods.dpo import DPO

    s = child_settings()
    # a cold reference cache: the reference pass is part of what is timed, as in a first run
    ref_cache = Path(s["output_dir"]) / "ref-cache"
    shutil.rmtree(ref_cache, ignore_errors=True)
    os.environ["ALIGNKIT_REF_CACHE"] = str(ref_cache)
    train_s, rows = train_alignkit(DPO, s, [f"batch_size={s['batch_size']}", f"beta={s['beta']}", "loss=sigmoid"])
    losses = [r["loss"] for r in rows if "loss" in r]
    emit_result({"train_s": train_s, "first_loss": losses[0], "losses": losses})


if __name__ == "__main__":
    main()
