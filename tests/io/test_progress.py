"""Progress with an ETA: plain lines (no carriage returns) when the stream is not a terminal."""

import io

from vdm3d.io.progress import StageLog, StepProgress, eta_seconds, format_seconds, progress_line


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_eta_from_the_mean_rate_of_this_session():
    assert eta_seconds(40, 200, 8.0) == 32.0  # 0.2 s a step, 160 left
    assert eta_seconds(60, 200, 8.0, initial=20) == 28.0  # resumed at 20: 40 steps in 8 s
    assert eta_seconds(0, 200, 1.0) is None
    assert format_seconds(42) == "42.0 s" and format_seconds(185) == "3 min 05 s" and format_seconds(3720) == "1 h 02 min"
    assert progress_line("fit", 50, 200, 10.0, postfix="loss 0.3") == "fit 50/200 (25%), 10.0 s, ETA 30.0 s: loss 0.3"


def test_plain_lines_at_each_tenth_with_eta_and_no_carriage_returns():
    out, clock = io.StringIO(), Clock()
    bar = StepProgress(100, "fit", stream=out, clock=clock)
    assert not bar.tty  # a StringIO is not a terminal
    for step in range(1, 101):
        clock.t += 0.5
        bar.update(loss=f"{1 / step:.2f}")
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 10
    assert lines[0] == "fit 10/100 (10%), 5.0 s, ETA 45.0 s: loss 0.10"
    assert lines[-1] == "fit 100/100 (100%), 50.0 s: loss 0.01"


def test_a_slow_loop_still_reports_every_interval():
    out, clock = io.StringIO(), Clock()
    bar = StepProgress(1000, "train", stream=out, clock=clock, interval_s=30.0)
    for _ in range(5):
        clock.t += 20.0
        bar.update()
    assert out.getvalue().splitlines() == ["train 2/1000 (0%), 40.0 s, ETA 5 h 32 min",
                                           "train 4/1000 (0%), 1 min 20 s, ETA 5 h 32 min"]


def test_a_terminal_gets_a_tqdm_bar():
    out = io.StringIO()
    bar = StepProgress(10, "fit", stream=out, tty=True)
    for _ in range(10):
        bar.update()
    bar.close()
    assert "\r" in out.getvalue() and "10/10" in out.getvalue()


def test_stage_log_times_messages_and_gives_step_stages_an_eta():
    out, clock = io.StringIO(), Clock()
    say = StageLog(stream=out, clock=clock)
    say("orbit: v3d with tiny-video at 64x64")
    clock.t += 4.0
    say("fit 40/200: loss 0.5")  # the stage's first report: no rate yet
    clock.t += 8.0
    say("fit 80/200: loss 0.4")  # 40 steps in 8 s: 120 left -> 24 s
    clock.t += 24.0
    say("fit 200/200: loss 0.3")
    assert out.getvalue().splitlines() == ["[     0.0 s] orbit: v3d with tiny-video at 64x64",
                                           "[     4.0 s] fit 40/200: loss 0.5",
                                           "[    12.0 s] fit 80/200: loss 0.4 (ETA 24.0 s)",
                                           "[    36.0 s] fit 200/200: loss 0.3"]


def test_a_stage_that_runs_again_gets_its_eta_from_its_second_run():
    """The object job fits twice (the second time after regenerating the orbit): the second fit's ETA came
    from the first fit's start, 'fit 80/200 ... (ETA 31.4 s)' for a fit 4 s from its end."""
    out, clock = io.StringIO(), Clock()
    say = StageLog(stream=out, clock=clock)
    say("fit 40/200: loss 0.5")
    clock.t += 8.0
    say("fit 200/200: loss 0.3")
    clock.t += 100.0  # regenerating
    say("fit 40/200: loss 0.5")  # the second fit's first report: no rate yet
    clock.t += 2.0
    say("fit 80/200: loss 0.4")  # 40 steps in 2 s: 120 left -> 6 s
    assert out.getvalue().splitlines()[2:] == ["[1 min 48 s] fit 40/200: loss 0.5",
                                               "[1 min 50 s] fit 80/200: loss 0.4 (ETA 6.0 s)"]

def test_stage_log_counts_cases_from_the_start():
    """``[i/n]`` lines (evaluation cases) get an ETA from the first case on, the start included."""
    out, clock = io.StringIO(), Clock()
    say = StageLog(stream=out, clock=clock)
    clock.t += 10.0
    say("[1/4] object-1: job 20.1 dB")  # 10 s a case: 3 left
    clock.t += 10.0
    say("[2/4] object-2: job 21.0 dB")
    clock.t += 20.0
    say("[4/4] mesh duck: job 19.0 dB")
    assert out.getvalue().splitlines() == ["[    10.0 s] [1/4] object-1: job 20.1 dB (ETA 30.0 s)",
                                           "[    20.0 s] [2/4] object-2: job 21.0 dB (ETA 20.0 s)",
                                           "[    40.0 s] [4/4] mesh duck: job 19.0 dB"]


def test_stage_log_leaves_cases_loaded_from_a_checkpoint_out_of_the_rate():
    """A resumed evaluation loads its first cases in no time: their lines get no ETA, and the rate counts from
    the last of them (else 2 loaded cases and 10 s for the third would promise 3.3 s a case)."""
    out, clock = io.StringIO(), Clock()
    say = StageLog(stream=out, clock=clock)
    clock.t += 1.0
    say("[1/5] object-1: job 20.1 dB (from the checkpoint)")
    say("[2/5] object-2: job 21.0 dB (from the checkpoint)")
    clock.t += 10.0
    say("[3/5] object-3: job 19.0 dB")  # 10 s a computed case: 2 left
    assert out.getvalue().splitlines() == ["[     1.0 s] [1/5] object-1: job 20.1 dB (from the checkpoint)",
                                           "[     1.0 s] [2/5] object-2: job 21.0 dB (from the checkpoint)",
                                           "[    11.0 s] [3/5] object-3: job 19.0 dB (ETA 20.0 s)"]


def test_stage_bars_give_each_stage_its_own_progress():
    from vdm3d.io.progress import StageBars

    out = io.StringIO()
    bars = StageBars(stream=out, tty=False)
    for step in range(1, 11):
        bars("baseline", step, 10, loss=0.5)
    for step in range(6, 11):  # resumed at step 6
        bars("distill", step, 10)
    bars.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("baseline 1/10 (10%)") and lines[9].startswith("baseline 10/10 (100%)")
    assert "loss 0.5" in lines[0] and "\r" not in out.getvalue()
    assert [ln.split(" (")[0] for ln in lines[10:]] == [f"distill {i}/10" for i in range(6, 11)]
