"""Promotion of a finished training job: verify, gate on quality, publish, switch.

On "SageMaker Training Job State Change" (Completed): download <output>/<job>/output/
model.tar.gz, unpack it safely, verify the bundle, gate it against production, publish it
under models/<name>/<version>/ and write models/<name>/production.json last. Every outcome
is recorded under models/<name>/decisions/<job>.json, which also makes replayed events
no-ops.

The gate (champion/challenger): the training job scored production's served model on the
candidate's own test users (training/champion.py; the manifest's "champion" record), so the
two figures come from one test set. The gate decides on the per-user paired difference
(candidate minus production, test full NDCG@10) and its 95% interval: the candidate is
rejected only when the whole interval lies below -tolerance, i.e. when it is worse than
production beyond noise and beyond the tolerance. Why not the stricter "lower bound above
-tolerance": that asks a retrain to prove itself better, and a retrain on fresh data is
mostly a tie that also knows the new items and users; on a test set of a few hundred users
(intervals of +-0.02) nearly every retrain would be refused and production would go stale.
The burden of proof is on harm.

Without a paired record for the production serving now (a job from before this gate, a
job that could not read production, or production changed since the job scored it), the
gate falls back to the old rule, each model's own test figure, and its reason says so. A
first model (no production) must beat popularity on its own test split.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tarfile
import tempfile
import zlib
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from pathlib import Path

from lmrec import bundle as fmt
from lmrec import cas, registry, store
from lmrec.settings import models_prefix

log = logging.getLogger(__name__)

GATE_MODEL = "student"  # the model that is served
GATE_METRIC = ("test", "full", "ndcg@10")


@dataclass(kw_only=True)
class GateFigures:
    """The figures the gate compared (test full NDCG@10): with basis "paired", both on the
    candidate's test users (`users` of them) with the difference's mean and interval; with
    "own splits", each model's figure on its own data's test split; with "first model", the
    candidate's and popularity's."""

    candidate_ndcg: float | None = None
    production_ndcg: float | None = None
    basis: str | None = None
    users: int | None = None
    difference: float | None = None
    difference_ci95: list[float] | None = None


@dataclass
class Decision(GateFigures):
    job_name: str
    action: str  # promoted | rejected | failed | duplicate | ignored
    reason: str
    model_version: str | None = None
    decided_at: str = ""


@dataclass
class Verdict(GateFigures):
    """What the gate concluded, and the figures behind it (copied into the Decision)."""

    accept: bool
    reason: str

    def decision(self, job: str, action: str, reason: str, version: str | None) -> Decision:
        figures = {f.name: getattr(self, f.name) for f in fields(GateFigures)}
        return Decision(job, action, reason, version, **figures)


def _figure(value) -> float | None:
    """An NDCG figure as the gate accepts it: a JSON number (not a bool or a string), finite,
    in [0, 1]; None otherwise (NaN compares False both ways and would pass every check)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if 0.0 <= value <= 1.0 else None


def _metric(manifest: dict, model: str) -> float | None:
    try:
        split, protocol, name = GATE_METRIC
        return _figure(manifest["metrics"][model][split][protocol][name])
    except (KeyError, TypeError):
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
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:  # zlib: a corrupt stream
        raise fmt.BundleError(f"model.tar.gz is not a readable gzip tar: {exc}") from None


def self_check(candidate: fmt.Bundle) -> None:
    """Build what the API will build and answer smoke requests (lmrec.smoke), so a bundle no
    server can load, or one that answers NaN, is refused here rather than by a cold container."""
    from lmrec.smoke import check_serves

    check_serves(candidate)


