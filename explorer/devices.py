"""One XLA CPU device per core, so a train step splits its batch over the cores.

XLA:CPU runs one device's program with a thread pool, but its convolutions,
pad and concatenate loops each keep one core busy. Split into one device per
core, with each device taking its share of the batch (`train.make_runner`), the
same step keeps every core busy and each device can use the lowering that is
fastest on one core (`models.conv_impl`). The count must be fixed before JAX
starts its backend, so entry points (the CLI, a sweep's trial, the benchmarks)
call `split_cpu` first; a library user calls it after `import jax`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

DEVICES_ENV = "EXPLORER_CPU_DEVICES"
MALLOC_ENV = "EXPLORER_MALLOC"  # "default" keeps the C library's malloc settings


class SettingError(ValueError):
    """A setting ($EXPLORER_* and the like) that cannot be used; printed as one line by the CLI."""


class DeviceError(SettingError):
    """A device count that cannot be used."""


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def split_cpu(n: int | None = None) -> None:
    """Ask JAX for n CPU devices (default: $EXPLORER_CPU_DEVICES, else one per core).

    Does not start JAX's backend (commands that never compute stay quick). Once
    the backend has started, the count can no longer change: the call then
    leaves it as it is.
    """
    source = "CPU devices"
    if n is None:
        env = os.environ.get(DEVICES_ENV, "")
        source = f"${DEVICES_ENV}"
        try:
            n = int(env) if env else cores()
        except ValueError:
            raise DeviceError(f"{source}: expected a whole number, got {env!r}") from None
    if n < 1:
        raise DeviceError(f"{source}: expected at least 1, got {n}")
    keep_freed_memory()
    import jax  # here: importing this module loads neither jax nor numpy (keep_freed_memory)

    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backend already started: keep what it has
        pass


# glibc's mallopt parameters (malloc.h), and the same settings as tunables
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_KEEP = ((_M_ARENA_MAX, "arena_max", 1), (_M_MMAP_MAX, "mmap_max", 0),
         (_M_TRIM_THRESHOLD, "trim_threshold", 2**31 - 1))  # fmt: skip


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse; True if it was set.

    XLA:CPU allocates every buffer of a program run (a 26 MB activation, a temp
    slab) with malloc and frees it after. glibc returns such blocks to the
    kernel (large ones are their own mmap; a thread's arena unmaps heaps that
    empty), so the next step touches fresh pages and the kernel zero-fills
    each one on a page fault: a fifth of a 2-core train step's CPU time. One
    arena, no mmap'd blocks and no trimming make the process reuse its pages
    (vs_pytorch, SqueezeNet 1.1 at 28x28x1: 7.5 million faults to 0.25
    million, JAX 632-706 to 866-958 images/s; README, Performance). The price:
    the process keeps its peak heap. Only where the C library is glibc;
    $EXPLORER_MALLOC=default leaves malloc alone.

    Call it before anything starts a thread that mallocs (importing pandas
    starts pyarrow's jemalloc thread), as the CLI does before its other
    imports. A thread keeps the arena of its first malloc, and threads started
    later share the arenas already there: in an arena other than the main
    one, glibc serves every block over 64 MB (XLA's 72 MB temp buffer of a
    train step) as its own mmap whatever the settings, unmapped again by free
    (`explorer train` before it kept that order: about 17,600 faults per step,
    4.0 million in a 2-epoch run on 12,800 images; 0.25 million after).
    """
    if _malloc_left_alone():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # not glibc (macOS, musl): leave it
        return False
    return all(libc.mallopt(param, value) == 1 for param, _, value in _KEEP)


def _malloc_left_alone() -> bool:
    return os.environ.get(MALLOC_ENV, "") == "default"


def worker_env() -> dict[str, str]:
    """Environment for worker processes (a sweep's trials): the same malloc
    settings from their start, as glibc tunables, since a worker has started
    threads (with arenas of their own) before a trial runs."""
    if _malloc_left_alone():
        return {MALLOC_ENV: "default"}
    keep = ":".join(f"glibc.malloc.{name}={value}" for _, name, value in _KEEP)
    prior = os.environ.get("GLIBC_TUNABLES")
    return {"GLIBC_TUNABLES": f"{prior}:{keep}" if prior else keep}


def cpu_count() -> int:
    """CPU devices JAX has (starts the backend)."""
    import jax

    try:
        return len(jax.devices("cpu"))
    except RuntimeError:  # no CPU backend (JAX_PLATFORMS without cpu)
        return 0
