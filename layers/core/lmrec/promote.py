"""Promotion of a finished training job: verify, gate on quality, publish, switch.

On "SageMaker Training Job State Change" (Completed): download <output>/<job>/output/
model.tar.gz, unpack it safely, verify the bundle, compare the candidate's test NDCG@10
(full ranking) with production's, publish it under models/<name>/<version>/ and write
models/<name>/production.json last. Every outcome is recorded under
models/<name>/decisions/<job>.json, which also makes replayed events no-ops.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from lmrec import bundle as fmt
from lmrec import registry, store

log = logging.getLogger(__name__)

GATE_MODEL = "student"  # the model that is served
GATE_METRIC = ("test", "full", "ndcg@10")


@dataclass
class Decision:
    job_name: str
    action: str  # promoted | rejected | failed | duplicate | ignored
    reason: str
    model_version: str | None = None
    candidate_ndcg: float | None = None
    production_ndcg: float | None = None
    decided_at: str = ""


def _metric(manifest: dict, model: str) -> float | None:
    try:
        split, protocol, name = GATE_METRIC
        return float(manifest["metrics"][model][split][protocol][name])
    except (KeyError, TypeError, ValueError):
        return None


MAX_UNPACKED_BYTES = 2 * 1024**3  # the promote function's /tmp is 2 GB in template.yaml


def safe_extract(archive: Path, dest: Path) -> None:
    """Unpack model.tar.gz, refusing links, paths that leave `dest`, and oversized content."""
    root = str(dest.resolve()) + os.sep
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            total = 0
            for m in members:
                target = str((dest / m.name).resolve())
                if not (m.isfile() or m.isdir()) or not (target + os.sep).startswith(root):
                    raise fmt.BundleError(f"model.tar.gz: refusing member {m.name!r}")
                total += m.size
            if total > MAX_UNPACKED_BYTES:
                raise fmt.BundleError(f"model.tar.gz unpacks to {total} bytes, over the limit")
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise fmt.BundleError(f"model.tar.gz is not a readable gzip tar: {exc}") from None


def self_check(candidate: fmt.Bundle) -> None:
    """Build what the API will build and answer one request, so a bundle no server can load
    is refused here rather than discovered by a cold container."""
    from lmrec.recommend import Filters, Recommender

    try:
        rec = Recommender(candidate)
        history = rec.user_history(str(candidate.user_ids[0])) if len(candidate.user_ids) else None
        rec.recommend(history if history is not None else np.empty(0, np.int64), Filters(k=10))
    except Exception as exc:
        raise fmt.BundleError(f"the bundle does not serve: {type(exc).__name__}: {exc}") from None


def gate(
    candidate: dict, production: dict | None, tolerance: float
) -> tuple[bool, str, float | None, float | None]:
    """(accept, reason, candidate metric, production metric)."""
    cand = _metric(candidate, GATE_MODEL)
    if cand is None:
        return False, "the candidate's manifest has no student test NDCG@10", None, None
    if production is None:
        pop = _metric(candidate, "popularity")
        if pop is None:
            return False, "first model, but its manifest has no popularity baseline", cand, None
        if cand <= pop:
            return False, f"first model must beat popularity: {cand:.4f} <= {pop:.4f}", cand, pop
        return True, f"first model; beats popularity ({cand:.4f} > {pop:.4f})", cand, pop
    prod = _metric(production, GATE_MODEL)
    if prod is None:
        return (
            True,
            "production has no comparable metric; accepting the verified candidate",
            cand,
            None,
        )
    if cand < prod - tolerance:
        return (
            False,
            f"worse than production beyond tolerance: {cand:.4f} < {prod:.4f} - {tolerance}",
            cand,
            prod,
        )
    return True, f"within tolerance of production ({cand:.4f} vs {prod:.4f})", cand, prod


class Promoter:
    def __init__(self, store_uri: str, model_name: str, tolerance: float = 0.0):
        self.store_uri = store_uri.rstrip("/")
        self.model_name = model_name
        self.tolerance = tolerance

    @property
    def prefix(self) -> str:
        return f"{self.store_uri}/models/{self.model_name}"

    def _decision_uri(self, job: str) -> str:
        return f"{self.prefix}/decisions/{job}.json"

    def previous_decision(self, job: str) -> dict | None:
        try:
            return json.loads(store.read_bytes(self._decision_uri(job)))
        except store.StoreError:
            return None

    def _record(self, d: Decision) -> Decision:
        d.decided_at = datetime.now(UTC).isoformat(timespec="seconds")
        store.write_bytes(self._decision_uri(d.job_name), json.dumps(asdict(d), indent=1).encode())
        log.info("promotion decision %s", asdict(d))
        return d

    def production(self) -> tuple[registry.Pointer | None, dict | None]:
        try:
            pointer = registry.read_pointer(f"{self.prefix}/production.json")
        except registry.NoPointer:
            return None, None
        # Any other failure propagates: the event is retried rather than the candidate being
        # judged against "no production" (which would also drop the rollback target).
        manifest = json.loads(store.read_bytes(f"{pointer.bundle_uri}/{fmt.MANIFEST}"))
        return pointer, manifest

    def on_failed(self, job: str, reason: str) -> Decision:
        if self.previous_decision(job):
            return Decision(job, "duplicate", "this job's outcome is already recorded")
        return self._record(Decision(job, "failed", reason or "no FailureReason given"))

    def on_completed(self, job: str, artifact_uri: str) -> Decision:
        earlier = self.previous_decision(job)
        if earlier:
            return Decision(
                job,
                "duplicate",
                f"already decided: {earlier['action']}",
                earlier.get("model_version"),
            )
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            try:
                archive = store.download(artifact_uri, tmp_path / "model.tar.gz")
            except store.NotFound as exc:
                return self._record(Decision(job, "rejected", f"no artifact: {exc}"))
            # Other store errors propagate: transient, so the retried event gets another go.
            try:
                unpacked = tmp_path / "bundle"
                unpacked.mkdir()
                safe_extract(archive, unpacked)
                candidate = fmt.load(unpacked)  # verifies schema and every checksum
                fmt.verify_all(unpacked, candidate.manifest, artifact_uri)
                self_check(candidate)
            except fmt.BundleError as exc:
                return self._record(Decision(job, "rejected", f"bad artifact: {exc}"))
            pointer, prod_manifest = self.production()
            if pointer is not None and pointer.model_version == candidate.version:
                return self._record(
                    Decision(job, "duplicate", "already in production", candidate.version)
                )
            ok, reason, cand, prod = gate(candidate.manifest, prod_manifest, self.tolerance)
            if not ok:
                return self._record(
                    Decision(job, "rejected", reason, candidate.version, cand, prod)
                )
            new = registry.publish(unpacked, self.store_uri, self.model_name)
        previous = pointer.raw if pointer else None
        registry.set_production(
            self.store_uri, self.model_name, new, source_job=job, previous=_strip(previous)
        )
        return self._record(Decision(job, "promoted", reason, new.model_version, cand, prod))


def _strip(pointer: dict | None) -> dict | None:
    """A pointer kept for rollback, without its own chain (one level is enough to undo)."""
    if pointer is None:
        return None
    return {k: v for k, v in pointer.items() if k != "previous"}


def rollback(store_uri: str, model_name: str) -> dict:
    """Point production back at the previous version; the current one becomes 'previous', so a
    second rollback undoes the first."""
    prefix = f"{store_uri.rstrip('/')}/models/{model_name}"
    current = registry.read_pointer(f"{prefix}/production.json")
    previous = current.raw.get("previous")
    try:
        target = registry.Pointer(
            str(previous["model_version"]), str(previous["bundle_uri"]), previous
        )
    except (TypeError, KeyError):
        raise registry.PointerError(
            f"{prefix}: production has no previous version to roll back to"
        ) from None
    with tempfile.TemporaryDirectory() as cache:  # never point at a bundle that fails to verify
        loaded = fmt.load(target.bundle_uri, cache)
    if loaded.version != target.model_version:
        raise fmt.BundleError(
            f"{target.bundle_uri} holds {loaded.version}, not {target.model_version}"
        )
    return registry.set_production(
        store_uri,
        model_name,
        target,
        rolled_back_from=current.model_version,
        previous=_strip(current.raw),
    )
