"""The training command's progress: plain lines where stdout is not a terminal, a progress
bar where it is, and in both the rate and ETA of the steps after the first (tracing)."""

import io
from types import SimpleNamespace

import rich.console
import rich.progress
import tensorflow as tf

from cocosnet_tf import callbacks

TOTAL = 10
LOSSES = {"G_total": 1.5, "D_total": 0.25}


def steps(monkeypatch, progress, count):
    """`count` steps of `progress`: the first ends 100 s after fit begins (tracing), each
    later one 2 s after the one before."""
    clock = iter([0.0] + [100.0 + 2.0 * i for i in range(count)])
    monkeypatch.setattr(callbacks, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    progress.on_train_begin()
    for _ in range(count):
        progress.step.assign_add(1)
        progress.on_train_batch_end(0, dict(LOSSES))


def test_logs_get_a_line_every_few_steps_with_the_rate_and_eta_after_tracing(monkeypatch, capsys):
    progress = callbacks.Progress(tf.Variable(0, dtype=tf.int64), TOTAL, log_every=4, bar=None)
    assert not progress.draw_bar  # pytest's captured stdout is no terminal
    steps(monkeypatch, progress, TOTAL)
    progress.on_train_end()
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "step 1/10  first step 100 s (tracing included)  G_total=1.500 D_total=0.250",
        # 0.5 steps/s since the first step: 6 steps left take 12 s (from fit's start it would be 63 s)
        "step 4/10  0.50 steps/s  ETA 12 s  G_total=1.500 D_total=0.250",
        "step 8/10  0.50 steps/s  ETA 4 s  G_total=1.500 D_total=0.250",
        "step 10/10  0.50 steps/s  ETA 0 s  G_total=1.500 D_total=0.250",
    ]


def test_a_terminal_gets_a_bar_with_lines_printed_above_it_and_stdout_back_at_the_end(monkeypatch, capsys):
    screen = io.StringIO()
    terminal = rich.console.Console(file=screen, force_terminal=True, width=120)
    monkeypatch.setattr(rich.progress, "get_console", lambda: terminal)
    progress = callbacks.Progress(tf.Variable(0, dtype=tf.int64), TOTAL, log_every=4, bar=True)
    steps(monkeypatch, progress, 5)
    print("checkpoint runs/x/ckpt-5")  # as Checkpoints prints while the bar is up
    progress.close()
    print("after the bar")
    out = capsys.readouterr().out
    drawn = screen.getvalue()
    # only the first step's line is plain; the rest is the bar's, redrawn in place
    assert out == ("step 1/10  first step 100 s (tracing included)  G_total=1.500 D_total=0.250\n"
                   "after the bar\n")
    assert "5/10" in drawn and "━" in drawn and "0.50 steps/s  ETA 10 s" in drawn and "G_total=1.500" in drawn
    assert "checkpoint runs/x/ckpt-5" in drawn and "\r" in drawn
    assert "step 4/10  0.50 steps/s" not in drawn  # no plain lines under the bar
    assert progress.bar is None
