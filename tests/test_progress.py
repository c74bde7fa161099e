"""Progress bars: tqdm's on a terminal; in a log, a few whole lines instead of carriage returns."""
import io
import time

from dareg import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_in_a_log_a_bar_writes_a_few_whole_lines_and_short_work_none(monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.2)
    log = io.StringIO()
    for _ in progress.bar(range(5), desc="short", file=log):
        pass
    assert log.getvalue() == ""  # done before the first interval: nothing written
    for _ in progress.bar(range(10), desc="long", unit="step", file=log):
        time.sleep(0.1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 2 <= len(lines) <= 7, lines
    assert lines[-1].startswith("long: 100%") and "10/10" in lines[-1]
    assert len(set(lines)) == len(lines)  # close does not repeat the last line


def test_on_a_terminal_it_is_tqdms_live_bar():
    screen = Terminal()
    for _ in progress.bar(range(3), desc="live", file=screen, mininterval=0):
        pass
    assert "\r" in screen.getvalue() and "3/3" in screen.getvalue()
