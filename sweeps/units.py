"""What each Tune trial of a sweep runs: a unit is one planned trial or a pack of compatible ones
(study.packed), and its item is the JSON-able dict the worker gets (sweeps.worker.trainable), with the
memory it reserves on Ray (sweeps.memory) and the seconds it may take (study.cost). Consecutive unit items (of
one memory size class: items are sorted by memory first) become one bundle item, run one after the other in
one Tune trial, so that Tune's cost per trial (some 0.1 s of a slot) is paid once for many short trials of
ours: by default as many as fit in about BUNDLE_S seconds (`cost_bundles`), with `--bundle K` K of them
(`bundle_items`)."""

from __future__ import annotations

from typing import Any

from study.cost import estimate_seconds
from study.resources import estimate_bytes
from sweeps.memory import reservation
from sweeps.sampling import PlannedTrial


BUNDLE_S = 3.0  # an automatic bundle's estimated length: Tune's cost is then a few percent of it
ALONE_S = 1.0  # a unit estimated to take this long runs as its own Tune trial (Tune's cost <= 10%)


def unit_id(unit: list[PlannedTrial]) -> str:
    """A trial's id, or 'packS-<first member's id>' for a pack of S."""
    return unit[0].trial_id if len(unit) == 1 else f"pack{len(unit)}-{unit[0].trial_id}"


def reserve(unit: list[PlannedTrial]) -> int:
    """Bytes of Ray's `memory` resource the unit's Tune trial asks for: the estimate, summed over a pack."""
    return reservation(sum(estimate_bytes(t.config) for t in unit))


def _shown(configs: list[dict[str, Any]]) -> dict[str, str]:
    """Each field's distinct values joined by '/': the progress table's cells of a pack or bundle."""
    return {k: "/".join(map(str, dict.fromkeys(c[k] for c in configs))) for k in configs[0]}


def _item(t: PlannedTrial, sweep: str) -> dict[str, Any]:
    return {"id": t.trial_id, "cfg": t.config.canonical(), "pair_id": t.pair_id, "pair_factor": t.pair_factor,
            "twin_id": t.twin_id, "twin_factor": t.twin_factor, "sweep_id": sweep}


