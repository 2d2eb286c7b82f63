"""Real recordings for training and validation: a corpus of ``targets/`` and ``backgrounds/`` with manifests.

The corpus (``shared/data/sounds`` in the project's workspace; any folder of that layout) has two parts, each
with a ``MANIFEST.csv`` (``file, class|kind, source, source_path, licence, author, duration_s, synthetic,
notes``): ``targets/LABEL/*.flac`` (recordings of the alert classes) and ``backgrounds/KIND/*.flac`` (what must
not fire: music, hard negatives, animals, weather, street, crowd, ...).

* :func:`read_corpus` reads both manifests into :class:`RealClip` rows (every file checked to exist).
* :func:`split_by_source` splits the clips into training and validation **by source**: a Debian package or a
  repository is on one side only (for speech the unit is the speaker within a source: GCompris voice talents,
  FSDD speakers), so validation audio never shares a recording session with training audio.
* :func:`link_split` lays one side out as folders the scene synthesiser reads (``clips/LABEL/`` for targets and
  distractors, ``beds/KIND/`` for continuous backgrounds), as symbolic links: nothing is copied.
* :func:`attribution_markdown` lists source, licence and author per clip, for the model card.

The package never reads the corpus at run time; only the training recipe and the benchmarks do.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BED_KINDS",
    "DISTRACTOR_KINDS",
    "CorpusError",
    "RealClip",
    "attribution_markdown",
    "link_split",
    "read_corpus",
    "speaker_key",
    "split_by_source",
    "split_summary",
]

# Background kinds that are continuous textures (laid under a whole scene) ...
BED_KINDS: tuple[str, ...] = ("music", "street", "crowd", "weather", "kitchen", "household", "birds")
# ... and kinds whose clips are dropped into scenes as unlabelled events (music too: a TV switched on).
DISTRACTOR_KINDS: tuple[str, ...] = ("hard_negatives", "other_animals", "birds", "household", "music", "kitchen")
PARTS: tuple[str, ...] = ("targets", "backgrounds")


class CorpusError(ValueError):
    """A real-audio corpus folder that cannot be used (missing manifest or files, bad rows)."""


@dataclass(frozen=True)
class RealClip:
    """One real recording of the corpus."""

    path: Path
    part: str  # "targets" or "backgrounds"
    kind: str  # the class label (targets) or background kind
    source: str  # package or repository, with its version or commit
    source_path: str
    licence: str
    author: str
    duration: float
    synthetic: bool  # generated or edited in software rather than recorded acoustically
    notes: str

    @property
    def origin(self) -> str:
        """The source without version or commit (``debian:0ad-data``, ``github:owner/repo``)."""
        return self.source.split("@")[0].split("=")[0]

    @property
    def group(self) -> str:
        """The unit that stays on one side of a split: the source, or for speech the speaker within it (the
        author without years, e-mail addresses and case: ``Zohra Coudoin 2001`` and ``2015`` are one voice)."""
        return f"{self.origin}#{speaker_key(self.author)}" if self.kind == "speech" else self.origin


def speaker_key(author: str) -> str:
    """An author string reduced to the person: e-mail addresses, digits, brackets and case removed."""
    text = re.sub(r"<[^>]*>|\S+@\S+", " ", author)
    text = re.sub(r"[\d()\[\]]+", " ", text)
    return " ".join(text.lower().split())


def read_corpus(root: str | Path) -> list[RealClip]:
    """Every clip of ``root/targets`` and ``root/backgrounds`` (their ``MANIFEST.csv``), in manifest order."""
    root = Path(root)
    clips: list[RealClip] = []
    for part in PARTS:
        manifest = root / part / "MANIFEST.csv"
        if not manifest.is_file():
            raise CorpusError(f"{root}: no {part}/MANIFEST.csv (expected a real-audio corpus: targets/ and "
                              "backgrounds/, each with a MANIFEST.csv)")
        with open(manifest, newline="", encoding="utf-8") as f:
            for line, row in enumerate(csv.DictReader(f), start=2):
                try:
                    kind = row["class"] if part == "targets" else row["kind"]
                    clip = RealClip(
                        path=root / part / row["file"], part=part, kind=kind, source=row["source"],
                        source_path=row["source_path"], licence=row["licence"], author=row["author"],
                        duration=float(row["duration_s"]), synthetic=row["synthetic"].strip().lower() == "yes",
                        notes=row["notes"],
                    )
                except (KeyError, ValueError, AttributeError) as exc:
                    raise CorpusError(f"{manifest}, line {line}: unreadable row ({exc})") from None
                if not clip.path.is_file():
                    raise CorpusError(f"{manifest}, line {line}: {clip.path} does not exist")
                clips.append(clip)
    return clips


def _hash(seed: int, text: str) -> str:
    return hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()


def split_by_source(
    clips: Sequence[RealClip], val_share: float = 0.3, seed: int = 0, max_val_share: float = 0.6
) -> dict[str, list[RealClip]]:
    """``{"train": [...], "val": [...]}`` with every :attr:`RealClip.group` on one side only.

    Deterministic for a ``seed``. Groups are visited in a seeded hash order; first every target class with at
    least two groups gets one validation group (rarest classes first; the group covering most classes still
    without validation audio wins; each class keeps a training group), then groups go to validation while
    that brings a class or kind closer to ``val_share`` of its audio without taking any class or kind past
    ``max_val_share`` (a kind held by a single group is not protected by that cap: it lands where its group
    does). Everything else trains.
    """
    groups: dict[str, list[RealClip]] = defaultdict(list)
    for c in clips:
        groups[c.group].append(c)
    kind_of = lambda c: f"{c.part}/{c.kind}"  # noqa: E731
    seconds: dict[str, dict[str, float]] = {g: defaultdict(float) for g in groups}
    total: dict[str, float] = defaultdict(float)
    n_groups: dict[str, set[str]] = defaultdict(set)
    for g, cs in groups.items():
        for c in cs:
            seconds[g][kind_of(c)] += c.duration
            total[kind_of(c)] += c.duration
            n_groups[kind_of(c)].add(g)
    order = sorted(groups, key=lambda g: _hash(seed, g))
    val: set[str] = set()
    in_val: dict[str, float] = defaultdict(float)

    def fits(g: str) -> bool:
        return all(in_val[k] + s <= max_val_share * total[k] + 1e-9
                   for k, s in seconds[g].items() if len(n_groups[k]) > 1)

    def take(g: str) -> None:
        val.add(g)
        for k, s in seconds[g].items():
            in_val[k] += s

    def keeps_training(g: str) -> bool:  # every class or kind with several groups keeps one in training
        return all(len(n_groups[k] - val - {g}) > 0 for k in seconds[g] if len(n_groups[k]) > 1)

    def uncovered(g: str) -> int:
        return sum(1 for k in seconds[g] if k.startswith("targets/") and in_val[k] == 0 and len(n_groups[k]) > 1)

    targets = sorted((k for k in total if k.startswith("targets/") and len(n_groups[k]) > 1),
                     key=lambda k: (len(n_groups[k]), k))
    for k in targets:
        if in_val[k] > 0:
            continue
        candidates = [g for g in order if g not in val and k in seconds[g] and keeps_training(g)]
        if candidates:  # the group that gives the most uncovered target classes validation audio
            take(max(candidates, key=lambda g: (uncovered(g), -order.index(g))))
    for g in order:
        if g in val or not fits(g):
            continue
        if any(in_val[k] < val_share * total[k] for k in seconds[g] if len(n_groups[k]) > 1):
            take(g)
    return {"train": [c for c in clips if c.group not in val], "val": [c for c in clips if c.group in val]}


def split_summary(split: Mapping[str, Sequence[RealClip]]) -> dict[str, dict[str, dict[str, float]]]:
    """``{side: {"targets/speech": {"clips": n, "seconds": s, "groups": g}, ...}}`` of a split."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for side, cs in split.items():
        acc: dict[str, dict[str, float]] = {}
        groups: dict[str, set[str]] = defaultdict(set)
        for c in cs:
            k = f"{c.part}/{c.kind}"
            row = acc.setdefault(k, {"clips": 0, "seconds": 0.0})
            row["clips"] += 1
            row["seconds"] = round(row["seconds"] + c.duration, 2)
            groups[k].add(c.group)
        for k, row in acc.items():
            row["groups"] = len(groups[k])
        out[side] = dict(sorted(acc.items()))
    return out


