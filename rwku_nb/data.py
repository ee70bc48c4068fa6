"""RWKU benchmark data: targets, probes, MIA sets, passages, forget corpora and utility sets.

Two sources give the same rows:

* a local directory in the layout of the RWKU release (``Target/<N>_<Name>/<file>.json``), given as
  the directory that holds ``Target/`` or as ``Target/`` itself;
* ``"hub"``: the processed configs of ``jinzhuoran/RWKU`` read through ``datasets.load_dataset``
  (``test`` split for evaluation sets, ``train`` split for corpora), filtered per target by ``subject``.

Usage::

    from rwku_nb.data import RWKU
    data = RWKU()                      # source from $RWKU_DATA
    king = data.target(1)              # or "Stephen King", "stephen_king"
    king.forget(1), king.neighbor(2), king.mia_forget, king.corpus("positive"), king.utility("mmlu")

Everything is read lazily, once per file (hub: once per config), and validated on first read; a bad
file raises one :class:`RwkuError` naming the file, the row, the field and what was expected. Rows
are returned exactly as stored (duplicate rows included; the benchmark has some) as fresh copies.

Quirks of the real data handled here (see the data README): ``intro.json`` is a plain object for
target 1 and a one-row list elsewhere; the utility files exist only in some target folders (RWKU.zip
ships the same 500-row sets in every folder), so any target falls back to the utility files of the
first folder that has them; folder names may contain commas (``10_Prince_Harry,_Duke_of_Sussex``).
"""
from __future__ import annotations

import copy
import json
import operator
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .errors import RwkuError
from .paths import DATA_ENV, REPO_ROOT
from .schema import (AA_TYPES, CORPUS_KINDS, HUB_ID, KINDS, UTILITY_SETS, UTILITY_STEMS, aa_type, hub_grouped,
                     hub_rows, hub_where, level_of, short, stem_of, validate)

__all__ = ["AA_TYPES", "CORPUS_KINDS", "HUB_ID", "KINDS", "RwkuError", "RWKU", "Target", "UTILITY_SETS",
           "aa_type"]

_FOLDER_RE = re.compile(r"^(\d+)_(.+)$")
_RANGE_RE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")
_SPEC_HELP = (
    "Specify a target by index (1), by name ('Stephen King', any case, or the folder form "
    "'Stephen_King'), by a range ('1-5'), by a list of these ([1, 'Bruce Lee', '5-7']), or 'all'."
)
_SOURCE_HELP = (
    f"Set {DATA_ENV} to a local copy of the RWKU data (the directory holding Target/<N>_<Name>/), "
    f"e.g. `export {DATA_ENV}=../shared/rwku`, or to `hub` to read {HUB_ID} through `datasets` "
    f"(`export {DATA_ENV}=hub`); or pass it directly: RWKU('../shared/rwku') / RWKU('hub')."
)


