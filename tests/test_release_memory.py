"""hardware.release_memory: the heap is trimmed on glibc, skipped elsewhere; the demo calls it between stages."""

import platform

import pytest

from alignkit import hardware


@pytest.fixture(autouse=True)
def _fresh_lookup():
    hardware._malloc_trim.cache_clear()
    yield
    hardware._malloc_trim.cache_clear()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="needs glibc")
def test_trims_on_glibc():
    assert hardware._malloc_trim() is not None
    assert hardware.release_memory() is True


def test_other_c_libraries_only_collect(monkeypatch):
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("musl", "1.2"))
    assert hardware._malloc_trim() is None
    assert hardware.release_memory() is False
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    hardware._malloc_trim.cache_clear()
    assert hardware.release_memory() is False
