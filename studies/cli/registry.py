"""The subcommands: each one's help line and the module (under studies/cli/commands) that defines it.

The table is static so that `decoder-nas --help` lists every command without importing any of
them (they pull in torch); only the module of the command being run is imported.
"""

from __future__ import annotations

import argparse
from typing import Callable

AddArguments = Callable[[argparse.ArgumentParser], None]
# name -> (module under studies/cli/commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "search": ("study", "run a multi-objective architecture search (with no flags: a small study on the "
                        "built-in corpus)"),
    "worker": ("study", "join a study from another process or machine (creating it if needed) and run trials"),
    "promote": ("study", "retrain a study's front from scratch with a longer budget (in sibling study NAME@STEPS), "
                         "then fill its widest cost gaps with gap trials"),
    "measure": ("front", "re-time a study's front and the presets together, so their latencies compare"),
    "pareto": ("front", "show a study's Pareto front (table, --json, or an interactive --html page)"),
    "export": ("front", "write a front architecture as a config that describe and train accept unchanged; "
               "--hf and --onnx take a trained model (a kept trial or a run folder) to transformers and ONNX"),
    "studies": ("front", "list the studies in a storage (trial counts, budget, settings), or delete one"),
    "dashboard": ("front", "open optuna-dashboard on a study storage"),
    "describe": ("model", "show an architecture's layers, parameters and FLOPs per token"),
    "train": ("model", "train one architecture on a corpus and report validation loss, accuracy and speed"),
    "generate": ("model", "sample text from a checkpoint (KV-cached; reports ms per token)"),
    "evaluate": ("model", "score a checkpoint on zero-shot multiple choice (continuation log-likelihood)"),
    "data": ("data", "tokenise a corpus once into a token store ahead of a study (prepare), or describe the "
                     "stores prepared for it (info)"),
    "reproduce": ("evidence", "train the paper's four models (or --presets) at one budget and compare them side by side"),
    "calibrate": ("evidence", "check that the short proxy ranks architectures as long training does (Kendall τ)"),
}
TRAINING_COMMANDS = ("search", "worker", "promote", "train", "reproduce", "calibrate")  # trainer.threads sets them up
ARGUMENTS: dict[str, AddArguments] = {}  # filled as command modules are imported


def command(name: str) -> Callable[[AddArguments], AddArguments]:
    """Register `add_arguments(parser)`, which also sets the parser's `run(args, console)` default."""
    if name not in COMMANDS:
        raise KeyError(f"command {name!r} is missing from the COMMANDS table")

    def register(add_arguments: AddArguments) -> AddArguments:
        ARGUMENTS[name] = add_arguments
        return add_arguments

    return register
