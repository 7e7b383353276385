"""Model versions beside the default model, and promotion of one of them to be the default.

Layout (for the default model directory `models`, i.e. STREAMER_MODELS_DIR):
    models/                     the default: metadata.json + *.npz/*.json, what `streamer run` loads
    models-versions/<version>/  one directory per model version (trained from history, or archived)
    models-versions/previous    symlink to the default before the last promotion (roll back by promoting it)
    models-versions/promotions.jsonl   one JSON line per promotion
The versions live BESIDE the default, not inside it: the safe loader (streamer.ml.artifacts.verify) refuses
a model directory holding anything it does not list.

Promotion replaces the default's files only after the candidate passed the safe loader (digest, signature,
sha256s, no pickles, parts rebuilt from arrays) from a staged copy on the same file system, and only when its
held-out level macro-F1 is not below the default's by more than a margin (unless forced). The artifacts are
renamed in, then metadata.json last (then the pickles of a default in the old format are removed): a process
loading the default mid-swap gets a ModelError (sha256 mismatch), never a mix of two models. Running pipelines
switch to it between two batches (streamer.ml.reload).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from streamer.errors import ModelError, StreamerError
from streamer.ml.artifacts import ARTIFACTS, METADATA, check, load_model, read_metadata, remove_legacy, verify

DEFAULT_MARGIN = 0.01
PREVIOUS = "previous"
LOG = "promotions.jsonl"


def versions_dir(models_dir) -> Path:
    """`models` -> `models-versions` (a sibling directory)."""
    d = Path(models_dir).resolve()
    return d.parent / f"{d.name}-versions"


def level_f1(meta: dict | None) -> float | None:
    """Held-out level macro-F1 from metadata.json (metrics.level.macro_f1), None when absent."""
    try:
        value = meta["metrics"]["level"]["macro_f1"]  # type: ignore[index]
    except (KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def _copy_model(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in (*ARTIFACTS, METADATA):
        shutil.copy2(src / name, dest / name)


def save_version(model, models_dir, out: str | os.PathLike | None = None) -> tuple[dict, Path]:
    """Save a trained model as a new version: into `out`, else versions_dir(models_dir)/<model_version>.

    The version is known only once written (it hashes the artifacts), so it is written to a staging directory
    first and renamed. An existing directory of that version (same content) is kept as it is.
    """
    from streamer.ml.artifacts import save_model

    if out is not None:
        return save_model(model, out), Path(out)
    root = versions_dir(models_dir)
    root.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=root, prefix=".train-"))
    os.chmod(stage, 0o755)  # mkdtemp makes it private; a model version is for every user of the host
    try:
        meta = save_model(model, stage)
        dest = root / meta["model_version"]
        if dest.exists():
            return read_metadata(dest), dest
        os.rename(stage, dest)
        return meta, dest
    finally:
        shutil.rmtree(stage, ignore_errors=True)


@dataclass
class Promotion:
    lines: list[str]  # what to print: both metrics and the outcome
    promoted: bool
    candidate_version: str
    previous_version: str | None


@contextmanager
def _lock(root: Path):
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StreamerError(f"another promotion is running ({root / '.lock'} is locked)") from None
        yield


def status_of(d: Path) -> tuple[dict | None, str]:
    """(metadata or None, verification status): "ok" only when signed and checked against STREAMER_MODEL_KEY,
    "unsigned", or the refusal line (TAMPERED, pickled, ...). Reads no arrays."""
    try:
        return check(d)
    except ModelError as err:
        try:
            return read_metadata(d), str(err)
        except ModelError:
            return None, str(err)


def _describe(meta: dict | None, where: Path, status: str) -> str:
    if meta is None:
        return f"none at {where}" if not (where / METADATA).exists() else f"unreadable ({status})"
    f1 = level_f1(meta)
    lv = (meta.get("metrics") or {}).get("level") or {}
    held = f" on {lv['samples']} held-out rows" if isinstance(lv, dict) and "samples" in lv else ""
    return (
        f"{meta.get('model_version')} ({where}): level macro-F1 "
        f"{'n/a' if f1 is None else f'{f1:.4f}'}{held}; check: {status}"
    )


def promote(candidate, models_dir, margin: float = DEFAULT_MARGIN, force: bool = False) -> Promotion:
    """Make `candidate` the default model in `models_dir` (see the module doc). Raises ModelError when the
    candidate fails the safe loader, StreamerError when refused; both after nothing was changed."""
    cand, default = Path(candidate), Path(models_dir)
    try:
        cand_meta, _ = load_model(cand)
    except ModelError as err:
        raise ModelError(f"candidate refused: {err}") from None
    cur_meta, cur_status = status_of(default) if (default / METADATA).exists() else (None, "")
    cur_problem = cur_status if cur_meta is None and (default / METADATA).exists() else None
    lines = [
        f"candidate: {_describe(cand_meta, cand, status_of(cand)[1])}",
        f"current:   {_describe(cur_meta, default, cur_status)}",
    ]
    version = cand_meta["model_version"]
    previous = cur_meta.get("model_version") if cur_meta else None
    if previous == version:
        return Promotion([*lines, f"{version} is already the default; nothing changed"], False, version, previous)

    cand_f1, cur_f1 = level_f1(cand_meta), level_f1(cur_meta)
    reason = None
    if cur_problem is not None:
        reason = "the current default cannot be read, so there is nothing to compare with"
    elif cur_meta is not None and cand_f1 is None:
        reason = "the candidate has no held-out level macro-F1 (trained without level labels?)"
    elif cur_meta is not None and cand_f1 is not None and cur_f1 is not None and cand_f1 < cur_f1 - margin - 1e-9:
        reason = (
            f"the candidate's level macro-F1 {cand_f1:.4f} is {cur_f1 - cand_f1:.4f} below the current "
            f"default's {cur_f1:.4f} (margin {margin:g})"
        )
    if reason is not None and not force:
        raise PromotionRefused(f"refused: {reason}; pass --force to promote anyway", lines)
    if reason is not None:
        lines.append(f"forced: {reason}")

    root = versions_dir(default)
    with _lock(root):
        default.mkdir(parents=True, exist_ok=True)
        # Stage beside the default (same file system, so the renames below are atomic per file).
        stage = Path(tempfile.mkdtemp(dir=default.resolve().parent, prefix=f".{default.resolve().name}.promote-"))
        try:
            _copy_model(cand, stage)
            staged_meta, _ = load_model(stage)  # the bytes we are about to install, checked once more
            if staged_meta["model_version"] != version:
                raise ModelError(f"candidate {cand} changed while being promoted; nothing changed")
            archived = _archive(default, cur_meta, root, lines)
            for name in (*ARTIFACTS, METADATA):  # metadata.json last: it names the sha256s of the others
                os.replace(stage / name, default / name)
            remove_legacy(default)
            verify(default)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        if not (root / version).exists():
            _archive_copy(default, root / version)  # every default also exists as a version
        if archived is not None:
            _set_previous(root, archived)
        _log(
            root,
            {
                "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "promoted": version,
                "from": str(cand),
                "previous": previous,
                "forced": reason is not None,
                "candidate_macro_f1": cand_f1,
                "previous_macro_f1": cur_f1,
                "margin": margin,
            },
        )
    lines.append(
        f"promoted: {default} now holds {version}; running `streamer run` members switch to it between batches"
    )
    if archived is not None:
        lines.append(
            f"previous default {previous} kept in {archived} (roll back: "
            f"`streamer models promote {root / PREVIOUS} --force`)"
        )
    return Promotion(lines, True, version, previous)


class PromotionRefused(StreamerError):
    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = lines


def _archive(default: Path, cur_meta: dict | None, root: Path, lines: list[str]) -> Path | None:
    """Keep the current default as root/<its version>; None (with a note) when it cannot be verified."""
    if cur_meta is None:
        return None
    dest = root / cur_meta["model_version"]
    if dest.exists():
        return dest
    try:
        verify(default)
    except ModelError as err:
        lines.append(f"note: the current default is not archived, it fails verification ({err})")
        return None
    _archive_copy(default, dest)
    return dest


def _archive_copy(src: Path, dest: Path) -> None:
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".archive-"))
    os.chmod(tmp, 0o755)
    try:
        _copy_model(src, tmp)
        os.rename(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _set_previous(root: Path, target: Path) -> None:
    link = root / PREVIOUS
    tmp = root / f".{PREVIOUS}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)  # relative: the pair of directories can be moved together
    os.replace(tmp, link)


def _log(root: Path, entry: dict) -> None:
    with open(root / LOG, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


@dataclass
class Listed:
    path: Path
    version: str | None
    trained_at: str | None
    rows: int | None
    macro_f1: float | None
    status: str  # ok | the verification error
    tags: list[str]  # default, previous


def list_versions(models_dir) -> list[Listed]:
    """The default and every version directory, each verified (no arrays read)."""
    default = Path(models_dir)
    root = versions_dir(default)
    prev = (root / PREVIOUS).resolve().name if (root / PREVIOUS).is_symlink() else None
    dirs = [default] + (
        sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".") and not p.is_symlink())
        if root.is_dir()
        else []
    )
    default_version = None
    out = []
    for d in dirs:
        meta, status = status_of(d)
        meta = meta or {}
        version = meta.get("model_version")
        tags = []
        if d == default:
            default_version = version
            tags.append("default")
        elif version is not None and version == default_version:
            tags.append("default")
        if d != default and d.name == prev:
            tags.append(PREVIOUS)
        out.append(
            Listed(d, version, meta.get("trained_at"), meta.get("num_training_samples"), level_f1(meta), status, tags)
        )
    return out
