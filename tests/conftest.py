import os

# Tests run tiny models: one thread per process is fastest (and on a busy 2-core machine, several
# threads per process oversubscribe the cores badly). Set before torch is imported; subprocesses inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# the tests never touch the network: a hub name resolves from a cache a test builds, or fails offline
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ALIGNKIT_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set ALIGNKIT_SLOW=1 to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tokenizer():
    """The SmolLM2 tokenizer with its chat template (what tiny-random uses too)."""
    from alignkit.models.tokenizer import load_smollm2_tokenizer

    return load_smollm2_tokenizer()

