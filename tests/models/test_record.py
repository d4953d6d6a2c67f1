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
