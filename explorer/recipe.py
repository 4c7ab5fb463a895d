"""The training recipe and the other sections of a space file, validated once.

Each section is a frozen pydantic model with unknown keys forbidden, so a typo in
a space file is an error that names the key, never a silently ignored setting.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from explorer.search import METHODS, SCHEDULERS


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


# Keys an older recipe may carry, read and dropped (test-only fault injection,
# now a test hook: tests/hooks/sitecustomize.py).
RETIRED = ("inject_fault", "fault_epoch")


class Recipe(Section):
    """How one network is trained. Defaults: the documented Fashion-MNIST recipe."""

    epochs: int = Field(15, ge=1)
    batch_size: int = Field(128, ge=1)
    # Default: AdamW at 1e-3, cosine decay after half an epoch of warm-up. It trains
    # every point of the shipped spaces from scratch without batch norm; plain SGD
    # at the paper's 0.04 leaves these nets stuck at loss 2.30 (see README).
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    learning_rate: float = Field(1e-3, gt=0)  # paper (SGD, ImageNet): 0.04, poly decay
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    nesterov: bool = False
    weight_decay: float = Field(1e-2, ge=0)  # adamw: decoupled; sgd/adam: L2. paper: 2e-4
    schedule: Literal["poly", "cosine", "constant"] = "cosine"
    poly_power: float = Field(1.0, gt=0)  # paper: linear (power 1) decay to 0
    warmup_epochs: float = Field(0.5, ge=0)  # linear warm-up steadies the first steps
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    augment: bool = False  # random crop (pad 4) + horizontal flip, per batch
    eval_batch_size: int = Field(1000, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _retired_keys(cls, data):
        # Recipes written before the fault-injection fields left (checkpoints, rows,
        # records) carry them at their inert values; such a recipe still reads.
        # A live fault asked for is an unknown key, as any other.
        if isinstance(data, dict) and data.get("inject_fault", "none") == "none":
            data = {k: v for k, v in data.items() if k not in RETIRED}
        return data

    @model_validator(mode="after")
    def _warmup_fits(self):
        if self.warmup_epochs >= self.epochs and self.warmup_epochs > 0:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be less than epochs ({self.epochs})"
            )
        return self


class DatasetConfig(Section):
    """Which data set, named as in tensorflow-datasets, and how much of it."""

    name: str = "fashion_mnist"
    data_dir: str | None = None  # a TFDS data_dir with the prepared data set
    train_size: int | None = Field(None, ge=1)  # first N training examples
    test_size: int | None = Field(None, ge=1)  # first N test examples
    download: bool = False  # let tensorflow-datasets download and prepare it (online)


class SearchConfig(Section):
    """How points are chosen and how many seeds each gets."""

    method: str = "grid"  # an entry of explorer.search.METHODS
    seeds: int = Field(1, ge=1)
    # the training seeds are first_seed .. first_seed + seeds - 1: more seeds for
    # points already trained go in a sweep of their own, with rows of their own
    first_seed: int = Field(0, ge=0)
    num_samples: int = Field(8, ge=1)  # sampled methods: points to draw
    seed: int = 0  # sampling seed
    scheduler: str = "none"  # an entry of explorer.search.SCHEDULERS
    max_failures: int = Field(1, ge=0)  # retries of a trial whose worker died
    # Weights and optimiser state every N epochs (0: never), so a trial whose worker
    # dies resumes from its last checkpoint; and which trials keep their final
    # weights once the sweep ends (front: the Pareto front's, for the disk's sake).
    checkpoint_every: int = Field(1, ge=0)
    keep_weights: Literal["all", "front", "none"] = "all"
    # Export each trained network to ONNX and time it in ONNX Runtime (batch 1): the
    # cost of the deployed model, beside JAX's (a few seconds a trial).
    onnx_latency: bool = True
    # Also write each seed's int8 ONNX file (explorer export --int8) and measure it in
    # ONNX Runtime: its bytes on disk, top-1 and batch-1 latency (a few seconds more).
    onnx_int8: bool = False
    # A point's seeds in one program (true), one trial each (false), or auto
    # (null): one program when trials get a GPU. On CPU, where one run already
    # keeps the cores busy, one program was slower than separate trials
    # (benchmarks/fill_machine.py: 0.90x against 1.12x for two one-CPU trials).
    vmap_seeds: bool | None = None

    @property
    def training_seeds(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @field_validator("method")
    @classmethod
    def _known_method(cls, v: str) -> str:
        return _known(v, METHODS)

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str) -> str:
        return _known(v, SCHEDULERS)


def _known(value: str, registry: dict) -> str:
    if value not in registry:
        raise ValueError(f"expected one of {', '.join(registry)}, got {value!r}")
    return value


class Constraints(Section):
    """Limits checked before a trial starts; a point over them is skipped."""

    max_params: int | None = Field(None, ge=1)
    max_bytes_f32: int | None = Field(None, ge=1)
    max_bytes_int8: int | None = Field(None, ge=1)
    max_flops: int | None = Field(None, ge=1)

    def violations(self, summary: dict) -> list[str]:
        """Reasons a point's complexity summary breaks these limits."""
        out = []
        for key, limit in self.model_dump().items():
            metric = key.removeprefix("max_")
            if limit is not None and summary[metric] > limit:
                out.append(f"{metric} {summary[metric]:,} > {key} {limit:,}")
        return out


class Compression(Section):
    """Deep Compression after training (explorer.compression): prune, share, code.

    Keys a space may fix here or vary like a metaparameter. Retraining and the
    centroids' fine-tuning use the recipe's optimiser at learning_rate_scale of
    its rate, without warm-up (the paper retrains at a lower rate).
    """

    sparsity: float = Field(0.0, ge=0, lt=1)  # of the kernels' weights, smallest magnitudes first
    per_layer: bool = False  # each layer its own rate, from a sensitivity scan (explorer.pruning)
    rounds: int = Field(1, ge=1)  # prune-retrain rounds reaching the rates gradually
    bits: int = Field(0, ge=0, le=8)  # 2^bits shared weights per layer; 0: float32 values
    retrain_epochs: int = Field(1, ge=0)  # after each round's pruning, under the mask
    finetune_epochs: int = Field(1, ge=0)  # of the centroids, after k-means
    learning_rate_scale: float = Field(0.1, gt=0, le=1)


class Resources(Section):
    """What one trial asks of Ray."""

    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
