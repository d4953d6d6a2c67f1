"""Training, validation and held-out sets come from disjoint seed ranges and differ in content."""

from __future__ import annotations

import numpy as np

from vdm3d.train.datasets import SEED_OFFSETS, ObjectSetConfig, build_object_set


def test_seed_ranges_are_disjoint_for_any_realistic_set_size():
    starts = sorted(SEED_OFFSETS.values())
    assert starts[0] == 0 and all(b - a >= 1_000_000 for a, b in zip(starts, starts[1:]))


def test_splits_render_different_objects_and_the_same_split_is_reproducible():
    sets = {s: build_object_set(ObjectSetConfig(count=2, views=2, resolution=32, split=s))["rgb"]
            for s in ("train", "val", "heldout")}
    assert np.array_equal(sets["val"], build_object_set(ObjectSetConfig(count=2, views=2, resolution=32,
                                                                         split="val"))["rgb"])
    for a in sets:
        for b in sets:
            if a < b:
                diff = np.abs(sets[a].astype(int) - sets[b].astype(int)).mean()
                assert diff > 5, (a, b, diff)  # different objects, not the same renders


def test_a_change_to_the_rendering_code_renders_the_set_again(tmp_path, monkeypatch):
    """The held-out sets were keyed by a hand-bumped constant: a machine with an old cache scored old inputs
    (QA: a Telea baseline 15.39 dB fresh against the card's 15.30 dB)."""
    from vdm3d.train import datasets

    monkeypatch.setenv("VDM3D_CACHE", str(tmp_path))
    cfg = ObjectSetConfig(count=1, views=1, resolution=8, split="heldout")
    datasets.load_or_build(cfg, None)
    first = sorted(p.name for p in (tmp_path / "train").glob("*.npz"))
    datasets.load_or_build(cfg, None)  # same code: the cached file
    assert sorted(p.name for p in (tmp_path / "train").glob("*.npz")) == first and len(first) == 1

    monkeypatch.setattr(datasets, "render_code_hash", lambda *a, **k: "0123456789ab")  # the renderer changed
    datasets.load_or_build(cfg, None)
    names = sorted(p.name for p in (tmp_path / "train").glob("*.npz"))
    assert len(names) == 2 and names[0].rsplit("-", 1)[0] == names[1].rsplit("-", 1)[0] == "objects-heldout-1-8"


def _package(root, files: dict[str, str]):
    for name, text in files.items():
        path = root / "vdm3d" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_render_code_hash_follows_imports_and_ignores_docstrings_and_comments(tmp_path, monkeypatch):
    from vdm3d.train import datasets

    def code_hash(files):
        datasets.render_code_hash.cache_clear()
        _package(tmp_path, files)
        return datasets.render_code_hash(("vdm3d.world",))

    # the walk finds modules beside a copy of datasets.py: point it at a scratch vdm3d package
    (tmp_path / "vdm3d" / "train").mkdir(parents=True)
    monkeypatch.setattr(datasets, "__file__", str(tmp_path / "vdm3d" / "train" / "datasets.py"))
    try:
        base = code_hash({"world.py": '"""A world."""\nfrom vdm3d.paint import colour\n',
                          "paint.py": "def colour():\n    return 0.5\n", "errors.py": "X = 1\n"})
        assert base == code_hash({"world.py": '"""Other words."""\n# a comment\nfrom vdm3d.paint import colour\n'})
        assert base == code_hash({"errors.py": "X = 2\n"})  # not followed: cannot change an array
        changed = code_hash({"paint.py": "def colour():\n    return 0.6\n"})  # an imported module's code
        assert changed != base and len(changed) == 12
        datasets.render_code_hash.cache_clear()
        assert datasets.render_code_hash(("vdm3d.world",), follow=False) != changed  # world.py's own code only
    finally:
        datasets.render_code_hash.cache_clear()


def test_the_shipped_rendering_code_is_in_the_hash():
    from vdm3d.train import datasets

    seen = []
    real = datasets._code
    try:
        datasets._code = lambda path: (seen.append(path.relative_to(path.parents[1]).as_posix()) or real(path))
        datasets.render_code_hash.cache_clear()
        datasets.render_code_hash()
    finally:
        datasets._code = real
        datasets.render_code_hash.cache_clear()
    for module in ("train/datasets.py", "procedural/objects.py", "procedural/rooms.py", "geometry/mesh_render.py",
                   "geometry/warp.py"):
        assert any(s.endswith(module) for s in seen), module
    assert not any(s.endswith(("io/runs.py", "errors.py")) for s in seen)


def test_a_light_share_repaints_that_share_of_the_objects_and_leaves_the_others_bit_for_bit():
    from vdm3d.data.procedural.textures import LUMA

    plain = build_object_set(ObjectSetConfig(count=12, views=1, resolution=24))
    mixed = build_object_set(ObjectSetConfig(count=12, views=1, resolution=24, light_share=0.5))
    same = [bool(np.array_equal(a, b)) for a, b in zip(plain["rgb"], mixed["rgb"])]
    assert 3 <= same.count(False) <= 9, same  # about half, drawn per seed
    assert np.array_equal(plain["c2w"], mixed["c2w"])  # the cameras do not move
    fg = lambda im: im[(im < 250).any(-1)].astype(np.float32)  # noqa: E731 (object pixels on white)
    for a, b, kept in zip(plain["rgb"], mixed["rgb"], same):
        if not kept:  # repainted objects are brighter and greyer than their originals
            x, y = fg(a[0]), fg(b[0])
            assert (y @ LUMA).mean() > (x @ LUMA).mean() - 5
            sat = lambda c: (c.max(-1) - c.min(-1)).mean()  # noqa: E731
            assert sat(y) < sat(x) + 5


def test_a_symmetric_share_mirrors_that_share_of_the_objects_and_leaves_the_others_bit_for_bit():
    """Mirror-symmetric objects (joined with their image) are drawn per seed, independently of the light share."""
    plain = build_object_set(ObjectSetConfig(count=12, views=1, resolution=24))
    mixed = build_object_set(ObjectSetConfig(count=12, views=1, resolution=24, symmetric_share=0.5))
    same = [bool(np.array_equal(a, b)) for a, b in zip(plain["rgb"], mixed["rgb"])]
    assert 3 <= same.count(False) <= 9, same
    assert np.array_equal(plain["c2w"], mixed["c2w"])
    both = build_object_set(ObjectSetConfig(count=12, views=1, resolution=24, symmetric_share=0.5, light_share=0.5))
    light = build_object_set(ObjectSetConfig(count=12, views=1, resolution=24, light_share=0.5))
    for a, b, c, kept in zip(plain["rgb"], light["rgb"], both["rgb"], same):
        # an object neither mirrored nor repainted is the plain one; a mirrored one differs from the repainted
        assert np.array_equal(b, c) == kept
        if np.array_equal(a, b):
            assert np.array_equal(a, c) == kept
