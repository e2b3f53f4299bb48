"""The driver's tqdm_ray bars: one line per bar, redrawn in place on a terminal, one line
per state elsewhere; print() goes above them."""
import builtins
import io

from ray_core._private import progress_bars


class Terminal(io.StringIO):
    def isatty(self):
        return True


def _state(uuid, x, closed=False):
    return {"uuid": uuid, "x": x, "total": 4, "desc": uuid, "closed": closed}


def test_a_pipe_gets_one_line_per_state():
    out = io.StringIO()
    manager = progress_bars.BarManager(out)
    manager.update(_state("a", 2))
    manager.update(_state("a", 4, closed=True))
    assert out.getvalue().splitlines() == ["a:  50%|##########          | 2/4 it",
                                           "a: 100%|####################| 4/4 it"]


def test_a_terminal_redraws_the_live_bars_and_prints_above_them(monkeypatch):
    monkeypatch.setattr(builtins, "print", builtins.print)    # restored after the test
    out = Terminal()
    manager = progress_bars.BarManager(out)
    manager.update(_state("a", 1))
    manager.update(_state("b", 1))
    manager.update(_state("a", 2))
    assert out.getvalue().endswith("\x1b[2A\x1b[2Ka:  50%|##########          | 2/4 it\n"
                                   "\x1b[2Kb:  25%|#####               | 1/4 it\n\x1b[J")
    assert builtins.print == manager.print_above
    printed = []
    monkeypatch.setattr(progress_bars, "_print", lambda *a, **k: printed.append(a))
    out.seek(0)
    out.truncate()
    manager.print_above("hello")
    assert printed == [("hello",)] and out.getvalue().startswith("\x1b[2A\x1b[J")
    assert out.getvalue().count("\x1b[2K") == 2       # both bars drawn again below


def test_a_bar_state_line_round_trips():
    line = progress_bars.state_line(_state("a", 3))
    assert progress_bars.parse(line) == _state("a", 3)
    assert progress_bars.parse("ordinary output") is None
