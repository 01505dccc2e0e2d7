"""The model registry in the store: versions under models/<name>/<version>/ and the
production pointer models/<name>/production.json, which is written last and is the switch."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lmrec import store


class PointerError(RuntimeError):
    """The production pointer is missing or unreadable."""


class NoPointer(PointerError):
    """There is no production pointer yet (no model was ever promoted)."""


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
            return cls(str(raw["model_version"]), str(raw["bundle_uri"]), raw)
        except (ValueError, KeyError, TypeError) as exc:
            raise PointerError(f"{where} is not a valid production pointer: {exc}") from None


def version_uri(store_uri: str, model_name: str, version: str) -> str:
    return f"{store_uri.rstrip('/')}/models/{model_name}/{version}"


def read_pointer(uri: str) -> Pointer:
    try:
        data = store.read_bytes(uri)
    except store.NotFound as exc:
        raise NoPointer(f"cannot read the production pointer: {exc}") from None
    except store.StoreError as exc:
        raise PointerError(f"cannot read the production pointer: {exc}") from None
    return Pointer.parse(data, uri)


def publish(bundle_dir, store_uri: str, model_name: str) -> Pointer:
    """Copy a verified local bundle to models/<name>/<version>/ (manifest last) and return the
    pointer that would make it production. Does not switch production."""
    from pathlib import Path

    from lmrec import bundle as fmt

    bundle_dir = Path(bundle_dir)
    loaded = fmt.load(bundle_dir)  # refuses a bad bundle before anything is copied
    fmt.verify_all(bundle_dir, loaded.manifest, str(bundle_dir))  # records too, not only serving
    dest = version_uri(store_uri, model_name, loaded.version)
    for name in loaded.manifest["files"]:  # names validated: relative, no '..'
        store.write_bytes(f"{dest}/{name}", (bundle_dir / name).read_bytes())
    store.write_bytes(f"{dest}/{fmt.MANIFEST}", (bundle_dir / fmt.MANIFEST).read_bytes())
    return Pointer(loaded.version, dest, {"model_version": loaded.version, "bundle_uri": dest})


def set_production(store_uri: str, model_name: str, pointer: Pointer, **extra) -> dict:
    """Write models/<name>/production.json: the one write that switches what is served."""
    import datetime

    uri = f"{store_uri.rstrip('/')}/models/{model_name}/production.json"
    body = {
        **pointer.raw,
        "model_version": pointer.model_version,
        "bundle_uri": pointer.bundle_uri,
        "promoted_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **extra,
    }
    store.write_bytes(uri, json.dumps(body, indent=1).encode())
    return body
