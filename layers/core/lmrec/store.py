"""One object-store API over s3://bucket/key, file:///path and plain local paths.

boto3 honours AWS_ENDPOINT_URL, so the same code talks to AWS S3 or a local S3 endpoint
(moto server) with no change here.
"""

from __future__ import annotations

import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from lmrec.aws import cached_client, endpoint, error_code

DATA_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")


def is_data_file(uri: str, root: str = "") -> bool:
    """An interactions or catalog file: CSV/TSV/Parquet, not hidden or a marker like _SUCCESS,
    nor below a hidden or "_" folder under the listed `root` (Spark's _temporary/, a crashed
    writer's .partial/): such files are not the data yet."""
    uri = uri.rstrip("/")
    below = uri[len(root.rstrip("/")) :] if root and uri.startswith(root.rstrip("/")) else ""
    parts = [p for p in below.split("/") if p] or [uri.rsplit("/", 1)[-1]]
    hidden = any(p.startswith((".", "_")) for p in parts)
    return not hidden and parts[-1].lower().endswith(DATA_SUFFIXES)


class StoreError(RuntimeError):
    """An object could not be read, listed or written."""


class NotFound(StoreError):
    """The object does not exist (as opposed to: the store could not be reached)."""


@dataclass(frozen=True)
class Location:
    scheme: str  # "s3" or "file"
    bucket: str  # empty for files
    key: str  # object key, or an absolute local path

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}" if self.scheme == "s3" else self.key


def parse(uri: str | os.PathLike) -> Location:
    text = os.fspath(uri)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StoreError(f"{text!r} has no bucket name (expected s3://bucket/key)")
        return Location("s3", parsed.netloc, parsed.path.lstrip("/"))
    if parsed.scheme == "file":
        return Location("file", "", str(Path(parsed.path).resolve()))
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter is a Windows drive
        raise StoreError(f"{text!r}: unsupported scheme {parsed.scheme!r} (use s3:// or a path)")
    return Location("file", "", str(Path(text).resolve()))


def s3_endpoint() -> str | None:
    """The endpoint botocore's S3 client takes from the environment (None: AWS)."""
    return endpoint("s3")


def s3_client():
    """The process's S3 client (lmrec.aws.cached_client)."""
    return cached_client("s3")


def _fast_get(loc: Location):
    """The object's body by a stdlib-signed GET (see lmrec.s3get), or None to use
    botocore: no keys in the environment, or an answer botocore handles better (a region
    redirect, a throttle, a network error it retries)."""
    from lmrec import s3get

    reader = s3get.reader_from_env()
    if reader is None:
        return None
    try:
        return reader.open(loc.bucket, loc.key)
    except s3get.S3GetError as exc:  # every failure of the fast path arrives as this
        if exc.code in ("NoSuchKey", "NoSuchBucket"):
            raise NotFound(f"{loc}: {exc}") from None
        if exc.code == s3get.TIMEOUT:  # a hanging S3: botocore would only wait again
            raise StoreError(f"{loc}: {exc}") from None
        return None


def _s3_error(loc: Location, exc: Exception) -> StoreError:
    code = error_code(exc)
    kind = NotFound if code in ("NoSuchKey", "404", "NotFound", "NoSuchBucket") else StoreError
    return kind(f"{loc}: {exc}")


def read_bytes(uri: str | os.PathLike) -> bytes:
    loc = parse(uri)
    if loc.scheme == "file":
        try:
            return Path(loc.key).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"{loc}: no such file") from None
        except OSError as exc:
            raise StoreError(f"{loc}: {exc.strerror or exc}") from None
    fast = _fast_get(loc)
    if fast is not None:
        with fast:
            try:
                return fast.read()
            except Exception as exc:  # a dropped connection: OSError or IncompleteRead
                raise StoreError(f"{loc}: read failed: {exc}") from None
    try:
        return s3_client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read()
    except Exception as exc:  # botocore raises many types; all mean "could not read"
        raise _s3_error(loc, exc) from None


