"""A test hook, never on a user's path: kill a sweep trial's worker, as a lost node would.

With this folder on PYTHONPATH and EXPLORER_TEST_CRASH=TRIAL_ID@EPOCH in the
environment of Ray's workers (tests/conftest.py's cluster), the worker running
TRIAL_ID dies right after it has reported EPOCH with that epoch's checkpoint,
on the trial's first attempt only; Ray then retries the trial, which resumes
from the checkpoint (tests/test_sweep.py). The sweep's own code carries no
fault-injection switch. Other processes only pay for reading one variable.
"""

import os
import sys

CRASH = os.environ.get("EXPLORER_TEST_CRASH")


def crashing(report, trial: str, epoch: int):
    """tune.report that ends the process after `trial` reported `epoch`, once."""
    from pathlib import Path

    from ray import tune

    def wrapped(metrics, *args, **kwargs):
        report(metrics, *args, **kwargs)
        ids = {r.get("trial_id") for r in metrics.get("rows", ())}
        if trial not in ids or metrics.get("epoch") != epoch:
            return
        marker = Path(tune.get_context().get_trial_dir()) / "crashed-once"
        if marker.exists():  # the retried attempt runs to the end
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("the first attempt of this trial was killed on purpose\n")
        os._exit(1)

    return wrapped


class AfterTrialImport:
    """Patches ray.tune.report once explorer.trial is imported (in a trial's worker)."""

    def find_spec(self, name, path, target=None):
        if name != "explorer.trial":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            from ray import tune

            trial, epoch = CRASH.rsplit("@", 1)
            tune.report = crashing(tune.report, trial, int(epoch))

        spec.loader.exec_module = exec_module
        return spec


if CRASH:
    sys.meta_path.insert(0, AfterTrialImport())
