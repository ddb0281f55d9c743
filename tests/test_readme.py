"""The README's Gymnasium snippet runs as written, on the shipped agent."""

import re
import subprocess
import sys

from conftest import REPO


def test_readme_gymnasium_snippet_runs():
    readme = (REPO / "README.md").read_text()
    snippet = re.search(r"<!-- snippet: gymnasium -->\n```python\n(.*?)```", readme, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    reward = float(re.search(r"episode reward: ([\d.]+)", result.stdout).group(1))
    assert reward >= 200  # the shipped T=1 agent balances the pole (500 is the maximum)
