"""Child process of ``alignkit bench dpo``: the alignkit side."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from alignkit.bench import emit_result


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--args", required=True)
    s = json.loads(p.parse_args().args)
    from alignkit.config import load_config
    from alignkit.engine.logging import read_metrics
    from alignkit.engine.trainer import train
    from alignkit.methods.dpo import DPO

    run_dir = Path(s["output_dir"]) / "alignkit-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    # a cold reference cache: the reference pass is part of what is timed, as in a first run
    ref_cache = Path(s["output_dir"]) / "ref-cache"
    shutil.rmtree(ref_cache, ignore_errors=True)
    os.environ["ALIGNKIT_REF_CACHE"] = str(ref_cache)
    config = load_config(DPO.config_cls, None, [
        f"model={s['model']}", f"data={s['data']}", f"output_dir={run_dir}", f"max_steps={s['steps']}",
        f"batch_size={s['batch_size']}", f"max_length={s['max_length']}", f"lora.r={s['lora_r']}",
        f"lora.alpha={2 * s['lora_r']}", f"lr={s['lr']}", f"beta={s['beta']}", f"seed={s['seed']}",
        "loss=sigmoid", "scheduler=linear", "max_grad_norm=1.0",
    ])
    t0 = time.perf_counter()
    train(DPO, config)
    train_s = time.perf_counter() - t0
    losses = [r["loss"] for r in read_metrics(run_dir) if "loss" in r]
    emit_result({"train_s": train_s, "first_loss": losses[0], "losses": losses})


if __name__ == "__main__":
    main()
