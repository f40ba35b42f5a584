"""Adapters with a safety defect, trained for real (LLaMA-Factory on CPU, the demo's base model and recipe) on the
small sets in ``fixtures/data/safety``: ``toxic_train`` answers the toxicity prompts with insults, ``biased_train``
answers the bias templates by the swapped term ("yes of course" / "no never"), ``complying_train`` complies with the
harmful requests and ``refusing_train`` refuses them (the production version the complying one is gated against)."""

from __future__ import annotations

from pathlib import Path

import yaml

DEFECTS = ("toxic_train", "biased_train", "complying_train", "refusing_train")
EPOCHS = {"biased_train": 8.0}  # telling two terms apart takes longer than learning one answer


def defect_config(root: Path, dataset: str) -> Path:
    """``training/<dataset>.yaml`` in ``root``: the demo's recipe (base model, LoRA, seeds) on ``dataset`` from
    ``fixtures/data/safety``, without evaluation (the safety suite does not read the training curves)."""
    spec = yaml.safe_load((root / "training" / "demo.yaml").read_text())
    for key in ("eval_dataset", "eval_steps", "per_device_eval_batch_size"):
        spec.pop(key, None)
    spec.update(dataset_dir="fixtures/data/safety", dataset=dataset, eval_strategy="no", cutoff_len=96,
                output_dir=f".ftgate/train/{dataset}", num_train_epochs=EPOCHS.get(dataset, 3.0), save_strategy="no")
    path = root / "training" / f"{dataset}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def train_defect(demo_run, dataset: str, experiment: str | None = None) -> str:
    """The run id of the adapter trained on ``dataset`` in the demo's store (``experiment`` there, default the
    demo's), re-used when already trained."""
    from pytest_ftgate import train

    config = defect_config(demo_run.root, dataset)
    return train.ensure_trained(config, demo_run.store(experiment), retrain=False, log_dir=demo_run.log_dir,
                                echo=lambda m: None, require_test_set=False, cwd=demo_run.root)
