"""CaseCheckpoints: an evaluation's finished cases kept in its run folder, loaded by a resume, refused when the
case list changed."""

import pytest
import torch

from vdm3d.errors import ConfigError
from vdm3d.eval.checkpoints import CaseCheckpoints
from vdm3d.io.runs import RunFolder, partial_folder


def test_a_resume_loads_the_finished_cases_and_refuses_a_changed_case_list(tmp_path):
    out, strip = tmp_path / "ev", torch.arange(12, dtype=torch.float32).reshape(2, 2, 3) / 12
    result = {"psnr": 21.25, "segments": (1.5, float("nan")), "n": 3}
    with pytest.raises(KeyboardInterrupt):
        with RunFolder(out, config={"cases": 2}) as run:
            cases = CaseCheckpoints(run)
            assert cases.load(0, "a") is None  # not resuming
            assert cases.save(0, "a", result, {"strip": strip}) is result
            raise KeyboardInterrupt
    assert (partial_folder(out) / "checkpoints" / "stage-case-0000.safetensors").is_file()
    with RunFolder(out, config={"cases": 2}, resume=True) as run:
        cases = CaseCheckpoints(run)
        saved = cases.load(0, "a")
        assert saved.result["psnr"] == 21.25 and saved.result["n"] == 3 and saved.result["segments"][0] == 1.5
        assert saved.result["segments"][1] != saved.result["segments"][1]  # NaN comes back as NaN
        torch.testing.assert_close(saved.arrays["strip"], strip, atol=0, rtol=0)
        assert cases.load(1, "b") is None  # not finished: run it
        with pytest.raises(ConfigError, match="case 1 of the interrupted run there was 'a', and of this one it is 'b'"):
            cases.load(0, "b")


def test_without_a_run_folder_nothing_is_kept():
    cases = CaseCheckpoints(None)
    assert cases.save(0, "a", {"psnr": 1.0}) == {"psnr": 1.0} and cases.load(0, "a") is None
