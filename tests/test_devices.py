"""Process-wide CPU settings: devices per core and malloc's handling of freed memory."""

import json
import os
import subprocess
import sys

from explorer import settings
from explorer.settings import Settings

# Free a touched 64 MB block, allocate and touch it again: kernel page faults.
# XLA:CPU allocates and frees every buffer of every step the same way.
FAULTS = """
import ctypes, ctypes.util, json, resource
from explorer import devices
kept = devices.keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n = 64 << 20
def touched():
    p = libc.malloc(n)
    ctypes.memset(p, 1, n)
    return p
libc.free(touched())
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
libc.free(touched())
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"kept": kept, "faults": after - before, "pages": n // 4096}))
"""


def _run(code: str, **env) -> dict:
    """Run code in a fresh Python process; the JSON it printed last."""
    run = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(run.stdout.splitlines()[-1])


def _faults(**env) -> dict:
    return _run(FAULTS, **env)


def test_freed_memory_is_reused_instead_of_faulted_in_again():
    default = _faults(EXPLORER_MALLOC="default")
    kept = _faults()
    # glibc's default: a block this large is its own mmap, unmapped by free, so
    # every page of the next one is a fresh zero-filled page (a fault each).
    assert not default["kept"] and default["faults"] >= default["pages"], default
    assert kept["kept"] and kept["faults"] < kept["pages"] / 100, kept


def test_worker_env_carries_the_settings_and_malloc(monkeypatch):
    monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    env = settings.worker_env(Settings())
    assert env == {
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "TUNE_FUNCTION_THREAD_TIMEOUT_S": "3600",  # a reused worker outwaits an epoch
        "GLIBC_TUNABLES": "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:"
        "glibc.malloc.trim_threshold=2147483647",
    }
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0")
    tunables = settings.worker_env(Settings())["GLIBC_TUNABLES"]
    assert tunables.startswith("glibc.malloc.tcache_count=0:")
    # every setting that is not the default travels, and reads back the same
    chosen = Settings(conv="matmul", seeds="loop", malloc="default", cache_dir="", results="r")
    shipped = settings.worker_env(chosen)
    assert "GLIBC_TUNABLES" not in shipped and shipped["EXPLORER_MALLOC"] == "default"
    assert settings.from_env(shipped) == chosen
    # The tunables alone (no mallopt call in the process) keep freed memory too.
    from_start = _faults(GLIBC_TUNABLES=env["GLIBC_TUNABLES"], EXPLORER_MALLOC="default")
    assert not from_start["kept"] and from_start["faults"] < from_start["pages"] / 100


# A program on two devices whose output is 80 MB per device: each device's
# share runs on a thread of XLA's pool, which mallocs the output there.
BIG_OUTPUT = """
import json, resource
{first}
from explorer import devices
devices.split_cpu(2)
import jax, numpy as np
mesh = jax.make_mesh((2,), ("d",))
rows = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("d"))
x = jax.device_put(np.ones((2, 20 << 20), np.float32), rows)
f = jax.jit(lambda x: x * 2 + 1)
faults = []
for _ in range(20):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({{"faults": faults, "pages": 2 * (80 << 20) // 4096}}))
"""

# A thread's first malloc before the settings: it gets an arena of its own,
# which XLA's threads take over once it ends.
EARLY_THREAD = """
import threading
t = threading.Thread(target=bytearray, args=(1 << 20,))
t.start()
t.join()
"""


def _big_output_faults(first: str) -> dict:
    out = _run(BIG_OUTPUT.format(first=first))
    # the heap grows to its size over the first calls (up to a dozen, as XLA's
    # two threads allocate and free in varying order): the median of the last ten
    return {**out, "steady": sorted(out["faults"][10:])[5]}


def test_the_cli_sets_malloc_up_before_its_imports_start_threads():
    # Settings made after a thread's first malloc fail blocks over 64 MB: the
    # arena that thread left behind mmaps them and unmaps them again on free.
    # Which arena XLA's threads land on varies from run to run (more so on a busy
    # machine), so the control gets three tries to show the fault.
    for _ in range(3):
        late = _big_output_faults(EARLY_THREAD)
        if late["steady"] >= late["pages"] / 2:
            break
    assert late["steady"] >= late["pages"] / 2, late
    # The console script imports explorer.cli first: pandas, so pyarrow's thread.
    cli = _big_output_faults("import explorer.cli")
    assert cli["steady"] < cli["pages"] / 100, cli


SPLIT = """
import json, sys
from explorer import cli, devices
assert cli.main(["inspect", {path!r}]) == 0
imported = "jax" in sys.modules
devices.split_cpu({n})
import jax
print(json.dumps({{"imported": imported, "devices": len(jax.devices("cpu"))}}))
"""


def test_a_command_that_never_computes_never_imports_jax_and_the_split_still_holds(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: ok\n")
    for n in (1, 3):
        env = {k: v for k, v in os.environ.items() if k != "JAX_NUM_CPU_DEVICES"}
        run = subprocess.run(
            [sys.executable, "-c", SPLIT.format(n=n, path=str(path))],
            env={**env, "JAX_PLATFORMS": "cpu"},
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
        assert json.loads(run.stdout.splitlines()[-1]) == {"imported": False, "devices": n}