def _read_json(path: Path) -> Any:
    """Parse one JSON file (the only place rwku_nb.data reads the disk; tests count its calls)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RwkuError(f"{path}: not UTF-8 text (byte {e.start}). Restore the file from the RWKU "
                        "release.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RwkuError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno} (char {e.pos}): "
                        f"{e.msg}. Restore the file from the RWKU release (RWKU.zip or {HUB_ID} "
                        "Target/ folder).") from None


# --------------------------------------------------------------------------------------------
# targets

@dataclass(frozen=True)
class Target:
    """One unlearning target (a famous person): its rank `index`, display `name`, and `intro`.

    Row accessors load lazily (once per file, cached by the owning RWKU) and return fresh copies.
    A probe / MIA / passage / corpus file the target lacks reads as [] (`has` tells which exist);
    utility sets fall back to another target's files (they are shared by all targets).
    """

    index: int
    name: str
    intro: str
    folder: str | None = None  # local folder name (e.g. "1_Stephen_King"); None for the hub
    _data: "RWKU | None" = field(default=None, repr=False, compare=False)

    # -- generic --------------------------------------------------------------------------
    def rows(self, kind: str) -> list[dict]:
        """Rows of `kind` (a file stem in KINDS or an alias: mia_forget, passages, mmlu, ...)."""
        stem = stem_of(kind)
        if stem in UTILITY_STEMS:
            return self._source()._utility_rows(self, stem)
        return self._source()._rows(self, stem)

    def has(self, kind: str, own: bool = False) -> bool:
        """Whether rows of `kind` exist for this target (utility: its own file or, unless `own`, a shared one)."""
        stem = stem_of(kind)
        if stem in UTILITY_STEMS and not own:
            return self._source()._utility_owner(self, stem) is not None
        return self._source()._exists(self, stem)

    def where(self, kind: str | None = None) -> str:
        """Where rows of `kind` come from (its file, or the hub config and subject); without `kind`, the
        target's folder: for error messages that must name the file to fix."""
        data = self._source()
        if data.hub:
            return f"{hub_where(stem_of(kind)) if kind else HUB_ID}, subject {self.name!r}"
        folder = data.root / self.folder
        return str(folder / f"{stem_of(kind)}.json" if kind else folder)

    def summary(self) -> dict[str, int]:
        """Row counts per kind (file stem), 0 where absent; for overview tables in notebooks."""
        out: dict[str, int] = {}
        for stem in KINDS:
            out[stem] = len(self.rows(stem)) if self.has(stem) else 0
        return out

    def digest(self) -> str:
        """A hash of the target's name, intro and every file it has except the shared utility sets: what
        identifies its data in stored results (the same content read locally or from the hub, same digest)."""
        import hashlib

        content = {"name": self.name, "intro": self.intro,
                   **{stem: self.rows(stem) for stem in KINDS if stem not in UTILITY_STEMS and self.has(stem)}}
        text = json.dumps(content, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    # -- probes ---------------------------------------------------------------------------
    def forget(self, level: int) -> list[dict]:
        """Forget probes of `level` 1 (fill-in-the-blank), 2 (QA) or 3 (adversarial attacks)."""
        return self.rows(f"forget_level{level_of(level, (1, 2, 3), 'forget')}")

    def neighbor(self, level: int) -> list[dict]:
        """Neighbor probes of `level` 1 (fill-in-the-blank) or 2 (QA)."""
        return self.rows(f"neighbor_level{level_of(level, (1, 2), 'neighbor')}")

    @property
    def mia_forget(self) -> list[dict]:
        """MIA member texts about the target (FM set), rows with `text`."""
        return self.rows("forget_mia")

    @property
    def mia_retain(self) -> list[dict]:
        """MIA texts about neighbors (RM set), rows with `text`."""
        return self.rows("retain_mia")

    @property
    def passages(self) -> list[dict]:
        """Wikipedia passages about the target (GA* forget corpus), rows with `text`."""
        return self.rows("passage")

    # -- corpora / utility ----------------------------------------------------------------
    def corpus(self, kind: str) -> list[dict]:
        """A provided forget corpus: one of CORPUS_KINDS (positive, negative, pair, reject, *_phi)."""
        if kind not in CORPUS_KINDS:
            raise RwkuError(f"unknown corpus {kind!r}; expected one of {', '.join(CORPUS_KINDS)}")
        return self.rows(kind)

    def utility(self, name: str) -> list[dict]:
        """A utility set: mmlu, bbh, truthfulqa, triviaqa or fluency (shared by all targets)."""
        if name not in UTILITY_SETS:
            raise RwkuError(f"unknown utility set {name!r}; expected one of {', '.join(UTILITY_SETS)}")
        return self.rows(UTILITY_SETS[name])

    def _source(self) -> "RWKU":
        if self._data is None:
            raise RwkuError(f"target {self.index} ({self.name}) is not attached to data; get targets "
                            "from RWKU(...).select(...) / .target(...)")
        return self._data



def _norm_name(text: str) -> str:
    return " ".join(text.replace("_", " ").split()).casefold()


# --------------------------------------------------------------------------------------------
# the data source

class RWKU:
    """The RWKU data, local (a directory) or from the hub (`source="hub"`).

    `source`: the directory holding `Target/` or `Target/` itself, or "hub"; None reads $RWKU_DATA.
    A relative path is tried against the working directory, then against the repository root.
    """

    def __init__(self, source: str | Path | None = None):
        origin = "argument"
        if source is None:
            source = os.environ.get(DATA_ENV, "").strip()
            origin = f"${DATA_ENV}"
            if not source:
                raise RwkuError(f"no RWKU data source: ${DATA_ENV} is not set. {_SOURCE_HELP}")
        self.hub = isinstance(source, str) and source.strip().lower() == "hub"
        self.root: Path | None = None if self.hub else _resolve_root(Path(source), origin)
        self._files: dict[Any, list[dict]] = {}        # validated rows per file / (config, subject)
        self._hub_groups: dict[str, dict[str | None, list[dict]]] = {}  # config -> subject -> rows
        self._targets: list[Target] | None = None

    def __repr__(self) -> str:
        return f"RWKU({'hub' if self.hub else str(self.root)!r})"

    # -- targets --------------------------------------------------------------------------
    def targets(self) -> list[tuple[int, str]]:
        """(index, name) of every target, sorted by index."""
        return [(t.index, t.name) for t in self._all()]

    def target(self, spec: Any) -> Target:
        """Exactly one target (see `select` for `spec`)."""
        chosen = self.select(spec)
        if len(chosen) != 1:
            raise RwkuError(f"{spec!r} selects {len(chosen)} targets; expected exactly one. "
                            "Use select() for several.")
        return chosen[0]

    def select(self, spec: Any) -> list[Target]:
        """Targets for `spec`: an index, a name (any case, spaces or underscores), a range "a-b",
        a list/tuple of these, or "all". Order follows `spec`; repeats are dropped."""
        found: list[Target] = []
        seen: set[int] = set()
        for t in self._select(spec):
            if t.index not in seen:
                seen.add(t.index)
                found.append(t)
        if not found:
            raise self._unknown(spec)
        return found

    def _select(self, spec: Any) -> Iterable[Target]:
        targets = self._all()
        by_index = {t.index: t for t in targets}
        if isinstance(spec, (list, tuple)):
            for item in spec:
                yield from self._select(item)
            return
        if hasattr(spec, "__index__") and not isinstance(spec, bool):  # int, numpy int
            spec = operator.index(spec)
            if spec not in by_index:
                raise self._unknown(spec)
            yield by_index[spec]
            return
        if not isinstance(spec, str):
            raise self._unknown(spec, f"a {type(spec).__name__} is not a target spec")
        text = spec.strip()
        if text.lower() == "all":
            yield from targets
            return
        if text.isdigit():
            yield from self._select(int(text))
            return
        m = _RANGE_RE.match(text)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            missing = [i for i in range(lo, hi + 1) if i not in by_index]
            if lo > hi or missing:
                why = "an empty range" if lo > hi else f"no target(s) {short(missing, 80)}"
                raise self._unknown(spec, why)
            for i in range(lo, hi + 1):
                yield by_index[i]
            return
        wanted = _norm_name(text)
        for t in targets:
            forms = {_norm_name(t.name)}
            if t.folder:
                forms |= {_norm_name(t.folder), _norm_name(_FOLDER_RE.match(t.folder).group(2))}
            if wanted in forms:
                yield t
                return
        raise self._unknown(spec)

    def _unknown(self, spec: Any, why: str = "") -> RwkuError:
        targets = self._all()
        shown = ", ".join(f"{t.index}: {t.name}" for t in targets[:8])
        more = f", ... ({len(targets)} in all, {targets[0].index}-{targets[-1].index})" \
            if len(targets) > 8 else ""
        detail = f" ({why})" if why else ""
        return RwkuError(f"unknown target {spec!r}{detail}. Available: {shown}{more}. {_SPEC_HELP}")

    def _all(self) -> list[Target]:
        if self._targets is None:
            self._targets = self._hub_targets() if self.hub else self._local_targets()
            if not self._targets:
                where = HUB_ID if self.hub else str(self.root)
                raise RwkuError(f"no RWKU targets found in {where}. {_SOURCE_HELP}")
        return self._targets

    def _local_targets(self) -> list[Target]:
        assert self.root is not None
        found: dict[int, Target] = {}
        for entry in self.root.iterdir():
            m = _FOLDER_RE.match(entry.name)
            if not (m and entry.is_dir()):
                continue
            index = int(m.group(1))
            if index in found:
                raise RwkuError(f"two target folders with index {index} in {self.root}: "
                                f"{found[index].folder} and {entry.name}; keep one.")
            name, intro = self._read_intro(entry, m.group(2))
            found[index] = Target(index, name, intro, entry.name, self)
        return [found[i] for i in sorted(found)]

    def _read_intro(self, folder: Path, fallback: str) -> tuple[str, str]:
        path = folder / "intro.json"
        if not path.is_file():  # not in the release, but do not fail the whole listing over it
            return fallback.replace("_", " "), ""
        data = _read_json(path)
        rows = [data] if isinstance(data, dict) else data  # target 1: a plain object; others: a list
        if not isinstance(rows, list) or len(rows) != 1:
            raise RwkuError(f"{path}: expected an object {{target, intro}} or a one-row list of it; "
                            f"got {short(data)}. Restore the file from the RWKU release.")
        validate("intro", rows, str(path), "Restore the file from the RWKU release.")
        return rows[0]["target"], rows[0]["intro"]

    def _hub_targets(self) -> list[Target]:
        # forget_target holds one {target, intro} row per target in rank order; index = position + 1.
        rows = hub_rows("intro")
        where, fix = hub_where("intro"), "The hub config does not have RWKU's format."
        validate("intro", rows, where, fix)
        return [Target(i + 1, r["target"], r["intro"], None, self) for i, r in enumerate(rows)]

    # -- rows -----------------------------------------------------------------------------
    def _path(self, target: Target, stem: str) -> Path:
        assert self.root is not None and target.folder is not None
        return self.root / target.folder / f"{stem}.json"

    def _exists(self, target: Target, stem: str) -> bool:
        if self.hub:
            groups = self._hub_grouped(stem)
            return None in groups or target.name in groups
        return self._path(target, stem).is_file()

    def _rows(self, target: Target, stem: str) -> list[dict]:
        """Validated rows of one target's file; [] when it does not exist. Returns a copy."""
        if not self._exists(target, stem):
            return []
        if self.hub:
            key: Any = (stem, target.name)
            if key not in self._files:
                groups = self._hub_grouped(stem)
                rows = groups.get(target.name, groups.get(None, []))
                validate(stem, rows, f"{hub_where(stem)}, subject {target.name!r}",
                          "The hub config does not have RWKU's format.")
                self._files[key] = rows
        else:
            key = self._path(target, stem)
            if key not in self._files:
                data = _read_json(key)
                if not isinstance(data, list):
                    raise RwkuError(f"{key}: expected a JSON list of row objects; got "
                                    f"{type(data).__name__}. Restore the file from the RWKU release.")
                validate(stem, data, str(key), "Restore the file from the RWKU release "
                          f"(RWKU.zip or {HUB_ID} Target/ folder); do not edit it by hand.")
                self._files[key] = data
        return copy.deepcopy(self._files[key])

    def _utility_owner(self, target: Target, stem: str) -> Target | None:
        if self._exists(target, stem):
            return target
        for other in self._all():  # the sets are identical across targets: take the first found
            if self._exists(other, stem):
                return other
        return None

    def _utility_rows(self, target: Target, stem: str) -> list[dict]:
        owner = self._utility_owner(target, stem)
        if owner is None:
            where = f"any subject of {hub_where(stem)}" if self.hub else \
                f"any target folder under {self.root}"
            raise RwkuError(f"utility set {stem!r} not found in {where}. The RWKU release ships it as "
                            f"Target/<N>_<Name>/{stem}.json (same 500 rows for every target); copy "
                            "one such file into any target folder.")
        return self._rows(owner, stem)

    # -- hub ------------------------------------------------------------------------------
    def _hub_grouped(self, stem: str) -> dict[str | None, list[dict]]:
        if stem not in self._hub_groups:
            self._hub_groups[stem] = hub_grouped(stem, hub_rows(stem))
        return self._hub_groups[stem]


def _resolve_root(path: Path, origin: str) -> Path:
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, REPO_ROOT / path]
    for cand in candidates:
        if cand.is_dir():
            cand = cand.resolve()
            if (cand / "Target").is_dir():
                return cand / "Target"
            if any(_FOLDER_RE.match(p.name) and p.is_dir() for p in cand.iterdir()):
                return cand  # already the Target/ directory
            raise RwkuError(f"{cand} (from {origin}) holds no Target/ folder and no <N>_<Name> target "
                            f"folders; point it at the RWKU data directory. {_SOURCE_HELP}")
    tried = " or ".join(str(c) for c in candidates)
    raise RwkuError(f"RWKU data directory not found: {path} (from {origin}; looked for {tried}). "
                    f"{_SOURCE_HELP}")
