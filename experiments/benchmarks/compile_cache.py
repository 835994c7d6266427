"""Compile time of the default job on a cold and on a warm persistent compilation cache
(issue 14, "Compile once"; `diffjax.compile_cache`).

The default job (`configs/default.py`, shortened to `--steps` steps; its end-of-run sampling and
Frechet evaluation included) runs twice as `python -m diffjax.main`, each in a fresh process
with the same empty-at-first cache directory: the first run compiles and stores every program,
the second reads them. In each process, JAX's monitoring events are summed:

- `backend_compile_seconds`: XLA compilation, or reading the program from the cache on a hit
  (`/jax/core/compile/backend_compile_duration`, which wraps both);
- `trace_seconds`, `lower_seconds`: tracing to a jaxpr and lowering to StableHLO, which every
  process does whatever the cache holds;
- `cache_hits`, `wall_seconds` (the whole process, imports and data included).

Run:
  python experiments/benchmarks/compile_cache.py  # -> experiments/results/*compile_cache.json
"""

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app, flags

try:  # PYTHONPATH=. or imported by the tests
    from experiments.benchmarks.report import write_report
except ImportError:  # run as a script: experiments/benchmarks/ is on sys.path
    from report import write_report

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLAGS = flags.FLAGS
flags.DEFINE_string("out", "experiments/results/benchmarks_compile_cache.json", "JSON to write")
flags.DEFINE_integer("steps", 20, "training steps of the default job")

# In the child process: sum JAX's compile events around one `diffjax.main` run.
_CHILD = """
import collections, json, sys
import jax.monitoring
from diffjax import main
events = collections.defaultdict(float)
jax.monitoring.register_event_duration_secs_listener(
    lambda name, seconds, **_: events.__setitem__(name, events[name] + seconds))
jax.monitoring.register_event_listener(
    lambda name, **_: events.__setitem__(name, events[name] + 1))
out = sys.argv.pop(1)
try:
    main.run()
finally:
    with open(out, "w") as f:
        json.dump(events, f)
"""

EVENTS = {
    "backend_compile_seconds": "/jax/core/compile/backend_compile_duration",
    "trace_seconds": "/jax/core/compile/jaxpr_trace_duration",
    "lower_seconds": "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "cache_hits": "/jax/compilation_cache/cache_hits",
}


def _run(root: str, name: str, cache: str) -> dict:
    events_path = os.path.join(root, name + ".json")
    cmd = [
        sys.executable,
        "-c",
        _CHILD,
        events_path,
        f"--config={ROOT}/configs/default.py",
        f"--workdir={os.path.join(root, name)}",
        f"--compilation_cache={cache}",
        f"--config.training.num_steps={FLAGS.steps}",
    ]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT}, check=True)
    wall = time.perf_counter() - start
    with open(events_path) as f:
        events = json.load(f)
    return {key: events.get(event, 0.0) for key, event in EVENTS.items()} | {"wall_seconds": wall}


def main(argv):
    del argv
    with tempfile.TemporaryDirectory() as root:
        cache = os.path.join(root, "cache")
        cold = _run(root, "cold", cache)
        warm = _run(root, "warm", cache)
        num_entries = len(os.listdir(cache))
    report = {
        "config": "configs/default.py",
        "steps": FLAGS.steps,
        "cache_entries": num_entries,
        "cold": cold,
        "warm": warm,
        "compile_speedup": cold["backend_compile_seconds"] / warm["backend_compile_seconds"],
        "wall_speedup": cold["wall_seconds"] / warm["wall_seconds"],
    }
    print(json.dumps(write_report(FLAGS.out, report), indent=2))


if __name__ == "__main__":
    app.run(main)
