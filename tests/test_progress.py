"""Progress written to a file is a line per interval, not redrawn carriage-return updates."""

import io
import os
import subprocess
import sys

from diffjax import progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_line_every_n_steps_and_one_at_the_end():
    out = io.StringIO()
    p = progress.LineProgress(total=12, desc="train", initial=2, every=5, file=out)
    for _ in range(10):
        p.update(1)
        p.set_postfix(loss="0.5")
    p.close()
    p.close()  # closing twice prints nothing more
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert [line.split()[1] for line in lines] == ["5/12", "10/12", "12/12"]
    assert all(line.startswith("train: ") and line.endswith("loss=0.5") for line in lines[1:])
    assert "(100%)" in lines[-1]


def test_iterating_reports_by_time_and_at_the_end():
    out = io.StringIO()
    items = list(progress.LineProgress(range(4), desc="bpd", seconds=3600, file=out))
    assert items == [0, 1, 2, 3]
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bpd: 4/4 (100%)")


def test_disabled_prints_nothing():
    out = io.StringIO()
    p = progress.LineProgress(total=3, every=1, disable=True, file=out)
    p.update(3)
    p.close()
    assert out.getvalue() == ""


def test_bar_chooses_lines_when_stderr_is_a_file(tmp_path):
    code = (
        "from diffjax import progress\n"
        "with progress.bar(total=100, desc='work', every=25, note='on cpu') as p:\n"
        "    print(type(p).__name__, flush=True)\n"
        "    for _ in range(100): p.update(1)\n"
    )
    log = tmp_path / "log"
    with open(log, "w") as f:
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, stderr=f, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True,
        )  # fmt: skip
    assert out.stdout.strip() == "LineProgress"
    note, *lines = log.read_text().splitlines()
    assert note == "on cpu"  # the note first, once
    assert [line.split()[1] for line in lines] == ["25/100", "50/100", "75/100", "100/100"]
