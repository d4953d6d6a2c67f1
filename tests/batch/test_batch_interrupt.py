"""A stopped batch (Ctrl-C, SIGTERM, SIGHUP) says which cases are done, which was stopped and whether its
checkpoint is kept, writes batch.json, and exits 128 + the signal; on Ray too (Ray's own SIGTERM handler
used to end it with a C++ stack dump and SIGABRT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vdm3d.batch import runner
from vdm3d.batch.runner import CaseResult, summary_table
from vdm3d.cli.main import main
from vdm3d.errors import Interrupted

SPOT = Path(__file__).resolve().parents[2] / "src" / "vdm3d" / "assets" / "spot.png"


def _manifest(tmp_path: Path) -> Path:
    (tmp_path / "m.jsonl").write_text("".join(json.dumps({"name": n, "job": "object", "image": str(SPOT)}) + "\n"
                                              for n in "abc"))
    return tmp_path / "m.jsonl"


def _fake_cases(monkeypatch, out: Path, signum: int = signal.SIGTERM, checkpoint: bool = True):
    """run_command as the real one behaves: a finishes (its run folder appears); b is running (it logs, writes
    its checkpoint) when the batch is stopped."""
    calls = []

    def run_command(argv, log, threads, driver_pid=None, debug=False):
        name = Path(log).stem
        calls.append(name)
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:
            f.write(f"$ vdm3d {' '.join(argv)}\n")
        if name == "a":
            (out / "a").mkdir(parents=True)
            (out / "a" / "manifest.json").write_text('{"format": "vdm3d.run"}')
            return 0, 1.5, ""
        if checkpoint:
            (out / ".b.partial" / "checkpoints").mkdir(parents=True)
        raise Interrupted(signum)

    monkeypatch.setattr(runner, "run_command", run_command)
    return calls


def test_a_stopped_batch_says_what_is_done_stopped_and_not_started(tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs"
    calls = _fake_cases(monkeypatch, out)
    assert main(["batch", str(_manifest(tmp_path)), "--out", str(out), "--no-ray"]) == 128 + signal.SIGTERM
    assert calls == ["a", "b"]
    err = capsys.readouterr().err.strip()
    # it used to say "no run folder was being written, so nothing was kept"
    assert err == (f"interrupted by SIGTERM: a is done, b was stopped and its checkpoint in {out / '.b.partial'} is "
                   "kept, c did not start; the same `vdm3d batch` command continues from there, skipping the "
                   f"finished cases ({out / 'batch.json'} lists every case).")
    cases = json.loads((out / "batch.json").read_text())["cases"]  # written on interrupt too
    assert [(c["name"], c["status"]) for c in cases] == [("a", "ok"), ("b", "interrupted"), ("c", "not run")]
    assert cases[1]["error"] == f"was stopped and its checkpoint in {out / '.b.partial'} is kept"


def test_a_case_stopped_before_its_first_checkpoint_starts_again(tmp_path, monkeypatch):
    out = tmp_path / "runs"
    _fake_cases(monkeypatch, out, signum=signal.SIGINT, checkpoint=False)
    from vdm3d.batch.cases import read_cases

    with pytest.raises(KeyboardInterrupt) as info:
        runner.run_cases(read_cases(_manifest(tmp_path), out), out / "logs", use_ray=False)
    assert [r.status for r in info.value.results] == ["ok", "interrupted", "not run"]
    assert info.value.outcome == ("a is done, b was stopped before its first checkpoint, so it starts again, c did "
                                  "not start; the same command continues from there, skipping the finished cases")


def test_a_case_that_failed_before_its_folder_existed_shows_no_folder(tmp_path):
    rows = [CaseResult("a", "object", "done", "skipped", 0.0, str(tmp_path)),
            CaseResult("bad", "object", "todo", "failed", 0.4, str(tmp_path / "bad"), 2, "error: x.png: does not exist.")]
    lines = summary_table(rows).splitlines()
    assert lines[2].split() == ["a", "object", "done", "skipped", "0.0", str(tmp_path)]
    assert lines[3].split() == ["bad", "object", "todo", "failed", "0.4", "-"]  # it named tmp/bad, which is not there


def test_stopping_the_batch_stops_its_running_case_and_waits_for_it(tmp_path):
    """SIGTERM to the batch alone (not its process group): the case it runs gets the same signal and is waited
    for, so it keeps its checkpoint before the batch says so; it used to go on until the batch had exited."""
    script = tmp_path / "case.py"
    script.write_text("import signal, sys, time\n"
                      "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(1), print('case: kept', flush=True),"
                      " sys.exit(143)))\n"
                      "print('case: running', flush=True)\n"
                      "time.sleep(60)\n")
    proc = subprocess.Popen(
        [sys.executable, "-c",
         "import signal, subprocess, sys\n"
         "from vdm3d.batch import runner\n"
         "from vdm3d.cli.main import _terminate_as_interrupt\n"
         "_terminate_as_interrupt()\n"
         "real = subprocess.Popen\n"
         f"runner.subprocess.Popen = lambda argv, **kw: real([sys.executable, {str(script)!r}], **kw)\n"
         f"try:\n    runner.run_command(['object'], {str(tmp_path / 'case.log')!r}, 1)\n"
         "except KeyboardInterrupt as e:\n    print('batch: stopped by', e.signum, flush=True)\n"],
        env={**os.environ, "PYTHONPATH": str(SPOT.parents[2])}, stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while "case: running" not in ((tmp_path / "case.log").read_text() if (tmp_path / "case.log").exists() else ""):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    said, _ = proc.communicate(timeout=60)
    assert said.strip() == f"batch: stopped by {int(signal.SIGTERM)}"
    assert (tmp_path / "case.log").read_text().splitlines()[-1] == "case: kept"  # before the batch went on


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="reads the case's parent from /proc")
def test_sigterm_to_a_ray_batch_is_one_sentence_and_143(tmp_path):
    pytest.importorskip("ray")
    tiny = {"fit_steps": 10, "carve_resolution": 24, "num_points": 200, "mesh_resolution": 24, "mesh_views": 6,
            "turntable_frames": 2, "steps": 2, "frames": 6}
    (tmp_path / "m.jsonl").write_text("".join(
        json.dumps({"name": n, "job": "object", "image": str(SPOT), **tiny, **extra}) + "\n"
        for n, extra in (("a", {}), ("b", {"fit_steps": 3000}), ("c", {}))))
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(SPOT.parents[2]), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "vdm3d.cli.main", "batch", str(tmp_path / "m.jsonl"), "--out",
                             str(out), "--num-cpus", "1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.time() + 400
        while not ((out / "a" / "manifest.json").is_file() and (out / ".b.partial" / "checkpoints").is_dir()):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.3)
        case_b = int((out / ".b.lock").read_text())
        worker = int(Path(f"/proc/{case_b}/stat").read_text().rsplit(")", 1)[1].split()[1])
        os.killpg(proc.pid, signal.SIGTERM)
        # b's Ray worker goes too while b is stopping (as Ray's raylet, stopped by the same signal, ends it
        # under load): its exit used to kill b at once (Ray kills a worker's children and its process group),
        # so that b never said what it kept
        os.kill(worker, signal.SIGTERM)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    # Ray's handler printed "*** SIGTERM received at time=..." and ended the batch by SIGABRT (134)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "*** SIGTERM received" not in err
    assert err.strip().splitlines()[-1] == (
        f"interrupted by SIGTERM: a is done, b was stopped and its checkpoint in {out / '.b.partial'} is kept, c did "
        "not start; the same `vdm3d batch` command continues from there, skipping the finished cases "
        f"({out / 'batch.json'} lists every case).")
    assert (out / "logs" / "b.log").read_text().strip().splitlines()[-1] == (
        f"interrupted by SIGTERM: the checkpoint in {out / '.b.partial'} is kept; the same command with --resume "
        "continues from it.")  # b stopped cleanly, not killed with Ray's workers
    assert not (out / "c").exists() and not (out / "logs" / "c.log").exists()
    summary = {c["name"]: c["status"] for c in json.loads((out / "batch.json").read_text())["cases"]}
    assert summary == {"a": "ok", "b": "interrupted", "c": "not run"}


@pytest.mark.skipif(sys.platform != "linux", reason="the child's signal mask is set before exec on Linux")
def test_a_case_started_with_sigint_blocked_still_sees_ctrl_c(tmp_path, monkeypatch):
    """Ray runs tasks with SIGINT blocked, and a child inherits the mask: a case would never see Ctrl-C."""
    script = tmp_path / "case.py"
    script.write_text("print([ln for ln in open('/proc/self/status') if ln.startswith('SigBlk')][0].split()[1])\n")
    real = subprocess.Popen
    monkeypatch.setattr(runner.subprocess, "Popen", lambda argv, **kw: real([sys.executable, str(script)], **kw))
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # as in a Ray worker's task
    try:
        rc = runner.run_command(["object"], str(tmp_path / "case.log"), 1).returncode
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    blocked = int((tmp_path / "case.log").read_text().splitlines()[-1], 16)
    assert rc == 0 and not blocked & (1 << (signal.SIGINT - 1))


def test_a_stopped_eval_manifest_writes_its_summary_and_names_its_command(tmp_path, monkeypatch, capsys):
    """`vdm3d eval SUB --manifest` runs the same batch runner: stopped, it wrote no batch.json and said
    "the same command" without naming it."""
    out = tmp_path / "ev"
    (tmp_path / "c.yaml").write_text("cases:\n  - {name: a, rooms: 1}\n  - {name: b, rooms: 1}\n"
                                     "  - {name: c, rooms: 1}\n")
    calls = _fake_cases(monkeypatch, out)
    code = main(["eval", "depth", "--manifest", str(tmp_path / "c.yaml"), "--out", str(out), "--no-ray"])
    assert code == 128 + signal.SIGTERM and calls == ["a", "b"]
    err = capsys.readouterr().err.strip()
    assert "the same `vdm3d eval depth --manifest` command continues" in err
    assert err.endswith(f"({out / 'batch.json'} lists every case).")
    cases = json.loads((out / "batch.json").read_text())["cases"]
    assert [(c["name"], c["status"]) for c in cases] == [("a", "ok"), ("b", "interrupted"), ("c", "not run")]
