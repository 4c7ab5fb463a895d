"""Checkpoints of a trained network: parameters, optimiser state and what they are.

One checkpoint folder holds the epochs saved of one run (one seed), each in its
own `epoch_N` folder written by orbax-checkpoint: orbax writes a temporary
folder and renames it when complete, so a save that is interrupted leaves no
epoch behind, only a temporary folder that is ignored. Each epoch holds

- `params`: the parameter tree (nested dicts of float32 arrays, `kernel` HWIO, `bias`);
- `opt_state`: the optimiser state's leaves in `jax.tree.leaves` order (optional);
  `restore` puts them back into the optimiser's tree, rebuilt from the recipe;
- `meta`: JSON: at least `spec` (`ArchSpec.as_dict()`), `dataset`, `mean`, `std`
  (per channel, pixels 0-255), `epoch`, `seed` and `recipe` (its JSON), and a
  SHA-256 `digest` of the arrays that `restore` checks.

Arrays are saved from the host as NumPy arrays and restored as NumPy arrays, so
a checkpoint does not depend on the devices or the mesh that trained it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import traceback
from pathlib import Path

import numpy as np

from explorer import architecture as arch
from explorer.console import first_line

PREFIX = "epoch"
ITEMS = ("params", "opt_state", "meta")
FORMAT = 1


class CheckpointError(Exception):
    """A checkpoint that is missing, incomplete or corrupt; one line naming the folder."""


def save(
    folder: str | Path,
    params,
    opt_state=None,
    *,
    epoch: int,
    meta: dict,
    keep: int | None = None,
) -> Path:
    """Write one epoch's checkpoint into `folder`; returns its `epoch_N` folder.

    meta must be JSON-able (NumPy arrays and scalars are turned into lists and
    numbers). keep: how many of the latest epochs to keep (None: all). An epoch
    that is already there raises CheckpointError (nothing is overwritten).
    """
    import jax

    ocp = _orbax()
    folder = Path(folder).absolute()
    params = _to_host(params)
    leaves = (
        [] if opt_state is None else [np.asarray(a) for a in jax.tree.leaves(_to_host(opt_state))]
    )
    opt_item = {f"{i:05d}": a for i, a in enumerate(leaves)}
    meta = json.loads(json.dumps(meta, default=jsonable))
    meta.update(
        format=FORMAT,
        epoch=int(epoch),
        has_opt_state=opt_state is not None,
        opt_treedef=None if opt_state is None else str(jax.tree.structure(opt_state)),
        digest=_digest(params, opt_item),
    )
    mngr = _manager(folder, create=True, keep=keep)
    try:
        if int(epoch) in mngr.all_steps():
            raise CheckpointError(
                f"{folder}: already holds a checkpoint of epoch {epoch}; "
                "choose another folder or remove it"
            )
        items = {
            "params": ocp.args.StandardSave(params),
            "meta": ocp.args.JsonSave(meta),
        }
        if opt_item:
            items["opt_state"] = ocp.args.StandardSave(opt_item)
        mngr.save(int(epoch), args=ocp.args.Composite(**items), force=True)
        mngr.wait_until_finished()
    finally:
        mngr.close()
    return folder / f"{PREFIX}_{int(epoch)}"


def latest(folder: str | Path) -> int | None:
    """The latest complete epoch saved in `folder` (None: none, or no such folder)."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        return None
    mngr = _manager(folder, create=False)
    try:
        return mngr.latest_step()
    finally:
        mngr.close()


def epochs(folder: str | Path) -> list[int]:
    """Every complete epoch saved in `folder`, in order."""
    folder = Path(folder).absolute()
    if not folder.is_dir():
        return []
    mngr = _manager(folder, create=False)
    try:
        return sorted(mngr.all_steps())
    finally:
        mngr.close()


