"""The JSON report every benchmark writes: its own fields plus a description of the machine.

`write_report(path, report)` adds `report["machine"]` (unless the benchmark set it) and writes
the file atomically (a temporary file in the same folder, then `os.replace`), so an interrupted
run never leaves half a JSON where the last complete one was.
"""

import json
import os
import platform
import tempfile
from typing import Any

import jax
import jaxlib


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else `platform.processor()`."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine_info() -> dict[str, Any]:
    """Platform, CPU, core count, load, JAX / jaxlib versions, backend and device count."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average_1m": os.getloadavg()[0],
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
    }


def write_report(path: str, report: dict[str, Any]) -> dict[str, Any]:
    """Writes `report` with its "machine" section as indented JSON to `path`, atomically.

    Args:
      path: the JSON file; its folder is created.
      report: the benchmark's fields (JSON-serialisable); "machine" defaults to
        `machine_info()`.

    Returns:
      The report as written.
    """
    report = {**report, "machine": report.get("machine", machine_info())}
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".report-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would differ from a plain open()
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return report
