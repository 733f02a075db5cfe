"""What each Tune trial of a sweep runs: a unit is one planned trial or a pack of compatible ones
(study.packed), and its item is the JSON-able dict the worker gets (sweeps.worker.trainable), with the
memory it reserves on Ray (sweeps.memory). With `--bundle K`, K consecutive unit items (of one memory size
class: items are sorted by memory first) become one bundle item, run one after the other in one Tune trial:
Tune's cost per trial is then paid once for K of ours (`bundle_items`)."""

from __future__ import annotations

from typing import Any

from study.resources import estimate_bytes
from sweeps.memory import reservation
from sweeps.sampling import PlannedTrial


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
    joined by '/', for the progress table}; each with "memory", from `memory` by unit id or reserve()."""
    found = []
    for unit in chunk:
        if len(unit) == 1:
            item = _item(unit[0], sweep)
        else:
            item = {"id": unit_id(unit), "pack": [_item(t, sweep) for t in unit], "n": len(unit),
                    "cfg": _shown([t.config.canonical() for t in unit])}
        item["memory"] = (memory or {}).get(unit_id(unit)) or reserve(unit)
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


def bundle_items(unit_items: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Consecutive groups of k unit items, each group of two or more one bundle item {id: 'bundleN-<first
    id>', bundle: [its items], n: study trials, cfg: each field's values joined by '/', memory: the largest
    member's (they run one at a time)}; k < 2 leaves the items as they are."""
    if k < 2:
        return list(unit_items)
    found = []
    for lo in range(0, len(unit_items), k):
        group = unit_items[lo:lo + k]
        if len(group) == 1:
            found.append(group[0])
            continue
        found.append({"id": f"bundle{len(group)}-{group[0]['id']}", "bundle": group,
                      "n": sum(int(item.get("n", 1)) for item in group),
                      "cfg": _shown([t["cfg"] for item in group for t in trial_items(item)]),
                      "memory": max(int(item["memory"]) for item in group)})
    return found


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


