"""The training container's user-data steps, configured by environment variables that the
retrain function passes in the training job's Environment:

  LMREC_ERASURE_URI         erasure records (s3://bucket/erasure; default
                            <LMREC_STORE_URI>/erasure, the API's rule): the deletion job runs
                            before training, on LMREC_DATA_URI and on the container's local
                            copy of the data channel, so no model trains on an erased user
  LMREC_DATA_URI            the S3 data prefix the deletion job rewrites
  LMREC_BATCH_URI           batch recommendation outputs (s3://bucket/batch/): they hold
                            user ids, so the deletion job rewrites them too
  LMREC_USER_STORE          dynamodb://table: after training, the users whose history changed
                            are written there (training/histories.py)
  LMREC_HISTORY_STATE_URI   the sync's fingerprints (default s3://<data bucket>/histories/...)
  LMREC_HISTORY_LENGTH      items kept per history (default 1000)

Only the launching process runs them, never a torchrun worker.
"""

from __future__ import annotations

import logging
import os

from training.sagemaker import torchrun_worker

log = logging.getLogger(__name__)


def _state_uri(env) -> str:
    from training.cli import default_state_uri

    if env.get("LMREC_HISTORY_STATE_URI"):
        return env["LMREC_HISTORY_STATE_URI"]
    data = env.get("LMREC_DATA_URI", "")
    try:
        return default_state_uri(data, env.get("LMREC_USER_STORE", "")) if data else ""
    except ValueError:
        return ""


def erasure_root(env=os.environ, data_uri: str = "") -> str:
    """Where erasure requests are: the API's rule (LMREC_ERASURE_URI, else
    <LMREC_STORE_URI>/erasure); with neither, s3://<data bucket>/erasure when the data is in
    S3 (the deployed layout), as the sync's fingerprints default to the data's bucket."""
    from lmrec.settings import erasure_root as settings_rule

    root = settings_rule(env.get("LMREC_ERASURE_URI", ""), env.get("LMREC_STORE_URI", ""))
    if root or not data_uri.startswith("s3://"):
        return root
    return f"s3://{data_uri.removeprefix('s3://').split('/', 1)[0]}/erasure"


def before_training(train_uri: str, user_col: str, env=os.environ) -> dict | None:
    """The deletion job; raises (and so fails the training job) when it cannot finish."""
    root = erasure_root(env)
    if not root or torchrun_worker(env):
        return None
    from lmrec.userstore import open_user_store

    from training import erasure

    uris = [u for u in (env.get("LMREC_DATA_URI", ""), train_uri) if u]
    store_uri = env.get("LMREC_USER_STORE", "")
    return erasure.run(
        root,
        uris,
        user_col,
        state_uri=_state_uri(env),
        user_store=open_user_store(store_uri) if store_uri else None,
        batch_uris=[env["LMREC_BATCH_URI"]] if env.get("LMREC_BATCH_URI") else [],
    )


def after_training(train_uri: str, data_cfg, env=os.environ) -> dict | None:
    """The history sync. A failure is logged, not raised: the model is good, and
    `lmrec sync-histories` (or the next training) writes what was missed."""
    store_uri = env.get("LMREC_USER_STORE", "")
    state = _state_uri(env)
    if not store_uri or torchrun_worker(env):
        return None
    if not state:
        log.error("history sync skipped: set LMREC_HISTORY_STATE_URI (or an s3 LMREC_DATA_URI)")
        return None
    from lmrec.userstore import open_user_store

    from training import histories
    from training.data import load_interactions

    try:
        data = load_interactions(train_uri, data_cfg)
        return histories.sync(
            data,
            open_user_store(store_uri),
            state,
            int(env.get("LMREC_HISTORY_LENGTH", histories.DEFAULT_HISTORY_LENGTH)),
            erasure_root(env, env.get("LMREC_DATA_URI", "")),
        )
    except Exception as exc:  # of every kind: the sync is redone by the next run
        name = type(exc).__name__
        log.error("history sync failed (%s: %s); run `lmrec sync-histories`", name, exc)
        return None
