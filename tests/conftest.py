"""Shared fixtures. Tests run on the CPU, with small compiles."""

import os

# Keep Ray on loopback (it rewrites 127.0.0.1 otherwise) and token auth off, for
# every process the tests start. Must be set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# Compiled programs are cached across tests and test runs (the same tiny nets recur).
os.environ.setdefault(
    "EXPLORER_CACHE_DIR",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "jax"),
)

from explorer import devices  # noqa: E402

# Two XLA CPU devices, as the CLI makes on a 2-core machine: the trainer's tests
# run the batch split over devices (one device is tested against it).
devices.split_cpu(2)
# The tests' own compiles use the cache too, as the CLI's do: a program compiled by an
# earlier test (or an earlier run) loads from disk.
devices.compilation_cache(os.environ["EXPLORER_CACHE_DIR"])

import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPACES = ROOT / "spaces"
CRASHED_TRIAL = "faulty-p0001-s0"  # its worker dies once on the test cluster


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """One seed of tests/test_export.py's SMALL, trained for an epoch on 2,048 images
    through the CLI and saved with --save (read, never changed, by export and compression
    tests)."""
    import json

    from explorer import cli
    from tests.test_export import TRAIN

    root = tmp_path_factory.mktemp("trained")
    record = root / "record.json"
    assert cli.main([*TRAIN, "--save", str(root / "ckpt"), "--json", str(record)]) == 0
    return {"folder": root / "ckpt" / "seed-0", "record": json.loads(record.read_text())}


@pytest.fixture
def write_space(tmp_path):
    """Write YAML text to a space file in a temporary folder and return its path."""

    def write(text: str, name: str = "space.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


TINY_SPACE = """
name: {name}
base: squeezenet1_1
dataset: {{name: fashion_mnist, train_size: 512, test_size: 256}}
space:
  conv1_filters: 8
  base_e: {base_e}
  incr_e: 8
{extra}
train: {{epochs: {epochs}, batch_size: 64, learning_rate: 0.003, warmup_epochs: 0}}
search: {search}
objectives: {{accuracy: max, params: min}}
resources: {{cpus_per_trial: 1}}
"""


@pytest.fixture
def tiny_space(write_space):
    """A small real sweep on a Fashion-MNIST slice: narrow nets, a few seconds a trial.
    ONNX Runtime's latency is measured only where a test's search names onnx_latency."""

    def make(
        name="tiny",
        base_e="{values: [8, 16]}",
        extra="",
        epochs=1,
        search="{method: grid, seeds: 2, vmap_seeds: true}",
    ):
        if "onnx_latency" not in search:  # a few seconds of export a trial; asked for by name
            search = search.rstrip("}") + ", onnx_latency: false}"
        text = TINY_SPACE.format(
            name=name, base_e=base_e, extra=extra, epochs=epochs, search=search
        )
        return write_space(text, f"{name}.yaml")

    return make


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs two workers), the tests of one session
    fixture run in one worker, so the cluster starts and the network trains once."""
    for item in items:
        for fixture in ("ray_cluster", "trained"):
            if fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(fixture))
                break


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A real 2-node Ray cluster on loopback, one CPU per node; stopped afterwards.

    Each node gets its own loopback address (Ray would rewrite 127.0.0.1 to the
    machine's interface address), so nothing listens beyond this machine.
    """
    head_ip, worker_ip = "127.0.0.2", "127.0.0.3"
    port = _free_port(head_ip)
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    # A test hook in every worker: the trial test_sweep's fault test names dies once,
    # after its first epoch (tests/hooks/sitecustomize.py).
    hooks = [str(ROOT / "tests" / "hooks"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, hooks))
    env["EXPLORER_TEST_CRASH"] = f"{CRASHED_TRIAL}@1"
    # That variable pins a single node to 127.0.0.1; here each node has its own address.
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    common = ["--num-cpus=1", "--disable-usage-stats"]
    try:
        subprocess.run(
            [
                *ray,
                "start",
                "--head",
                f"--node-ip-address={head_ip}",
                f"--port={port}",
                "--include-dashboard=false",
                *common,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [
                *ray,
                "start",
                f"--address={head_ip}:{port}",
                f"--node-ip-address={worker_ip}",
                *common,
            ],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        yield {
            "address": f"{head_ip}:{port}",
            "node_ip": head_ip,
            "nodes": {head_ip, worker_ip},
            "env": env,
        }
    finally:
        _stop_nodes(f"{head_ip}:{port}", f"--gcs_server_port={port}")
        # `ray stop` also forgets the machine's current cluster; so do we, if it is ours
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        try:
            if current.read_text().strip() == f"{head_ip}:{port}":
                current.unlink()
        except OSError:
            pass


def _stop_nodes(*marks: str, wait_s: float = 10.0) -> None:
    """End the processes of this cluster only: those whose command line names its
    head (`ray stop` would end every Ray on the machine, a user's sweep too).
    Their workers end with their raylet."""

    def ours() -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdline = f.read().decode(errors="replace")
            except OSError:
                continue
            if any(m in cmdline for m in marks):
                pids.append(int(entry))
        return pids

    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait_s
        while ours() and time.monotonic() < deadline:
            time.sleep(0.2)
        if not ours():
            return
