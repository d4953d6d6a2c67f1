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