def _paired(candidate: dict, production_version: str | None) -> tuple[dict | None, str]:
    """The candidate's paired record against the production serving now, or why none."""
    record = candidate.get("champion")
    if not isinstance(record, dict):
        return None, "the job recorded none (it ran without LMREC_STORE_URI, or before the gate)"
    if record.get("problem"):
        return None, f"the job could not score production: {record['problem']}"
    taken_on = record.get("split", "loo")  # records from before the key: loo, as manifests
    if taken_on != split_name(candidate):
        return None, (
            f"the job's paired record is on a {taken_on} split, "
            f"not the candidate's {split_name(candidate)}"
        )
    if record.get("production_version") != production_version:
        scored = record.get("production_version") or "no production"
        return None, f"the job scored {scored}, production is now {production_version}"
    try:
        problem = _inconsistency(record, _metric(candidate, fmt.served_metric(candidate)))
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"incomplete ({exc})"
    if problem:
        return None, f"the job's paired record is {problem}"
    return record, ""


AGREE = 1e-6  # the record's own figures: one per-user array, equal up to summation order
# The record's candidate figure against the manifest's: the record counts ties with the
# target in expectation, the manifest's evaluation breaks them by a seeded draw; under bf16
# autocast on a GPU ties are common (1.5e-5 apart on MovieLens 100K, helper-47). A wrong or
# mixed-up record is off by far more.
AGREE_MANIFEST = 0.005


def _inconsistency(record: dict, manifest_figure: float | None) -> str:
    """What makes a paired record unusable (its figures disagree with each other or with
    the manifest), or ""."""
    cand, prod = _figure(record["candidate"]["ndcg@10"]), _figure(record["production"]["ndcg@10"])
    mean, (lo, hi) = record["difference"]["mean"], record["difference"]["ci95"]
    users = record["users"]
    numbers = (mean, lo, hi)
    if cand is None or prod is None:
        return "inconsistent (an NDCG@10 that is not a number in [0, 1])"
    if any(isinstance(x, bool) or not isinstance(x, int | float) for x in numbers) or not all(
        math.isfinite(x) for x in numbers
    ):
        return "incomplete (the difference and its interval are not three finite numbers)"
    if isinstance(users, bool) or not isinstance(users, int) or users < 2:
        return f"inconsistent (users {users!r}: a paired interval needs at least 2)"
    if not lo <= mean <= hi or abs(mean - (cand - prod)) > AGREE:
        return (
            f"inconsistent (difference {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] does not match "
            f"candidate {cand:.4f} minus production {prod:.4f})"
        )
    if manifest_figure is None or abs(manifest_figure - cand) > AGREE_MANIFEST:
        return (
            f"inconsistent (its candidate figure {cand:.6f} is not the manifest's "
            f"{manifest_figure if manifest_figure is None else round(manifest_figure, 6)})"
        )
    return ""


def _paired_verdict(record: dict, tolerance: float) -> Verdict:
    cand, prod = float(record["candidate"]["ndcg@10"]), float(record["production"]["ndcg@10"])
    mean = float(record["difference"]["mean"])
    lo, hi = (float(x) for x in record["difference"]["ci95"])
    users = int(record["users"])
    figures = (
        f"on the same {users} test users: candidate {cand:.4f}, production {prod:.4f}, "
        f"paired difference {mean:+.4f}, 95% interval [{lo:+.4f}, {hi:+.4f}]"
    )
    accept = hi >= -tolerance
    if accept:
        reason = (
            f"not worse than production beyond noise {figures} "
            f"(upper bound >= -tolerance {tolerance:g})"
        )
    else:
        reason = (
            f"worse than production beyond noise and tolerance {figures}, "
            f"entirely below -tolerance {tolerance:g}"
        )
    return Verdict(
        accept,
        reason,
        candidate_ndcg=cand,
        production_ndcg=prod,
        basis="paired",
        users=users,
        difference=mean,
        difference_ci95=[lo, hi],
    )


def split_name(manifest: dict) -> str:
    """The evaluation split a bundle's figures come from; bundles from before the key: loo."""
    split = manifest.get("split")
    name = split.get("name") if isinstance(split, dict) else None
    return name if isinstance(name, str) else "loo"


