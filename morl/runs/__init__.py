"""Runs: a folder per trained (agent, env, seed), checkpoints, and the host loop that trains them.

``files``        file names, atomic writes, CSV and JSON-lines readers/writers
``config``       config dataclasses <-> ``config.json`` (nested dataclasses included), budget, provenance
``folders``      run ids and folder creation, ``train.lock``, a folder's status, the store index of the folders
``checkpoints``  orbax checkpoints that restore a train state bit for bit
``driver``       build a run's trainer, train runs chunk by chunk (one vmapped program per seed group), re-evaluate

Everything callers use is re-exported here (``from morl import runs as R; R.train_runs(...)``).
"""

from morl.runs.checkpoints import Checkpointer, state_template
from morl.runs.config import (
    IMPORTS,
    budget_field,
    config_budget,
    config_from_dict,
    config_to_dict,
    import_modules,
    import_recorded,
    machine_info,
    package_version,
    protocol_from_dict,
)
from morl.runs.driver import (
    _BUILT,
    INTERRUPT,
    ProgressEvent,
    build,
    evaluate_state,
    final_eval_key,
    reevaluate,
    train_runs,
)
from morl.runs.files import (
    CKPT_DIR,
    CONFIG_FILE,
    ERROR_FILE,
    EVALS_DIR,
    FRONT_CSV,
    LOCK_FILE,
    METRICS_CSV,
    METRICS_JSONL,
    RESULT_FILE,
    RETURNS_CSV,
    RUN_FORMAT,
    RUNS_DIR_ENV,
    RunError,
    atomic_write_json,
    atomic_write_text,
    default_runs_dir,
    front_files_problem,
    read_front_csv,
    read_jsonl,
    write_front_files,
    write_metrics_csv,
)
from morl.runs.folders import (
    RunInfo,
    RunRequest,
    check_trainable,
    create_run,
    find_run,
    list_runs,
    new_run_id,
    read_lock,
    read_run,
    reindex,
    release_lock,
    store_for,
    store_row,
    take_lock,
)

__all__ = [
    "CKPT_DIR", "CONFIG_FILE", "ERROR_FILE", "EVALS_DIR", "FRONT_CSV", "IMPORTS", "INTERRUPT", "LOCK_FILE",
    "METRICS_CSV", "METRICS_JSONL", "RESULT_FILE", "RETURNS_CSV", "RUNS_DIR_ENV", "RUN_FORMAT", "Checkpointer",
    "ProgressEvent", "RunError", "RunInfo", "RunRequest", "atomic_write_json", "atomic_write_text", "budget_field",
    "build", "check_trainable", "config_budget", "config_from_dict", "config_to_dict", "create_run",
    "default_runs_dir", "evaluate_state", "final_eval_key", "find_run", "front_files_problem", "import_modules",
    "import_recorded", "list_runs", "machine_info", "new_run_id", "package_version", "protocol_from_dict",
    "read_front_csv", "read_jsonl", "read_lock", "read_run", "reevaluate", "reindex", "release_lock",
    "state_template", "store_for", "store_row", "take_lock", "train_runs", "write_front_files",
    "write_metrics_csv",
]
