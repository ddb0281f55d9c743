"""The README's Gymnasium snippets run as written, on the shipped agents."""

import re
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.slow
@pytest.mark.parametrize("name, least_reward", [("gymnasium", 200), ("gymnasium-pong", 15)])
def test_readme_gymnasium_snippet_runs(name, least_reward):
    readme = (REPO / "README.md").read_text()
    snippet = re.search(rf"<!-- snippet: {name} -->\n```python\n(.*?)```", readme, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", snippet], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr
    reward = float(re.search(r"episode reward: (-?[\d.]+)", result.stdout).group(1))
    # CartPole: the T=1 agent balances the pole (500 is the maximum); Pong: it wins the game (21 is the maximum)
    assert reward >= least_reward
