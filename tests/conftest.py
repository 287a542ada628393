import os

import pytest


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
