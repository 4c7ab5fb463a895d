"""One XLA CPU device per core, and malloc that keeps freed memory.

XLA:CPU runs one device's program with a thread pool, but its convolutions,
pad and concatenate loops each keep one core busy. Split into one device per
core, with each device taking its share of the batch (`explorer.execution`),
the same step keeps every core busy and each device can use the lowering that
is fastest on one core (`explorer.lowering`). The count must be fixed before
JAX starts its backend, so entry points (the CLI, a sweep's trial, the
benchmarks) call `split_cpu` first.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

from explorer import settings
from explorer.settings import SettingError


class DeviceError(SettingError):
    """A device count that cannot be used."""


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split_cpu(n: int | None = None) -> None:
    """Ask JAX for n CPU devices (default: one per core; `Settings.cpu_devices`).

    Does not start JAX's backend (commands that never compute stay quick). Once
    the backend has started, the count can no longer change: the call then
    leaves it as it is.
    """
    n = cores() if n is None else n
    if n < 1:
        raise DeviceError(f"CPU devices: expected at least 1, got {n}")
    keep_freed_memory()
    if "jax" not in sys.modules:
        # JAX reads the count when it is imported: a command that never computes
        # (inspect, a bad input's one line) never pays for importing it
        os.environ["JAX_NUM_CPU_DEVICES"] = str(n)
        return
    import jax  # here: importing this module loads neither jax nor numpy (keep_freed_memory)

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backend already started: keep what it has
        pass


# glibc's mallopt parameters (malloc.h), named as the tunables in settings.KEEP_TUNABLES
_MALLOPT = {"trim_threshold": -1, "mmap_max": -4, "arena_max": -8}


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse; True if it was set.

    XLA:CPU mallocs every buffer of a program run and frees it after; glibc
    returns large blocks to the kernel, so the next step touches fresh pages
    and the kernel zero-fills each one on a page fault. One arena, no mmap'd
    blocks and no trimming make the process reuse its pages; the price is that
    it keeps its peak heap (docs/performance.md). Only where the C library is
    glibc; $EXPLORER_MALLOC=default leaves malloc alone (read here, before any
    other setting: it must act before threads start).

    Call it before anything starts a thread that mallocs (importing pandas
    starts pyarrow's jemalloc thread), as the CLI does before its other
    imports: a thread keeps the arena of its first malloc, and in an arena
    other than the main one glibc maps every block over 64 MB on its own,
    whatever the settings.
    """
    if not settings.malloc_kept():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc (macOS, musl): leave it
        return False
    return all(libc.mallopt(_MALLOPT[name], value) == 1 for name, value in settings.KEEP_TUNABLES)


def compilation_cache(folder: str | os.PathLike | None) -> str | None:
    """Turn JAX's persistent compilation cache on in this folder (None: off); returns it.

    A repeated architecture then loads its compiled program from disk instead
    of compiling again, in any process. A new folder takes effect at once, also
    in a process that compiled with another (JAX opens its cache at the first
    compile and keeps it otherwise). Entry points pass `Settings.cache_folder`.
    """
    import jax  # here: importing this module loads no jax (split_cpu must run first)
    from jax.experimental.compilation_cache import compilation_cache as persistent_cache

    if folder:
        folder = os.path.abspath(os.fspath(folder))
        os.makedirs(folder, exist_ok=True)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_dir", folder or None)
    persistent_cache.reset_cache()
    return folder or None


def cpu_count() -> int:
    """CPU devices JAX has (starts the backend)."""
    import jax

    try:
        return len(jax.devices("cpu"))
    except RuntimeError:  # no CPU backend (JAX_PLATFORMS without cpu)
        return 0
