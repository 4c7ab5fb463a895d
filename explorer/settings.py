"""How things run (not what is computed), read from the environment once.

An entry point (the CLI, a sweep's trial, a benchmark) calls `from_env()` and
passes the frozen `Settings` down; a sweep ships them to every Ray worker as
environment variables (`worker_env`), so a trial on another node runs as the
driver asked. Nothing else in the package reads `os.environ`: a setting read at
trace time inside a module would make paths nobody chose. The README's Settings
table lists each variable.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

CONVS = ("auto", "mixed", "matmul", "xla")
SEED_MODES = ("auto", "vmap", "loop")
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
DEFAULT_CACHE = os.path.join("~", ".cache", "squeeze-explorer", "jax")

# field -> environment variable
ENV = {
    "conv": "EXPLORER_CONV",
    "seeds": "EXPLORER_SEEDS",
    "cpu_devices": "EXPLORER_CPU_DEVICES",
    "malloc": "EXPLORER_MALLOC",
    "cache_dir": "EXPLORER_CACHE_DIR",
    "fashion_mnist_dir": "FASHION_MNIST_DIR",
    "results": "EXPLORER_RESULTS",
    "jax_platforms": "JAX_PLATFORMS",
}


class SettingError(ValueError):
    """A setting that cannot be used; printed as one line by the CLI (exit 2)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """Every knob that changes how a run executes, with its default."""

    # Convolution lowering (explorer.lowering): auto picks per backend and program.
    conv: str = "auto"
    # Several seeds in one program: vmapped (accelerators) or one after another (CPU).
    seeds: str = "auto"
    # XLA CPU devices, each taking a share of every batch; None: one per core.
    cpu_devices: int | None = None
    # "keep": glibc keeps freed memory for reuse (explorer.devices); "default": leave it.
    malloc: str = "keep"
    # JAX's persistent compilation cache; None: the default folder, "": off.
    cache_dir: str | None = None
    # Folder of the Fashion-MNIST IDX files (read offline).
    fashion_mnist_dir: str = FASHION_MNIST_DIR
    # The table the notebook opens; None: the example table beside it.
    results: str | None = None
    # JAX's platform list, passed on to workers as it is (e.g. "cpu").
    jax_platforms: str | None = None

    def __post_init__(self):
        if self.conv not in CONVS:
            raise SettingError(
                f"${ENV['conv']}: expected one of {', '.join(CONVS)}, got {self.conv!r}"
            )
        if self.seeds not in SEED_MODES:
            raise SettingError(
                f"${ENV['seeds']}: expected one of {', '.join(SEED_MODES)}, got {self.seeds!r}"
            )
        if self.cpu_devices is not None and self.cpu_devices < 1:
            raise SettingError(
                f"${ENV['cpu_devices']}: expected at least 1, got {self.cpu_devices}"
            )
        if self.malloc not in ("keep", "default"):
            raise SettingError(f"${ENV['malloc']}: expected keep or default, got {self.malloc!r}")

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    @property
    def cache_folder(self) -> str | None:
        """The compilation cache's folder, absolute; None when it is off."""
        if self.cache_dir == "":
            return None
        return os.path.abspath(os.path.expanduser(self.cache_dir or DEFAULT_CACHE))

    def to_env(self) -> dict[str, str]:
        """Variables that give another process these settings (defaults left out)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value != f.default:
                out[ENV[f.name]] = str(value)
        return out


def from_env(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from the environment (or a mapping); bad values raise SettingError."""
    env = os.environ if environ is None else environ
    raw = {name: env.get(var) for name, var in ENV.items()}
    values: dict = {k: v for k, v in raw.items() if v is not None}
    for key in ("conv", "seeds", "malloc"):
        if key in values:
            values[key] = values[key] or Settings.__dataclass_fields__[key].default
    if values.get("cpu_devices") is not None:
        text = values["cpu_devices"]
        try:
            values["cpu_devices"] = int(text) if text else None
        except ValueError:
            raise SettingError(
                f"${ENV['cpu_devices']}: expected a whole number, got {text!r}"
            ) from None
    for key in ("results", "jax_platforms"):
        if values.get(key) == "":
            values[key] = None
    if values.get("fashion_mnist_dir") == "":
        values.pop("fashion_mnist_dir")
    return Settings(**values)


def malloc_kept(environ: Mapping[str, str] | None = None) -> bool:
    """Whether glibc's malloc should keep freed memory (read before anything else)."""
    env = os.environ if environ is None else environ
    return env.get(ENV["malloc"], "") != "default"


# glibc's malloc settings that keep freed memory, by tunable name (explorer.devices)
KEEP_TUNABLES = (("arena_max", 1), ("mmap_max", 0), ("trim_threshold", 2**31 - 1))


REUSE_WAIT_S = 3600  # longer than any epoch: a thread that never reports would hang anyway


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment of a sweep's worker processes: these settings, and malloc's from start.

    A worker has started threads (with malloc arenas of their own) before a
    trial runs, so the malloc settings go in as glibc tunables, read when the
    process starts.
    """
    env = {
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",  # trials may share a GPU
        # A reused worker waits for the trial stopped on it to reach its next report
        # (the end of an epoch); Tune's default of 2 s failed a trial (docs/design.md, Settings).
        "TUNE_FUNCTION_THREAD_TIMEOUT_S": str(REUSE_WAIT_S),
        **settings.to_env(),
    }
    if settings.malloc == "keep":
        keep = ":".join(f"glibc.malloc.{name}={value}" for name, value in KEEP_TUNABLES)
        prior = os.environ.get("GLIBC_TUNABLES")
        env["GLIBC_TUNABLES"] = f"{prior}:{keep}" if prior else keep
    return env


def local_ray_env() -> None:
    """Environment for a Ray started by this process: loopback only, no auth token,
    and Tune's own loggers and console tables off (rows and progress are ours).

    Ray rewrites 127.0.0.1 to the interface address unless told not to, and a
    Ray reachable from this machine alone needs no token. Set before Ray is
    imported; a value the user set wins.
    """
    for key, value in (
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
        ("RAY_AUTH_MODE", "disabled"),
    ):
        os.environ.setdefault(key, value)
    quiet_tune_env()


def quiet_tune_env() -> None:
    """Tune keeps its JSON log of trial results only, and prints no tables of its own."""
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # one checkpoint kept per trial makes Tune snapshot often; its warning says nothing new
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
