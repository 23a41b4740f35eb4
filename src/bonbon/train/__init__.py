"""Training: BoNBoN (and DPO / IPO / SFT) in one loop on ``accelerate``.

Each concern has its module; start with :mod:`bonbon.train.loop` (``fit``, readable top to bottom):

    options      TrainConfig: the objective and the loop settings, checked against the schema
    data         reference log-probs joined into the examples; the held-out validation prompts
    loop         train() and sft(), the loop, one optimizer step, the batch losses, validation
    state        Run: what the loop holds, the layout of a run's directory
    checkpoints  resume, checkpoints, snapshots, the policy in from_pretrained form
    lora         peft adapters around the policy, merged when it is saved
    trackers     report_to through accelerate (tensorboard, wandb, mlflow, trackio)
    metrics      metrics.csv and train_summary.json
    launch       here or under ``accelerate launch``; the CLI (``python -m bonbon.train``)
"""

from bonbon.train.data import attach_reference, split_validation
from bonbon.train.launch import launch_command, launch_or_train, main
from bonbon.train.loop import epoch_order, learning_rate, sft, train
from bonbon.train.options import (
           OBJECTIVE_FIELDS,
           RESUMABLE_CHANGES,
           LoraOptions,
           TrainConfig,
           config_from_dict,
)

__all__ = ["OBJECTIVE_FIELDS", "RESUMABLE_CHANGES", "LoraOptions", "TrainConfig", "attach_reference",
           "config_from_dict", "epoch_order", "launch_command", "launch_or_train", "learning_rate", "main",
           "sft", "split_validation", "train"]
