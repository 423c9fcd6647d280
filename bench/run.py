"""`make bench`: every benchmark in this folder."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).with_name("search_bench.py")), run_name="__main__")
