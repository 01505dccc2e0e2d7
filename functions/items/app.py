"""Lambda entry: an item file uploaded under data/items/ (S3 "Object Created" via
EventBridge) adds or updates live items (lmrec.itemfiles); the API's warm instances see
them within their poll bound. Every file's outcome is logged and returned.

Settings: lmrec.settings.ItemsSettings (LMREC_ITEM_STORE)."""

from __future__ import annotations

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from lmrec import aws, itemfiles, store
from lmrec.itemstore import ItemStoreUnavailable, open_item_store
from lmrec.lifecycle_events import BadEvent, parse_object_created
from lmrec.settings import ItemsSettings

logger = Logger(service="lmrec-items")
copy_config_to_registered_loggers(source_logger=logger, include={"lmrec"})


@logger.inject_lambda_context
def handler(event: dict, context) -> dict:
    try:
        created = parse_object_created(event, itemfiles.PREFIX)
    except BadEvent as exc:
        return {"status": "skipped", "reason": str(exc)}
    settings = ItemsSettings()
    aws.configure(settings)
    bucket, key = created.detail.bucket.name, created.detail.object.key
    try:
        data = store.read_bytes(f"s3://{bucket}/{key}")
    except store.StoreError as exc:  # deleted since, or not ours to read: nothing to do
        outcome = {"file": key, "status": "refused", "reason": str(exc)[:300]}
    else:
        try:
            outcome = itemfiles.ingest(open_item_store(settings.item_store), key, data)
        except ItemStoreUnavailable:
            logger.exception("item store failed", extra={"file": key})
            raise  # Lambda retries the event (EventInvokeConfig), then the failed-events queue
    logger.info("item file", extra=outcome)
    return outcome