def items(chunk: list[list[PlannedTrial]], sweep: str, memory: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """One Tune trial per unit: a study trial, or a pack {id, pack: [its trials], n, cfg: each field's values
    joined by '/', for the progress table}; each with "memory", from `memory` by unit id or reserve(), and
    "seconds", unit_seconds(unit)."""
    found = []
    for unit in chunk:
        if len(unit) == 1:
            item = _item(unit[0], sweep)
        else:
            item = {"id": unit_id(unit), "pack": [_item(t, sweep) for t in unit], "n": len(unit),
                    "cfg": _shown([t.config.canonical() for t in unit])}
        item["memory"] = (memory or {}).get(unit_id(unit)) or reserve(unit)
        item["seconds"] = unit_seconds(unit)
        found.append(item)
    return found


def trial_items(item: dict[str, Any]) -> list[dict[str, Any]]:
    """The study-trial items an item holds: itself, a pack's members, or every trial of a bundle's members."""
    if "bundle" in item:
        return [t for member in item["bundle"] for t in trial_items(member)]
    return list(item.get("pack", [item] if item else []))


def unfinished_members(bundle: dict[str, Any], done: set[str]) -> list[dict[str, Any]]:
    """The members (trial or pack items) of a bundle item with a trial not in `done`."""
    return [member for member in bundle["bundle"] if any(t["id"] not in done for t in trial_items(member))]


def _bundle(group: list[dict[str, Any]]) -> dict[str, Any]:
    """Unit items as one bundle item {id: 'bundleN-<first id>', bundle: [its items], n: study trials, cfg: each
    field's values joined by '/', memory: the largest member's (they run one at a time), seconds: summed};
    a group of one stays that item."""
    if len(group) == 1:
        return group[0]
    return {"id": f"bundle{len(group)}-{group[0]['id']}", "bundle": group,
            "n": sum(int(item.get("n", 1)) for item in group),
            "cfg": _shown([t["cfg"] for item in group for t in trial_items(item)]),
            "memory": max(int(item["memory"]) for item in group),
            "seconds": sum(float(item.get("seconds", 0.0)) for item in group)}


def bundle_items(unit_items: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Consecutive groups of k unit items, each group of two or more one bundle item (_bundle); k < 2 leaves
    the items as they are."""
    if k < 2:
        return list(unit_items)
    return [_bundle(unit_items[lo:lo + k]) for lo in range(0, len(unit_items), k)]


def bundle_seconds(seconds: list[float], slots: int) -> float:
    """How long an automatic bundle may be: BUNDLE_S, or less where the short units' estimated `seconds`
    would then fill fewer than two bundles a slot (the last bundles would run while other slots idle)."""
    return min(BUNDLE_S, sum(s for s in seconds if s < ALONE_S) / (2 * max(1, slots)))


def cost_groups(seconds: list[float], slots: int) -> list[list[int]]:
    """The automatic bundles, as indices into `seconds` (each unit's estimate): a unit of ALONE_S seconds or
    more runs alone; consecutive shorter ones are grouped while their sum stays within
    bundle_seconds(seconds, slots). Each index is in one group; a bundle lists its units in their order."""
    limit = bundle_seconds(seconds, slots)
    groups: list[list[int]] = []
    open_group: list[int] = []
    total = 0.0
    for index, value in enumerate(seconds):
        if value >= ALONE_S:
            groups.append([index])
            continue
        if open_group and total + value > limit * (1 + 1e-9):  # 50 x 0.06 s is 3 s
            groups.append(open_group)
            open_group, total = [], 0.0
        open_group.append(index)
        total += value
    return groups + ([open_group] if open_group else [])


def cost_bundles(unit_items: list[dict[str, Any]], slots: int) -> list[dict[str, Any]]:
    """The unit items grouped by cost_groups over their "seconds", each group one bundle item (_bundle)."""
    groups = cost_groups([float(item["seconds"]) for item in unit_items], slots)
    return [_bundle([unit_items[i] for i in group]) for group in groups]


SPEED_SAMPLE = 64  # recorded trials a speed factor is measured on
SPEED_RANGE = (1e-3, 10.0)


def speed_factor(location: str, trials: list[PlannedTrial], done: set[str]) -> tuple[float, int]:
    """(measured / estimated seconds, trials it was measured on): the median over the first SPEED_SAMPLE of
    `trials` recorded in `done` of time.total_s / study.cost.estimate_seconds, within SPEED_RANGE; (1.0, 0)
    with none. Automatic bundles scale their estimates by it, so that they still last about BUNDLE_S where
    trials run faster than the estimate's CPU core (a GPU) or stop well before max_steps (most do)."""
    import statistics

    import pyarrow.parquet as pq

    from study.records import record_path, resolve

    recorded = [t for t in trials if t.trial_id in done][:SPEED_SAMPLE]
    fs, root = resolve(location)
    ratios = []
    for t in recorded:  # one small file each (a dataset over them kept ~30 MiB of the driver per chunk)
        try:
            seconds = pq.read_table(record_path(root, "trials", t.trial_id), columns=["time.total_s"],
                                    filesystem=fs).column(0)[0].as_py()
        except (OSError, ValueError, KeyError, IndexError):  # replaced meanwhile, or a foreign file: not a sample
            continue
        if seconds is not None and seconds > 0:
            ratios.append(seconds / estimate_seconds(t.config))
    if not ratios:
        return 1.0, 0
    low, high = SPEED_RANGE
    return min(high, max(low, statistics.median(ratios))), len(ratios)


def unit_seconds(unit: list[PlannedTrial]) -> float:
    """A unit's estimated seconds: its trials' study.cost.estimate_seconds summed (a bound for a pack,
    which trains its nets together)."""
    return sum(estimate_seconds(t.config) for t in unit)


def units(pending: list[PlannedTrial], pack: int) -> list[list[PlannedTrial]]:
    """What each Tune trial runs: one planned trial, or (pack >= 2) a pack of compatible ones."""
    if pack < 2:
        return [[t] for t in pending]
    from study.packed import group_into_packs

    by_id = {t.trial_id: t for t in pending}
    return [[by_id[c.trial_id] for c in group] for group in group_into_packs([t.config for t in pending], pack)]


def chunks(work: list[list[PlannedTrial]], size: int) -> list[list[list[PlannedTrial]]]:
    """Consecutive units, at most `size` study trials a chunk (a bigger pack gets a chunk of its own)."""
    chunks: list[list[list[PlannedTrial]]] = []
    count = size
    for unit in work:
        if count + len(unit) > size:
            chunks.append([])
            count = 0
        chunks[-1].append(unit)
        count += len(unit)
    return chunks


