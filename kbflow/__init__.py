"""kbflow: an observable, incremental data pipeline for RAG and fine-tuning.

Importing kbflow changes nothing in the importing process. kbflow's own entry points (the CLI,
the kbflow service) call `set_process_defaults` first: privacy- and offline-first defaults for the
libraries they load. Each uses `setdefault`, so a variable the user set (for example a remote
`PREFECT_API_URL`) is kept. An application that imports kbflow decides for itself; it may call it.
"""

import os

__version__ = "0.1.0"

DEFAULT_ENVIRONMENT = {
    # Nothing phones home.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # also stops a 'database is locked' heartbeat
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
    # Models load from local files; a hub name fails fast instead of hanging.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    # Quiet libraries that print progress bars or advice on our users' terminals.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TOKENIZERS_PARALLELISM": "false",
    "TQDM_DISABLE": "1",  # e.g. the trainer's "Computing widget examples" bar in kbflow finetune
    "LANCEDB_LOG": "error",  # Lance's Rust-side warnings would otherwise reach our users' terminals
}


def set_process_defaults() -> None:
    """Set kbflow's privacy and offline defaults in this process's environment (variables already set stay)."""
    for name, value in DEFAULT_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
