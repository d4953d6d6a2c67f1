"""The per-user cache of rendered sets (vdm3d.train.cache) shared by several processes: concurrent builds of
one set, a torn or stale entry, a cache folder that cannot be written and a full cache disk (QA s32
qa_shared findings 2-5)."""

from __future__ import annotations

import errno
import tempfile
import threading

import numpy as np
import pytest

from vdm3d.train import cache, datasets
from vdm3d.train.datasets import ObjectSetConfig, load_object_depth, load_or_build

CFG = ObjectSetConfig(count=2, views=3, resolution=8)
RENDER = datasets.build_object_set


def _fake_set(cfg: ObjectSetConfig) -> dict[str, np.ndarray]:
    """Arrays of the shapes an object set has, with values that name the set (no rendering)."""
    rng = np.random.default_rng(cfg.count)
    n, v, r = cfg.count, cfg.views, cfg.resolution
    return {"rgb": rng.integers(0, 256, (n, v, r, r, 3), dtype=np.uint8),
            "c2w": rng.normal(size=(n, v, 4, 4)).astype(np.float32), "K": np.eye(3, dtype=np.float32),
            "elevation_deg": rng.uniform(0, 30, n).astype(np.float32)}


@pytest.fixture
def sets(tmp_path, monkeypatch):
    """A fresh VDM3D_CACHE, the object renderer replaced by :func:`_fake_set` (counting its calls), and no
    note of an earlier test remembered."""
    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_noted", set())
    calls = []
    monkeypatch.setattr(datasets, "build_object_set", lambda cfg, progress=None: calls.append(cfg) or _fake_set(cfg))
    return calls


def _entry() -> list:
    return sorted(datasets.cache_dir().iterdir())


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_two_builders_of_one_set_at_once_both_succeed_and_leave_one_loadable_file(sets, monkeypatch, at_once):
    """Each writes its own temp file: with one shared temp name the first rename moved the other's file away
    and the second crashed with FileNotFoundError after its whole render."""
    rendered = threading.Barrier(2, timeout=30)  # both rendered before either looks for the file
    written = threading.Barrier(2, timeout=30)  # both wrote their temp file before either renames it
    real_build, real_savez = datasets.build_object_set, np.savez

    def slow_build(cfg, progress=None):
        data = real_build(cfg, progress)
        rendered.wait()
        return data

    def slow_savez(file, **arrays):
        real_savez(file, **arrays)
        written.wait()

    monkeypatch.setattr(datasets, "build_object_set", slow_build)
    monkeypatch.setattr(np, "savez", slow_savez)
    results = at_once(lambda i: load_or_build(CFG, None), timeout=60)
    assert len(sets) == 2
    for got in results:
        _assert_same(got, _fake_set(CFG))
    files = _entry()
    assert [f.name for f in files] == [f"objects-train-2-8-{datasets._key(CFG)}.npz"]  # no temp file left
    with np.load(files[0]) as f:
        _assert_same({k: f[k] for k in f.files}, _fake_set(CFG))


def test_a_set_cached_by_another_process_during_the_render_is_not_written_again(sets, monkeypatch):
    def build_while_another_caches(cfg, progress=None):
        data = _fake_set(cfg)
        cache._write(path, data)  # the other process finishes first
        return data

    path = datasets.cache_dir() / f"objects-train-2-8-{datasets._key(CFG)}.npz"
    monkeypatch.setattr(datasets, "build_object_set", build_while_another_caches)
    before = []
    monkeypatch.setattr(cache, "_sweep_stale_temps", lambda p: before.append(p))
    _assert_same(load_or_build(CFG, None), _fake_set(CFG))
    assert before == [path]  # one write: the other's; this one saw its file and kept it
    assert [f.name for f in _entry()] == [path.name]


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zero_middle(path):
    data = bytearray(path.read_bytes())
    data[200:400] = bytes(200)
    path.write_bytes(bytes(data))


def _empty(path):
    path.write_bytes(b"")


def _missing_array(path):
    arrays = _fake_set(CFG)
    del arrays["c2w"]
    np.savez(path, **arrays)


def _wrong_shape(path):
    np.savez(path, **_fake_set(ObjectSetConfig(count=2, views=2, resolution=8)))


@pytest.mark.parametrize("damage,problem", [
    (_truncate, "(BadZipFile: File is not a zip file)"),
    (_zero_middle, "(BadZipFile: Bad CRC-32 for file 'rgb.npy')"),
    (_empty, "(EOFError: No data left in file)"),
    (_missing_array, "(it has no c2w array)"),
    (_wrong_shape, "(its rgb array is 2x2x8x8x3, not 2x3x8x8x3)"),
])
def test_an_unusable_cached_set_is_rendered_again_with_one_note(sets, capsys, damage, problem):
    """It used to crash every later run with a bare BadZipFile traceback that did not name the file."""
    load_or_build(CFG, None)
    (path,) = _entry()
    damage(path)
    capsys.readouterr()
    _assert_same(load_or_build(CFG, None), _fake_set(CFG))
    assert len(sets) == 2  # rendered again
    assert capsys.readouterr().err == (f"vdm3d: the cached set {path} could not be used {problem}; rendering it "
                                       "again (it is only a cache).\n")
    _assert_same(load_or_build(CFG, None), _fake_set(CFG))  # and cached again: no third render, no note
    assert len(sets) == 2 and capsys.readouterr().err == "" and [p.name for p in _entry()] == [path.name]


