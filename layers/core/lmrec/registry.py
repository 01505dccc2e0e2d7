"""The model registry in the store: versions under models/<name>/<version>/ and the
production pointer models/<name>/production.json, which is written last and is the switch.

The pointer changes only by compare-and-swap (lmrec.cas): a writer reads it with its ETag,
decides, and writes on the condition that it is unchanged, so two promotions (or a promotion
and a rollback) racing cannot both win, and the loser decides again against the winner. It
keeps the versions it replaced, newest first (`history`, `previous` = history[0]), so the
rollback chain loses no model. A pointer that is corrupt or names a missing bundle is
reported as such and can be replaced by a promotion or a rollback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from lmrec import cas, store
from lmrec.settings import models_prefix, pointer_uri

log = logging.getLogger(__name__)
HISTORY = 10  # versions kept in the pointer for rollback
MAX_SWAP_ATTEMPTS = 20


class PointerError(RuntimeError):
    """The production pointer is missing or unreadable."""


class NoPointer(PointerError):
    """There is no production pointer yet (no model was ever promoted)."""


class CorruptPointer(PointerError):
    """The pointer exists but is not a valid pointer (it can be replaced)."""


@dataclass(frozen=True)
class Pointer:
    model_version: str
    bundle_uri: str
    raw: dict

    @classmethod
    def parse(cls, data: bytes, where: str) -> Pointer:
        try:
            raw = json.loads(data)
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            version, uri = raw["model_version"], raw["bundle_uri"]
            if not (isinstance(version, str) and version and isinstance(uri, str) and uri):
                raise TypeError("model_version and bundle_uri must be non-empty strings")
            return cls(version, uri, raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptPointer(f"{where} is not a valid production pointer: {exc}") from None

    def summary(self) -> dict:
        """What the rollback chain keeps of this pointer (not its own chain)."""
        keep = ("model_version", "bundle_uri", "promoted_at", "source_job")
        return {k: self.raw[k] for k in keep if k in self.raw} | {
            "model_version": self.model_version,
            "bundle_uri": self.bundle_uri,
        }

    def history(self) -> list[dict]:
        chain = self.raw.get("history")
        if not isinstance(chain, list):  # written before history existed: one level
            chain = [self.raw["previous"]] if isinstance(self.raw.get("previous"), dict) else []
        return [p for p in chain if isinstance(p, dict) and "model_version" in p]


@dataclass(frozen=True)
class Current:
    """production.json as it is now: its pointer (None when missing or corrupt), the tag a
    conditional write must match (None when missing), and what is wrong with it."""

    pointer: Pointer | None
    tag: str | None
    problem: str | None = None


def version_uri(store_uri: str, model_name: str, version: str) -> str:
    return f"{models_prefix(store_uri, model_name)}/{version}"


def read_pointer(uri: str) -> Pointer:
    try:
        data = store.read_bytes(uri)
    except store.NotFound as exc:
        raise NoPointer(f"cannot read the production pointer: {exc}") from None
    except store.StoreError as exc:
        raise PointerError(f"cannot read the production pointer: {exc}") from None
    return Pointer.parse(data, uri)


def read_current(store_uri: str, model_name: str) -> Current:
    """The pointer and its tag; a store that cannot be reached raises store.StoreError."""
    uri = pointer_uri(store_uri, model_name)
    found = cas.read(uri)
    if found is None:
        return Current(None, None)
    data, tag = found
    try:
        return Current(Pointer.parse(data, uri), tag)
    except CorruptPointer as exc:
        log.warning("%s", exc)
        return Current(None, tag, str(exc))


def versions(store_uri: str, model_name: str) -> list[str]:
    """Published versions (those with a manifest), for messages that suggest one."""
    prefix = models_prefix(store_uri, model_name)
    try:
        files = store.list_files(prefix + "/")
    except store.StoreError:
        return []
    out = {f.rsplit("/", 2)[-2] for f in files if f.endswith("/manifest.json")}
    return sorted(out)


def publish(bundle_dir, store_uri: str, model_name: str) -> Pointer:
    """Copy a verified local bundle to models/<name>/<version>/ (manifest last) and return the
    pointer that would make it production. Does not switch production."""
    from pathlib import Path

    from lmrec import bundle as fmt

    bundle_dir = Path(bundle_dir)
    loaded = fmt.load(bundle_dir)  # refuses a bad bundle before anything is copied
    fmt.verify_all(bundle_dir, loaded.manifest, str(bundle_dir))  # records too, not only serving
    dest = version_uri(store_uri, model_name, loaded.version)
    ours = (bundle_dir / fmt.MANIFEST).read_bytes()
    try:
        theirs = store.read_bytes(f"{dest}/{fmt.MANIFEST}")
    except store.NotFound:
        theirs = None
    if theirs is not None and theirs != ours:  # a version is never overwritten: rollback
        raise fmt.BundleError(  # and the decisions name it for its first content
            f"version {loaded.version} is already published with other content at {dest}"
        )
    for name in loaded.manifest["files"]:  # names validated: relative, no '..'
        store.write_bytes(f"{dest}/{name}", (bundle_dir / name).read_bytes())
    store.write_bytes(f"{dest}/{fmt.MANIFEST}", ours)
    return Pointer(loaded.version, dest, {"model_version": loaded.version, "bundle_uri": dest})


def pointer_body(target: Pointer, history: list[dict], **extra) -> dict:
    """The JSON of a pointer to `target` that keeps `history` (newest first) for rollback."""
    chain = [p for p in history if p.get("model_version") != target.model_version][:HISTORY]
    return {
        **{k: v for k, v in target.raw.items() if k not in ("history", "previous")},
        "model_version": target.model_version,
        "bundle_uri": target.bundle_uri,
        "promoted_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **extra,
        "previous": chain[0] if chain else None,
        "history": chain,
    }


def switch(
    store_uri: str, model_name: str, decide: Callable[[Current], dict | None]
) -> tuple[dict | None, Current]:
    """Compare-and-swap production: decide(current) returns the new pointer JSON (or None to
    leave it), which is written only if production.json is still what `decide` saw; when
    another writer got there first, decide again against the new state. Returns the body
    written (or None) and the state it replaced."""
    uri = pointer_uri(store_uri, model_name)
    for attempt in range(MAX_SWAP_ATTEMPTS):
        current = read_current(store_uri, model_name)
        body = decide(current)
        if body is None:
            return None, current
        if cas.write(uri, json.dumps(body, indent=1).encode(), current.tag):
            return body, current
        log.info("production changed while deciding (attempt %d); deciding again", attempt + 1)
    raise PointerError(f"production kept changing: gave up after {MAX_SWAP_ATTEMPTS} attempts")


def set_production(store_uri: str, model_name: str, pointer: Pointer, **extra) -> dict:
    """Point production at `pointer` whatever it holds now (tools, tests, benchmarks); the
    replaced version joins the rollback chain."""

    def decide(current: Current) -> dict:
        history = []
        if current.pointer is not None:
            history = [current.pointer.summary(), *current.pointer.history()]
        return pointer_body(pointer, history, **extra)

    body, _ = switch(store_uri, model_name, decide)
    assert body is not None
    return body
