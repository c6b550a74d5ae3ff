"""Memory: peak resident set of this process, sampled in a thread or read from the kernel.

``PeakRSS`` samples the RSS while a block runs (peak and growth of that block);
``peak_rss_mib`` reads the kernel's high-water mark of the whole process (``VmHWM``), the
figure for a worker or a process measured on its own.
"""
from __future__ import annotations

import resource
import sys
import threading
import time

import psutil


def peak_rss_mib() -> float:
    """This process's peak resident set. Linux's ``ru_maxrss`` survives ``execve``, so a
    spawned worker would report its parent's peak; ``VmHWM`` belongs to the current image."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform != "darwin" else 2**20)


class PeakRSS:
    """Context manager sampling this process's resident memory; ``.peak_mib`` afterwards."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.proc = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.interval)

    def __enter__(self):
        self.start = self.proc.memory_info().rss
        self.peak = self.start
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def peak_mib(self) -> float:
        return self.peak / 2**20

    @property
    def delta_mib(self) -> float:
        return (self.peak - self.start) / 2**20
