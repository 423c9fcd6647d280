"""`make bench`: every benchmark in this folder, one after the other."""

import runpy
import sys
from pathlib import Path

for name in ("storage_bench.py", "crud_bench.py", "ingest_bench.py", "auth_bench.py",
             "x12_bench.py", "ehr_bench.py", "terminology_bench.py", "startup_bench.py",
             "event_loop_bench.py"):
    sys.argv = [name]
    runpy.run_path(str(Path(__file__).with_name(name)), run_name="__main__")