def link_split(
    clips: Iterable[RealClip],
    out_dir: str | Path,
    labels: Sequence[str],
    bed_kinds: Sequence[str] = BED_KINDS,
    distractor_kinds: Sequence[str] = DISTRACTOR_KINDS,
) -> dict[str, Path]:
    """Lay ``clips`` out for the scene synthesiser under ``out_dir`` (replacing what was there), as links.

    ``clips/LABEL/`` holds the targets of ``labels`` (other target classes are left out) and the background
    kinds of ``distractor_kinds`` (folder names that are not labels: the synthesiser uses them as unlabelled
    distractors); ``beds/KIND/`` the kinds of ``bed_kinds``. Returns ``{"clips": path, "beds": path}``.
    """
    out = Path(out_dir)
    for sub in ("clips", "beds"):
        d = out / sub
        if d.exists():
            for p in sorted(d.rglob("*"), reverse=True):
                p.unlink() if p.is_symlink() or p.is_file() else p.rmdir()
    for c in clips:
        dests = []
        if c.part == "targets" and c.kind in labels:
            dests.append(out / "clips" / c.kind)
        if c.part == "backgrounds":
            if c.kind in distractor_kinds:
                dests.append(out / "clips" / c.kind)
            if c.kind in bed_kinds:
                dests.append(out / "beds" / c.kind)
        for d in dests:
            d.mkdir(parents=True, exist_ok=True)
            link = d / c.path.name
            if not link.exists():
                os.symlink(c.path.resolve(), link)
    for sub in ("clips", "beds"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    return {"clips": out / "clips", "beds": out / "beds"}


def attribution_markdown(clips: Sequence[RealClip], used_for: Mapping[str, str] | None = None) -> str:
    """A Markdown table of every clip's source, licence and author (``used_for``: group -> "train"/"val")."""
    lines = ["| file | class / kind | source | licence | author | used for |", "|---|---|---|---|---|---|"]

    def cell(text: str) -> str:
        return " ".join(str(text).split()).replace("|", "\\|")

    for c in sorted(clips, key=lambda c: (c.part, c.kind, c.path.name)):
        use = (used_for or {}).get(c.group, "")
        lines.append(f"| {cell(c.part + '/' + c.kind + '/' + c.path.name)} | {cell(c.kind)} | {cell(c.source)} | "
                     f"{cell(c.licence)} | {cell(c.author)} | {use} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m streamdet.train.real CORPUS [--seed N] [--attribution FILE]``: print the split by source as
    JSON, and write the attribution table of every clip with the side it is on."""
    import argparse
    import json
    import sys

    ap = argparse.ArgumentParser(prog="python -m streamdet.train.real", description=main.__doc__)
    ap.add_argument("corpus", help="folder with targets/ and backgrounds/ (each with MANIFEST.csv)")
    ap.add_argument("--seed", type=int, default=0, help="split seed (the recipe uses 0)")
    ap.add_argument("--attribution", default=None, help="write the Markdown attribution table here")
    args = ap.parse_args(argv)
    try:
        clips = read_corpus(args.corpus)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    split = split_by_source(clips, seed=args.seed)
    print(json.dumps({"sources": {side: sorted({c.group for c in cs}) for side, cs in split.items()},
                      "summary": split_summary(split)}, indent=1))
    if args.attribution:
        used = {c.group: side for side, cs in split.items() for c in cs}
        Path(args.attribution).write_text(
            "# Real recordings behind the bundled `alerts` model\n\n"
            "Generated from the corpus manifests by `python -m streamdet.train.real CORPUS --attribution FILE` "
            f"(split seed {args.seed}, the recipe's). *train*: the recording was mixed into training scenes; *val*: "
            "it was used only for checkpoint selection, threshold tuning and the real-audio figures. The audio is not "
            "in this repository; every row names its source, licence and author.\n\n"
            + attribution_markdown(clips, used))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