def restore(folder: str | Path, epoch: int | None = None, opt_state_like=None):
    """(params, opt_state or None, meta) of an epoch (default: the latest).

    params come back as the saved tree of NumPy arrays. The optimiser state
    comes back in its own tree: `opt_state_like`'s if given (any tree with the
    same structure, e.g. `tx.init(params)`), else the one the recipe in meta
    builds (`train.optimizer`). A checkpoint that is missing, incomplete or
    whose arrays do not match their digest raises CheckpointError.
    """
    import jax

    ocp = _orbax()
    folder = Path(folder).absolute()
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    mngr = _manager(folder, create=False)
    try:
        steps = sorted(mngr.all_steps())
        if not steps:
            raise CheckpointError(f"{folder}: holds no complete checkpoint")
        if epoch is None:
            epoch = steps[-1]
        elif epoch not in steps:
            raise CheckpointError(
                f"{folder}: has no checkpoint of epoch {epoch} "
                f"(it has {', '.join(map(str, steps))})"
            )
        where = f"{folder}: checkpoint of epoch {epoch}"
        try:
            meta = mngr.restore(epoch, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise ValueError("its meta item is not this program's")
            items = {"params": ocp.args.StandardRestore()}
            if meta.get("has_opt_state"):
                items["opt_state"] = ocp.args.StandardRestore()
            got = mngr.restore(epoch, args=ocp.args.Composite(**items))
        except CheckpointError:
            raise
        except Exception as e:  # orbax, tensorstore and json raise many kinds
            raise CheckpointError(f"{where} cannot be read: {first_line(e)}") from None
    finally:
        mngr.close()
    params = jax.tree.map(np.asarray, got["params"])
    opt_item = {}
    if meta.get("has_opt_state"):
        opt_item = {k: np.asarray(v) for k, v in got["opt_state"].items()}
    if _digest(params, opt_item) != meta.get("digest"):
        raise CheckpointError(f"{where} is corrupt: its arrays do not match their digest")
    opt_state = None
    if meta.get("has_opt_state"):
        leaves = [opt_item[k] for k in sorted(opt_item)]
        opt_state = _opt_tree(leaves, meta, params, opt_state_like, where)
    return params, opt_state, meta


def meta_for(spec: arch.ArchSpec, recipe, data, seed: int, dataset=None, **extra) -> dict:
    """The meta of a checkpoint of this run: spec, recipe, data set and seed, and `extra`.

    recipe: a `Recipe`; data: the `Dataset` it trained on; dataset: its
    `DatasetConfig` (where the data came from and how much of it), if known.
    """
    meta = {
        "spec": spec.as_dict(),
        "recipe": recipe.model_dump_json(),
        "dataset": data.info.name,
        "mean": np.asarray(data.mean, np.float32).tolist(),
        "std": np.asarray(data.std, np.float32).tolist(),
        "train_examples": len(data.x_train),
        "test_examples": len(data.x_test),
        "seed": int(seed),
    }
    if dataset is not None:
        meta.update(
            data_dir=dataset.data_dir, train_size=dataset.train_size, test_size=dataset.test_size
        )
    return {**meta, **extra}


def spec_of(meta: dict) -> arch.ArchSpec:
    """The network a checkpoint's or a compressed file's meta names, checked (ArchError
    when its metaparameters make no network)."""
    d = dict(meta["spec"])
    d["pool_after"] = tuple(d["pool_after"])
    spec = arch.ArchSpec(**d)
    arch.check(spec)
    return spec


def _opt_tree(leaves: list, meta: dict, params, like, where: str):
    """The optimiser state's tree around its saved leaves."""
    import jax

    if like is None:
        if not meta.get("recipe"):
            raise CheckpointError(f"{where}: has no recipe to rebuild its optimiser state from")
        from explorer.recipe import Recipe
        from explorer.train import optimizer

        recipe = Recipe.model_validate_json(meta["recipe"])
        like = jax.eval_shape(optimizer(recipe, 1).init, params)  # steps only change values
    treedef = jax.tree.structure(like)
    if str(treedef) != meta.get("opt_treedef") or treedef.num_leaves != len(leaves):
        raise CheckpointError(f"{where}: its optimiser state does not fit this optimiser's")
    return jax.tree.unflatten(treedef, leaves)


def _manager(folder: Path, create: bool, keep: int | None = None):
    ocp = _orbax()
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep,
        step_prefix=PREFIX,
        create=create,
        enable_async_checkpointing=False,
        save_root_metadata=False,
    )
    return ocp.CheckpointManager(folder, item_names=ITEMS, options=options)


def _orbax():
    # Imported late: orbax brings tensorstore and asyncio machinery most commands never need.
    import orbax.checkpoint as ocp

    logging.getLogger("absl").setLevel(logging.WARNING)
    _quiet_closed_loop_callbacks()
    return ocp


def _quiet_closed_loop_callbacks() -> None:
    """Drop Python's reports of tensorstore calling back into orbax's closed event loop.

    When one read of a damaged checkpoint fails, orbax's event loop closes with
    reads still in flight; each of them then reports an unraisable
    `RuntimeError: Event loop is closed` from `call_soon_threadsafe`, dozens of
    tracebacks after the one-line CheckpointError. Only those reports are dropped.
    """
    previous = sys.unraisablehook
    if getattr(previous, "quiet_closed_loop", False):
        return

    def hook(u):
        e, tb = u.exc_value, u.exc_traceback
        frames = [f.name for f in traceback.extract_tb(tb)] if tb is not None else []
        if (
            isinstance(e, RuntimeError)
            and str(e) == "Event loop is closed"
            and "call_soon_threadsafe" in frames
        ):
            return
        previous(u)

    hook.quiet_closed_loop = True
    sys.unraisablehook = hook


def _to_host(tree):
    """A tree of NumPy arrays (jax.Arrays fetched from their devices)."""
    import jax

    return jax.tree.map(np.asarray, jax.device_get(tree))


def _digest(params, opt_item: dict) -> str:
    """SHA-256 over every array's path, dtype, shape and bytes."""
    import jax

    h = hashlib.sha256()
    for tree in (params, opt_item):
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
            a = np.ascontiguousarray(leaf)
            h.update(f"{jax.tree_util.keystr(path)}|{a.dtype.str}|{a.shape}".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def jsonable(o):
    """json.dumps' default for NumPy arrays and scalars, sets and tuples."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, (set, tuple)):
        return list(o)
    raise TypeError(f"meta: {type(o).__name__} is not JSON-able")
