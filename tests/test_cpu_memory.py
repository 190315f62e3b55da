"""The trainer's CPU allocator setting: freed memory stays in the process, so a step does not fault its pages again."""
import json
import os
import subprocess
import sys

import pytest

# Allocates and frees a 64 MiB tensor (above glibc's largest mmap threshold) 50 times, after calling
# keep_freed_memory() or not, and prints the page faults and the growth of resident memory over the last 20 (the
# first 30 let the kept heap settle: each aligned allocation needs a few bytes more than the hole its predecessor left,
# until freed neighbours coalesce; measured per allocation over 8 processes, the last fresh one came at the 2nd to the
# 14th depending on the address layout, none after it in 60, so 10 was sometimes too few).
PROBE = """
import json, resource, sys, torch
from normexp.engine.cpu_memory import keep_freed_memory
done = keep_freed_memory() if sys.argv[1] == "keep" else "untouched"
rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
for _ in range(30):
    torch.ones(16 << 20)
faults, resident = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, rss()
for _ in range(20):
    torch.ones(16 << 20)
print(json.dumps({"done": done, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults,
                  "grew": rss() - resident}))
"""


def probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], env={**clean, **env}, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the setting is glibc's; elsewhere it does nothing")
def test_kept_memory_is_not_faulted_in_again():
    default, kept = probe("default"), probe("keep")
    pages = 20 * (64 << 20) // 4096
    assert default["faults"] > pages // 2  # every fresh mmap is faulted in again
    assert kept["done"].startswith("glibc, freed memory kept")
    assert kept["faults"] < pages // 100
    assert kept["grew"] < (16 << 20)  # what is kept is reused, not piled up


def test_the_users_malloc_tuning_wins():
    got = probe("keep", MALLOC_ARENA_MAX="2")
    assert got["done"] == ("glibc, as tuned by the environment" if sys.platform.startswith("linux") else "system default")