def _own_split_verdict(
    cand: float, candidate: dict, production: dict, tolerance: float, why: str
) -> Verdict:
    """The rule before the paired comparison: each model's figure on its own test split,
    only when both splits are of one kind (a time split's test is not a leave-one-out's)."""
    prod = _metric(production, fmt.served_metric(production, GATE_MODEL))
    fallback = f"no paired comparison ({why}); compared on each model's own test split"
    ours, theirs = split_name(candidate), split_name(production)
    if prod is not None and ours != theirs:
        reason = (
            f"no paired comparison ({why}), and the figures cannot be compared: the candidate "
            f"was measured on a {ours} split, production on a {theirs} split; retrain with "
            f"split={theirs}, or with LMREC_STORE_URI set so the job scores production on "
            "the candidate's own test users"
        )
        return Verdict(False, reason, candidate_ndcg=cand, production_ndcg=prod, basis="own splits")
    if prod is None:
        reason = f"{fallback}: production has none; accepting the verified candidate"
        return Verdict(True, reason, candidate_ndcg=cand, production_ndcg=None, basis="own splits")
    if cand < prod - tolerance:
        reason = (
            f"{fallback}: worse than production beyond tolerance: "
            f"{cand:.4f} < {prod:.4f} - {tolerance}"
        )
        return Verdict(False, reason, candidate_ndcg=cand, production_ndcg=prod, basis="own splits")
    reason = f"{fallback}: within tolerance of production ({cand:.4f} vs {prod:.4f})"
    return Verdict(True, reason, candidate_ndcg=cand, production_ndcg=prod, basis="own splits")


def gate(
    candidate: dict,
    production: dict | None,
    tolerance: float,
    production_version: str | None = None,
) -> Verdict:
    """Decide on the candidate's manifest against production's (None: no production).
    `production_version`: the version serving now, which the paired record must name."""
    # The model each bundle serves (training picks the better small model); older bundles
    # name none and serve the student.
    cand = _metric(candidate, fmt.served_metric(candidate, GATE_MODEL))
    if cand is None:
        return Verdict(
            False, "the candidate's manifest has no test NDCG@10 in [0, 1] for its served model"
        )
    if production is None:
        pop = _metric(candidate, "popularity")
        if pop is None:
            reason = "first model, but its manifest has no popularity baseline"
            return Verdict(
                False, reason, candidate_ndcg=cand, production_ndcg=None, basis="first model"
            )
        if cand <= pop:
            reason = f"first model must beat popularity: {cand:.4f} <= {pop:.4f}"
            return Verdict(
                False, reason, candidate_ndcg=cand, production_ndcg=pop, basis="first model"
            )
        reason = f"first model; beats popularity ({cand:.4f} > {pop:.4f})"
        return Verdict(True, reason, candidate_ndcg=cand, production_ndcg=pop, basis="first model")
    record, why = _paired(candidate, production_version)
    if record is not None:
        return _paired_verdict(record, tolerance)
    return _own_split_verdict(cand, candidate, production, tolerance, why)


