"""The user cache (fastmotive/cache.py): where it lives, what a damaged or unwritable one does, its bound."""
import json

import pytest

from fastmotive import cache


def test_where_the_cache_lives(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTMOTIVE_CACHE_DIR", str(tmp_path / "own"))
    assert cache.cache_dir() == tmp_path / "own"
    for off in ("off", "", "OFF", "0"):
        monkeypatch.setenv("FASTMOTIVE_CACHE_DIR", off)
        assert cache.cache_dir() is None
    monkeypatch.delenv("FASTMOTIVE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.cache_dir() == tmp_path / "xdg" / "fastmotive"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "fastmotive"


@pytest.fixture
def own_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTMOTIVE_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_remembered_values_come_back_across_processes_reads(own_cache):
    assert cache.lookup("t", "k") is None
    cache.remember("t", "k", {"total": 3, "list": [1, 2]})
    cache.remember("t", "k2", 5)
    assert cache.lookup("t", "k") == {"total": 3, "list": [1, 2]} and cache.lookup("t", "k2") == 5
    assert json.loads((own_cache / "t.json").read_text()) == {"k": {"total": 3, "list": [1, 2]}, "k2": 5}
    assert [p.name for p in own_cache.iterdir()] == ["t.json"], "no temporary file is left behind"


def test_a_damaged_table_is_ignored_and_rewritten(own_cache):
    own_cache.mkdir()
    (own_cache / "t.json").write_text('{"k": 1')   # cut short
    assert cache.lookup("t", "k") is None
    cache.remember("t", "k", 2)
    assert cache.lookup("t", "k") == 2
    (own_cache / "t.json").write_text("[1, 2]")   # not a table
    assert cache.lookup("t", "k") is None


def test_an_unwritable_cache_is_no_error(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("FASTMOTIVE_CACHE_DIR", str(blocker / "cache"))   # a folder under a file: mkdir fails
    cache.remember("t", "k", 1)
    assert cache.lookup("t", "k") is None


def test_off_remembers_nothing(monkeypatch, tmp_path):
    monkeypatch.setenv("FASTMOTIVE_CACHE_DIR", "off")
    monkeypatch.chdir(tmp_path)
    cache.remember("t", "k", 1)
    assert cache.lookup("t", "k") is None and not list(tmp_path.iterdir())


def test_a_table_keeps_its_newest_entries(own_cache, monkeypatch):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 3)
    for key in "abcd":
        cache.remember("t", key, key)
    cache.remember("t", "b", "again")   # re-remembered: now the newest
    cache.remember("t", "e", "e")
    assert json.loads((own_cache / "t.json").read_text()) == {"d": "d", "b": "again", "e": "e"}


def test_fingerprints_tell_their_parts_apart():
    assert cache.fingerprint("a", 1) == cache.fingerprint("a", 1)
    assert len({cache.fingerprint("a", 1), cache.fingerprint("a", "1x"), cache.fingerprint("a1"),
                cache.fingerprint("a", 1, None)}) == 4