def write_bytes(uri: str | os.PathLike, data: bytes) -> None:
    loc = parse(uri)
    if loc.scheme == "file":
        path = Path(loc.key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One temporary name per writer: two writers of one file (replayed events
            # publishing the same version) must not rename each other's half-written file.
            tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # atomic on one file system: readers never see half a file
        except OSError as exc:
            blocking = next((p for p in path.parents if p.is_file()), None)
            why = f"{blocking} is a file, not a directory" if blocking else exc.strerror or exc
            raise StoreError(f"{loc}: {why}") from None
        return
    try:
        s3_client().put_object(Bucket=loc.bucket, Key=loc.key, Body=data)
    except Exception as exc:
        raise _s3_error(loc, exc) from None


def delete(uri: str | os.PathLike) -> None:
    """Remove one object (a missing one is no error). On a versioned bucket this adds a
    delete marker; the old version expires by the bucket's rule for noncurrent versions."""
    loc = parse(uri)
    if loc.scheme == "file":
        try:
            Path(loc.key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"{loc}: {exc.strerror or exc}") from None
        return
    try:
        s3_client().delete_object(Bucket=loc.bucket, Key=loc.key)
    except Exception as exc:
        raise _s3_error(loc, exc) from None


def list_files(uri: str | os.PathLike) -> list[str]:
    """Every object under a prefix (or the one object named), as URIs/paths, sorted."""
    loc = parse(uri)
    if loc.scheme == "file":
        path = Path(loc.key)
        if path.is_file():
            return [str(path)]
        if not path.is_dir():
            raise StoreError(f"{loc}: no such file or directory")
        return sorted(str(p) for p in path.rglob("*") if p.is_file())
    prefix = loc.key
    out: list[str] = []
    try:
        pages = (
            s3_client().get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix)
        )
        for page in pages:
            out.extend(f"s3://{loc.bucket}/{obj['Key']}" for obj in page.get("Contents", []))
    except Exception as exc:
        raise _s3_error(loc, exc) from None
    return sorted(u for u in out if _below(u, loc))


def _below(uri: str, loc: Location) -> bool:
    """A prefix "data/x" must not match "data/x2/...": the exact key or keys below "x/"."""
    return (
        uri == str(loc)
        or uri[len(str(loc)) :].startswith("/")
        or loc.key.endswith("/")
        or not loc.key
    )


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    modified: float  # unix seconds
    etag: str  # S3 ETag, or size-mtime for local files


def list_objects(uri: str | os.PathLike) -> list[ObjectInfo]:
    """Like list_files, with size, modification time and an ETag-like version tag."""
    loc = parse(uri)
    if loc.scheme == "file":
        out = []
        for path in list_files(uri):
            st = Path(path).stat()
            out.append(ObjectInfo(path, st.st_size, st.st_mtime, f"{st.st_size}-{st.st_mtime_ns}"))
        return out
    prefix, out = loc.key, []
    try:
        pages = (
            s3_client().get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=prefix)
        )
        for page in pages:
            for obj in page.get("Contents", []):
                out.append(
                    ObjectInfo(
                        f"s3://{loc.bucket}/{obj['Key']}",
                        int(obj["Size"]),
                        obj["LastModified"].timestamp(),
                        obj["ETag"].strip('"'),
                    )
                )
    except Exception as exc:
        raise _s3_error(loc, exc) from None
    return sorted((o for o in out if _below(o.uri, loc)), key=lambda o: o.uri)


def open_stream(uri: str | os.PathLike):
    """A binary file-like object for reading an object without holding it all in memory."""
    loc = parse(uri)
    if loc.scheme == "file":
        try:
            return open(loc.key, "rb")
        except OSError as exc:
            raise StoreError(f"{loc}: {exc.strerror or exc}") from None
    try:
        return s3_client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
    except Exception as exc:
        raise _s3_error(loc, exc) from None


def download(uri: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy one object to a local file and return its path."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    loc = parse(uri)
    if loc.scheme == "file":
        try:
            shutil.copyfile(loc.key, dest)
        except OSError as exc:
            raise StoreError(f"{loc}: {exc.strerror or exc}") from None
        return dest
    # One GET streamed to disk: no s3transfer thread pool to start (bundle files are small,
    # and the thread pool alone costs a noticeable part of a cold start).
    tmp = dest.with_name(dest.name + ".part")
    try:
        body = _fast_get(loc) or s3_client().get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        try:
            with open(tmp, "wb") as fh:
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    fh.write(chunk)
        finally:
            body.close()
        os.replace(tmp, dest)
    except StoreError:
        tmp.unlink(missing_ok=True)
        raise
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise _s3_error(loc, exc) from None
    return dest
