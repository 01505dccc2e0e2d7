"""Compare-and-swap on one object: read it with a tag, write it only if the tag still holds.

s3://: S3 conditional writes. PutObject with IfMatch=<ETag> replaces the object only if it
is unchanged, and IfNoneMatch='*' creates it only if it does not exist; a writer that lost
gets 412 PreconditionFailed (or 409 ConditionalRequestConflict while another conditional
write is in flight), atomically on S3's side.
file://: the same rule under an exclusive fcntl lock on a sidecar lock file; the tag is the
content's sha256, the write a rename (readers never see half a file, and take no lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path

from lmrec import store
from lmrec.aws import error_code

LOST = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409", "NoSuchKey")


def _file_tag(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def read(uri: str) -> tuple[bytes, str] | None:
    """(content, tag), or None when the object does not exist."""
    loc = store.parse(uri)
    if loc.scheme == "file":
        try:
            data = Path(loc.key).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise store.StoreError(f"{loc}: {exc.strerror or exc}") from None
        return data, _file_tag(data)
    try:
        reply = store.s3_client().get_object(Bucket=loc.bucket, Key=loc.key)
        return reply["Body"].read(), reply["ETag"]
    except Exception as exc:  # botocore raises many types
        err = store._s3_error(loc, exc)
        if isinstance(err, store.NotFound):
            return None
        raise err from None


def write(uri: str, data: bytes, expected: str | None) -> bool:
    """Write `data` if the object's tag is still `expected` (None: if it does not exist).
    False when another writer changed it first; store.StoreError when it cannot be written."""
    loc = store.parse(uri)
    if loc.scheme == "file":
        return _write_file(Path(loc.key), data, expected)
    condition = {"IfNoneMatch": "*"} if expected is None else {"IfMatch": expected}
    try:
        store.s3_client().put_object(Bucket=loc.bucket, Key=loc.key, Body=data, **condition)
    except Exception as exc:
        if error_code(exc) in LOST:
            return False
        raise store._s3_error(loc, exc) from None
    return True


def _write_file(path: Path, data: bytes, expected: str | None) -> bool:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
            try:
                now = _file_tag(path.read_bytes())
            except FileNotFoundError:
                now = None
            if now != expected:
                return False
            tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
    except OSError as exc:
        raise store.StoreError(f"{path}: {exc.strerror or exc}") from None
    return True
