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

import os

import jax

DEVICES_ENV = "EXPLORER_CPU_DEVICES"


class DeviceError(ValueError):
    """A device count that cannot be used; printed as one line by the CLI."""


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
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # backend already started: keep what it has
        pass


def cpu_count() -> int:
    """CPU devices JAX has (starts the backend)."""
    try:
        return len(jax.devices("cpu"))
    except RuntimeError:  # no CPU backend (JAX_PLATFORMS without cpu)
        return 0
