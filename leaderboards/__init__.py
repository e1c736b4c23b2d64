"""Suite files (one per published table) and the leaderboard builder.

Every ``*.toml`` beside this file is registered as a suite under its file stem.
"""

from pathlib import Path

from bench.registry import SUITES

SUITE_DIR = Path(__file__).parent

for _p in sorted(SUITE_DIR.glob("*.toml")):
    SUITES.register(_p.stem, _p, origin="leaderboards")