class Promoter:
    def __init__(self, store_uri: str, model_name: str, tolerance: float = 0.0):
        self.store_uri = store_uri.rstrip("/")
        self.model_name = model_name
        self.tolerance = tolerance

    @property
    def prefix(self) -> str:
        return models_prefix(self.store_uri, self.model_name)

    def _decision_uri(self, job: str) -> str:
        return f"{self.prefix}/decisions/{job}.json"

    def previous_decision(self, job: str) -> dict | None:
        try:
            found = json.loads(store.read_bytes(self._decision_uri(job)))
        except (store.StoreError, ValueError):
            return None
        return found if isinstance(found, dict) else None

    def _record(self, d: Decision, only_if_absent: bool = False) -> Decision:
        """Write the job's decision; `only_if_absent`: not over one another delivery wrote (a
        decision that switched nothing must not replace the outcome of the delivery that
        did). Both ways by compare-and-swap, so the two kinds of write never interleave
        (a plain write on the file store could land between a create-only's check and
        rename)."""
        d.decided_at = datetime.now(UTC).isoformat(timespec="seconds")
        body = json.dumps(asdict(d), indent=1).encode()
        uri = self._decision_uri(d.job_name)
        if only_if_absent:
            cas.write(uri, body, None)
        else:
            for _ in range(registry.MAX_SWAP_ATTEMPTS):
                found = cas.read(uri)
                if cas.write(uri, body, found[1] if found else None):
                    break
            else:
                raise store.StoreError(f"{uri}: kept changing while the decision was written")
        log.info("promotion decision %s", asdict(d))
        return d

    def production_manifest(self, current: registry.Current) -> tuple[dict | None, str | None]:
        """(manifest of the serving bundle, what is wrong with production if anything). A
        corrupt pointer or one naming a missing bundle counts as no production, so the
        candidate can repair it; a store that cannot be reached raises (the event is retried
        rather than the candidate judged against nothing)."""
        if current.pointer is None:
            return None, current.problem
        uri = f"{current.pointer.bundle_uri}/{fmt.MANIFEST}"
        try:
            manifest = json.loads(store.read_bytes(uri))
        except store.NotFound:
            return None, f"production names {current.pointer.model_version}, whose bundle is gone"
        except ValueError as exc:
            return None, f"production's manifest is not valid JSON: {exc}"
        try:  # what the gate reads of it: a served record it can name
            fmt.served_metric(manifest)
        except (AttributeError, KeyError, TypeError) as exc:
            return None, f"production's manifest is not a bundle manifest ({exc!r})"
        return manifest, None

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
                f"already decided: {earlier.get('action')}",
                earlier.get("model_version"),
            )
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = Path(tmp)
            try:
                if not store.parse(artifact_uri).key.strip("/"):
                    raise store.StoreError(f"{artifact_uri!r} names no object")
            except store.StoreError as exc:  # no retry makes such a URI readable
                return self._record(Decision(job, "rejected", f"no artifact: {exc}"))
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
            return self._switch(job, unpacked, candidate)

    def _switch(self, job: str, unpacked: Path, candidate: fmt.Bundle) -> Decision:
        """Gate against production and swap the pointer by compare-and-swap; a lost race is
        decided again against the winner, so the better model ends up serving and the one it
        replaced stays in the rollback chain."""
        outcome: dict = {}
        published: list[registry.Pointer] = []

        def decide(current: registry.Current) -> dict | None:
            prod_manifest, problem = self.production_manifest(current)
            serving = current.pointer.model_version if current.pointer else None
            if serving == candidate.version and prod_manifest is not None:
                outcome["decision"] = Decision(
                    job, "duplicate", "already in production", candidate.version
                )
                return None
            if current.pointer is not None and _was_production(current.pointer, candidate.version):
                reason = (
                    f"{candidate.version} was production before and was replaced or rolled "
                    f"back; an event does not bring a version back (lmrec rollback --to "
                    f"{candidate.version} does)"
                )
                outcome["decision"] = Decision(job, "rejected", reason, candidate.version)
                return None
            verdict = gate(candidate.manifest, prod_manifest, self.tolerance, serving)
            reason = verdict.reason
            if problem:
                what = "replaces" if verdict.accept else "leaves in place"
                reason = f"{reason}; {what} a broken production pointer ({problem})"
            if not verdict.accept:
                outcome["decision"] = verdict.decision(job, "rejected", reason, candidate.version)
                return None
            if not published:  # copy once, whatever the number of attempts
                try:
                    published.append(registry.publish(unpacked, self.store_uri, self.model_name))
                except fmt.BundleError as exc:  # its version is taken by other content
                    outcome["decision"] = Decision(job, "rejected", str(exc), candidate.version)
                    return None
            outcome["decision"] = verdict.decision(job, "promoted", reason, candidate.version)
            history = []
            if current.pointer is not None and prod_manifest is not None:
                history = [current.pointer.summary(), *current.pointer.history()]
            elif current.pointer is not None:  # dangling: keep the chain, not the dead entry
                history = current.pointer.history()
            return registry.pointer_body(published[0], history, source_job=job)

        registry.switch(self.store_uri, self.model_name, decide)
        decision: Decision = outcome["decision"]
        # A decision that switched nothing (a duplicate, a rejection) is recorded only where no
        # record exists: it must not replace the outcome of a delivery that switched, yet the
        # one that switched may have failed before writing its own, and without any record a
        # replay after a rollback would decide again.
        return self._record(decision, only_if_absent=decision.action != "promoted")


