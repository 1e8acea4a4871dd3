"""The README's example, run as it stands there (in its own interpreter, so its exit is
checked too)."""

import os
import re
import subprocess
import sys

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def test_the_readme_example_runs_and_prints_what_the_readme_says():
    text = open(README, encoding="utf-8").read()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert blocks, "README.md has no python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) < 20, "the README example must stay under 20 lines"
    done = subprocess.run(
        [sys.executable, "-c", example], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "olleh from True\nb'hi'\n"
    assert "prints `olleh from True` and `b'hi'`" in text
