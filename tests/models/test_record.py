"""`eval --record` and `train cards` never write into the installed package unless told to."""

import json
import shutil

import pytest

from vdm3d.cli.main import main
from vdm3d.errors import ConfigError
from vdm3d.models.tiny import WEIGHTS_DIR
from vdm3d.models.tiny.record import card_path, record_result


def test_recording_needs_an_explicit_place(tmp_path):
    with pytest.raises(ConfigError, match="--weights-dir DIR .* or --record-into-package"):
        card_path("video", None, into_package=False)
    assert card_path("video", None, into_package=True) == WEIGHTS_DIR / "video.json"
    shutil.copy(WEIGHTS_DIR / "video.json", tmp_path / "video.json")
    before = (WEIGHTS_DIR / "video.json").read_bytes()
    path = record_result("video", "orbit_test", {"psnr_db": 12.5}, tmp_path, into_package=False)
    assert path == tmp_path / "video.json"
    assert json.loads(path.read_text())["card"]["heldout"]["orbit_test"] == {"psnr_db": 12.5}
    assert (WEIGHTS_DIR / "video.json").read_bytes() == before


def test_eval_record_refuses_the_package_before_evaluating(capsys):
    assert main(["eval", "depth", "--rooms", "1", "--record"]) == 2
    assert "--record-into-package" in capsys.readouterr().err


def test_train_cards_prints_or_writes_where_asked(tmp_path, capsys):
    before = (WEIGHTS_DIR / "MODEL_CARDS.md").read_bytes()
    assert main(["train", "cards"]) == 0
    assert "# Shipped tiny models" in capsys.readouterr().out
    assert main(["train", "cards", "--out", str(tmp_path / "cards.md")]) == 0
    assert (tmp_path / "cards.md").read_text().startswith("# Shipped tiny models")
    assert (WEIGHTS_DIR / "MODEL_CARDS.md").read_bytes() == before


def test_eval_stylize_record_refuses_the_package_before_evaluating(tmp_path, capsys):
    """The stylize evaluation wrote its means into both shipped cards whatever the options; now like the others."""
    before = {n: (WEIGHTS_DIR / f"{n}.json").read_bytes() for n in ("stylize_anchor", "stylize_inbetween")}
    assert main(["eval", "stylize", "--record", "--out", str(tmp_path / "ev")]) == 2
    err = capsys.readouterr().err
    assert "'stylize_anchor'" in err and "--record-into-package" in err
    assert not (tmp_path / "ev").exists()
    assert {n: (WEIGHTS_DIR / f"{n}.json").read_bytes() for n in before} == before


def test_eval_stylize_records_into_a_trained_models_file(tmp_path):
    from vdm3d.eval.stylize import card_files, record_in_cards

    for name in ("stylize_anchor", "stylize_inbetween"):
        shutil.copy(WEIGHTS_DIR / f"{name}.json", tmp_path / f"{name}.json")
    cards = card_files((str(tmp_path / "stylize_anchor.json"), str(tmp_path / "stylize_inbetween.json")), False)
    record_in_cards(cards, {"job": {"psnr": 17.25}}, cases=2, frames=8, steps=4, split="val")
    for name in ("stylize_anchor", "stylize_inbetween"):
        card = json.loads((tmp_path / f"{name}.json").read_text())["card"]["heldout"]
        assert card["val_stylize"] == {"cases": 2, "frames": 8, "steps": 4, "split": "val", "job_psnr": 17.25}


def test_weights_dir_naming_the_package_folder_needs_record_into_package(tmp_path, monkeypatch):
    """`--weights-dir src/vdm3d/models/tiny/weights` (the README's recipe) rewrote the shipped card silently."""
    monkeypatch.chdir(WEIGHTS_DIR.parent)
    with pytest.raises(ConfigError) as e:
        card_path("depth", "weights/../weights", into_package=False)  # however it is spelled
    assert str(e.value) == ("--weights-dir weights/../weights is the package's own weights folder, so --record "
                            "would rewrite the shipped card depth.json; add --record-into-package to change it "
                            "on purpose, or record into a copy of the folder.")
    assert card_path("depth", "weights", into_package=True).resolve() == WEIGHTS_DIR / "depth.json"


def test_eval_depth_record_with_the_package_folder_refused_before_evaluating(capsys):
    before = (WEIGHTS_DIR / "depth.json").read_bytes()
    assert main(["eval", "depth", "--rooms", "1", "--record", "--weights-dir", str(WEIGHTS_DIR)]) == 2
    assert "add --record-into-package" in capsys.readouterr().err
    assert (WEIGHTS_DIR / "depth.json").read_bytes() == before


def test_stylize_record_into_a_shipped_card_by_path_needs_the_flag():
    from vdm3d.eval.stylize import card_files

    with pytest.raises(ConfigError, match="shipped card stylize_anchor.json; add --record-into-package"):
        card_files((str(WEIGHTS_DIR / "stylize_anchor.json"), "stylize_inbetween"), False)


def test_replacing_an_entry_measured_on_other_counts_says_so(tmp_path, capsys):
    shutil.copy(WEIGHTS_DIR / "depth.json", tmp_path / "depth.json")
    old = json.loads((tmp_path / "depth.json").read_text())["card"]["heldout"]["depth"]
    assert (old["rooms"], old["images"]) == (30, 480)
    record_result("depth", "depth", {"task": "depth", "rooms": 2, "images": 32, "abs_rel": 0.16}, tmp_path, False)
    assert capsys.readouterr().err == (f"note: {tmp_path / 'depth.json'}: replaced 'depth' measured on rooms 30, "
                                       "images 480 by one measured on rooms 2, images 32.\n")
    record_result("depth", "depth", {"task": "depth", "rooms": 2, "images": 32, "abs_rel": 0.15}, tmp_path, False)
    assert capsys.readouterr().err == ""  # same counts: a plain refresh
    assert json.loads((tmp_path / "depth.json").read_text())["card"]["heldout"]["depth"]["abs_rel"] == 0.15