def _was_production(pointer: registry.Pointer, version: str) -> bool:
    """Whether production replaced or rolled back `version` (as far as its chain holds)."""
    if pointer.model_version == version:  # it serves (a dangling pointer being repaired)
        return False
    chain = {str(p["model_version"]) for p in pointer.history()}
    return version in chain or pointer.raw.get("rolled_back_from") == version


def _target(store_uri: str, model_name: str, version: str) -> registry.Pointer:
    """A published version to point production at, after it verifies and answers."""
    uri = registry.version_uri(store_uri, model_name, version)
    with tempfile.TemporaryDirectory() as cache:  # never point at a bundle that fails
        try:
            loaded = fmt.load(uri, cache)
        except fmt.BundleError as exc:
            known = ", ".join(registry.versions(store_uri, model_name)[-10:]) or "none"
            raise fmt.BundleError(f"{exc} (published versions: {known})") from None
        self_check(loaded)
    if loaded.version != version:
        raise fmt.BundleError(f"{uri} holds {loaded.version}, not {version}")
    return registry.Pointer(version, uri, {"model_version": version, "bundle_uri": uri})


def _intact(pointer: registry.Pointer) -> bool:
    """Whether the pointer's bundle is still there (its manifest; a full check is what
    _target does before anything is pointed at)."""
    try:
        store.read_bytes(f"{pointer.bundle_uri}/{fmt.MANIFEST}")
    except store.NotFound:
        return False
    return True


def rollback(store_uri: str, model_name: str, to: str | None = None) -> dict:
    """Point production at `to`, or at the version production replaced. Idempotent: rolling
    back to the version already serving changes nothing, and a plain rollback of a
    production that is itself a rollback changes nothing either (name a version to go
    further). A corrupt or dangling pointer is replaced when a version is named.

    Returns {"action": "rolled back" | "unchanged", "model_version", "rolled_back_from"}."""
    targets: dict[str, registry.Pointer] = {}
    seen: list[str | None] = []  # production when the rollback began

    def decide(current: registry.Current) -> dict | None:
        now = current.pointer
        if not seen:
            seen.append(now.model_version if now else None)
        if to is None and (now.model_version if now else None) != seen[0]:
            if now is not None and now.raw.get("rolled_back_from") == seen[0]:
                return None  # another rollback of the same version got there first
            raise registry.PointerError(  # a plain rollback means "undo what I saw serving"
                f"production changed from {seen[0]} to {now.model_version if now else None} "
                "while rolling back; nothing was changed: look again, or name the version "
                "to serve with --to"
            )
        if to is None:
            if now is None:
                known = ", ".join(registry.versions(store_uri, model_name)[-10:]) or "none"
                state = current.problem or "there is no production pointer"
                raise registry.PointerError(
                    f"{state}; name the version to serve with --to (published: {known})"
                )
            if now.raw.get("rolled_back_from"):
                return None  # already rolled back: a second run is a no-op
            chain = now.history()
            if not chain:
                raise registry.PointerError("production has no previous version to roll back to")
            version, rest = str(chain[0]["model_version"]), chain[1:]
        else:
            if now is not None and now.model_version == to and _intact(now):
                return None
            version = to
            rest = ([now.summary(), *now.history()]) if now is not None else []
        if version not in targets:
            targets[version] = _target(store_uri, model_name, version)
        frm = now.model_version if now is not None and now.model_version != version else None
        return registry.pointer_body(targets[version], rest, rolled_back_from=frm)

    body, current = registry.switch(store_uri, model_name, decide)
    if body is None:
        serving = current.pointer
        return {
            "action": "unchanged",
            "model_version": serving.model_version if serving else None,
            "rolled_back_from": serving.raw.get("rolled_back_from") if serving else None,
        }
    return {
        "action": "rolled back",
        "model_version": body["model_version"],
        "rolled_back_from": body["rolled_back_from"],
    }