def test_a_torn_depth_cache_is_rendered_again(sets, capsys, monkeypatch):
    monkeypatch.setattr(datasets, "build_object_set", RENDER)  # real cameras: the depth is rendered from them
    cfg = ObjectSetConfig(count=1, views=1, resolution=8)
    first = load_object_depth(cfg, None)
    (path,) = [p for p in _entry() if p.name.startswith("objects-depth-")]
    _truncate(path)
    capsys.readouterr()
    np.testing.assert_array_equal(load_object_depth(cfg, None), first)
    assert capsys.readouterr().err.startswith(f"vdm3d: the cached set {path} could not be used (BadZipFile: ")
    with np.load(path) as f:
        np.testing.assert_array_equal(f["depth"], first)


def _refuse_mkstemp(monkeypatch, error: int, text: str):
    """``tempfile.mkstemp`` in the cache folder fails like a read-only mount (or a full disk) does."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and str(dir).startswith(str(datasets.cache_dir())):
            raise OSError(error, text, str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_a_cache_that_cannot_be_written_is_one_note_and_the_sets_come_from_memory(sets, capsys, monkeypatch):
    """A read-only VDM3D_CACHE (or HOME) was an OSError traceback from mkdir before any work."""
    _refuse_mkstemp(monkeypatch, errno.EROFS, "Read-only file system")
    folder = datasets.cache_dir()
    _assert_same(load_or_build(CFG, None), _fake_set(CFG))
    other = ObjectSetConfig(count=3, views=3, resolution=8)
    _assert_same(load_or_build(other, None), _fake_set(other))  # a second set: no second note
    assert capsys.readouterr().err == (
        f"vdm3d: the set cache {folder} cannot be written (Read-only file system), so the sets are used from memory "
        "without caching and the next run renders them again; set VDM3D_CACHE to a writable folder to keep them.\n")
    assert list(folder.iterdir()) == []


def test_a_read_only_cache_that_holds_the_set_is_read_without_a_note(sets, monkeypatch, capsys):
    load_or_build(CFG, None)
    _refuse_mkstemp(monkeypatch, errno.EROFS, "Read-only file system")
    capsys.readouterr()
    _assert_same(load_or_build(CFG, None), _fake_set(CFG))
    assert len(sets) == 1 and capsys.readouterr().err == ""


def test_a_full_cache_disk_names_the_cache_and_removes_the_temp_file(sets, capsys, monkeypatch):
    real_savez = np.savez

    def savez_until_full(file, **arrays):
        real_savez(file, **arrays)  # most of it was written when the disk filled
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_until_full)
    folder = datasets.cache_dir()
    _assert_same(load_or_build(CFG, None), _fake_set(CFG))
    assert capsys.readouterr().err == (
        f"vdm3d: the disk of the set cache {folder} is full (No space left on device), so the sets are used from "
        "memory without caching and the next run renders them again; free space there or set VDM3D_CACHE to a "
        "folder on another disk to keep them.\n")
    assert list(folder.iterdir()) == []  # no temp file keeps the disk full


def test_a_temp_file_of_a_writer_killed_long_ago_is_swept_and_a_young_one_kept(sets):
    import os
    import time

    folder = datasets.cache_dir()
    folder.mkdir(parents=True)
    name = f"objects-train-2-8-{datasets._key(CFG)}.npz"
    old, young, other = folder / f".{name}.abc123.tmp", folder / f".{name}.def456.tmp", folder / ".other.npz.x.tmp"
    for p in (old, young, other):
        p.write_bytes(b"partial")
    long_ago = time.time() - 2 * cache.STALE_TEMP_SECONDS
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    load_or_build(CFG, None)
    assert sorted(p.name for p in folder.iterdir()) == sorted([name, young.name, other.name])


def test_train_vae_on_a_full_cache_disk_finishes_and_blames_the_cache_not_the_run(tmp_path, monkeypatch, capsys):
    """QA: `error: full1: the disk is full ...; nothing of full1 was kept` sent the user to free space on the
    run's disk, left the cache's temp file filling the cache's disk, and lost the render."""
    from vdm3d.cli.main import main

    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cache, "_noted", set())
    real_savez = np.savez

    def savez_until_full(file, **arrays):
        real_savez(file, **arrays)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", savez_until_full)
    out = tmp_path / "run"
    rc = main(["--threads", "1", "train", "vae", "--out", str(out), "--objects.count", "2", "--objects.views", "2",
               "--objects.resolution", "16", "--rooms.count", "1", "--rooms.paths", "1", "--rooms.frames", "2",
               "--rooms.resolution", "16", "--model.channels", "4", "8", "--task.batch", "2", "--task.crop", "8",
               "--loop.steps", "2", "--loop.cpu", "--heldout", "1", "--heldout-rooms", "1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    folder = tmp_path / "cache" / "train"
    assert err.count(f"vdm3d: the disk of the set cache {folder} is full (No space left on device)") == 1
    assert str(out) not in err and (out / "vae.safetensors").is_file()
    assert list(folder.iterdir()) == []
