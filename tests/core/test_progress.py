"""progress=True without tqdm: the plain line, at most every progress_line_interval_s."""
import io

from ray_core.util.progress import LineProgress


def test_line_progress_writes_at_close_and_when_the_interval_has_passed(monkeypatch):
    out = io.StringIO()
    bar = LineProgress(10, "Pool.map(f)", stream=out)
    bar.update(3)
    assert out.getvalue() == ""         # the interval has not passed
    monkeypatch.setattr(bar, "_last", bar._last - 1e6)
    bar.update(2)
    bar.update(5)
    bar.close()
    assert out.getvalue() == "Pool.map(f): 5/10\nPool.map(f): 10/10\n"


def test_line_progress_of_an_unknown_total():
    out = io.StringIO()
    bar = LineProgress(None, "imap", stream=out)
    bar.update(4)
    bar.close()
    assert out.getvalue() == "imap: 4\n"
