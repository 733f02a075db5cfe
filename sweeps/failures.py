"""What the sweep driver makes of Tune trials that failed: error rows, and out-of-memory retries.

A Tune trial whose every attempt failed gets an error row per study trial (written by the driver; the
worker died). One stopped by its memory guard, or killed by Ray's memory monitor, is run again once with
more memory (sweeps.memory) before it gets its error row "out of memory (N GB in use); ...".
"""

from __future__ import annotations

import os
import sys
from typing import Any

from sweeps.memory import GB, RETRY_MARGIN, killed_for_memory, out_of_memory, reservation
from sweeps.sampling import PlannedTrial
from study.records import completed_trial_ids
from sweeps.units import trial_items, unfinished_members, unit_id
from sweeps.worker import write_error


def error_line(error: BaseException | None) -> str:
    """One line saying why the last attempt of a Tune trial failed (the trainable's own exception, when a
    RayTaskError wraps it)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    if error is None:
        return "worker failed"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:500]


def item_of(result, by_id: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The item a Tune result ran: from its config, else by its directory, which is named by the item's id."""
    item = (result.config or {}).get("item")
    return item if item else by_id.get(os.path.basename(str(result.path).rstrip("/")), {})


def write_error_rows(results, attempts: int, out: str, by_id: dict[str, dict[str, Any]],
                      killed: list | None = None, bundles: list | None = None) -> int:
    """Error rows for the Tune trials that Tune gave up on (every attempt failed); returns how many were
    written. A row that cannot be written is reported and its trial stays pending for a rerun. Results
    whose worker Ray killed for memory go to `killed` instead, as (item, Ray's words), when it is given;
    bundles that failed otherwise go to `bundles`, when it is given (their members are run alone first)."""
    written = 0
    for result in results:
        if result.error is None:
            continue
        item = item_of(result, by_id)
        message = f"failed {attempts} attempts; last: {error_line(result.error)}"
        oom = killed_for_memory(str(result.error))
        if oom and killed is not None and item:  # retried with more memory first (_out_of_memory)
            killed.append((item, f"{oom}; {message}"))
            continue
        if not oom and bundles is not None and "bundle" in item:
            bundles.append(item)
            continue
        if oom:  # Ray's memory monitor killed the worker: say so first
            message = f"{oom}; {message}"
        written += _error_rows(out, item, message)
    return written


def _error_rows(out: str, item: dict[str, Any], message: str) -> int:
    """One error row per study trial of `item` (a trial or a pack) without a record; how many were written.
    A row that cannot be written is reported, never raised: its trial stays pending for a rerun."""
    written = 0
    for member in trial_items(item):
        try:
            written += write_error(out, member, message)
        except Exception as exc:  # never take the sweep down
            print(f"warning: could not write the error row of {member.get('id')}: {exc}", file=sys.stderr)
    return written


def node_resources() -> list[dict[str, float]]:
    """Each live Ray node's total resources ({"CPU", "GPU", "memory", ...})."""
    import ray

    return [dict(n["Resources"]) for n in ray.nodes() if n.get("Alive")]


def largest_node_memory(nodes: list[dict[str, float]] | None = None) -> float:
    """The largest `memory` resource among `nodes` (default: the live Ray nodes); 0 if none."""
    return max((n.get("memory", 0.0) for n in (node_resources() if nodes is None else nodes)), default=0.0)


def plan_retries(stopped: list, chunk: list[list[PlannedTrial]], retried: set[str],
                   out: str) -> tuple[list[list[PlannedTrial]], dict[str, int], int]:
    """The units stopped for memory to run again, once, each reserving RETRY_MARGIN times its peak (twice
    its reservation when Ray killed it: the peak died with the worker); the others (a second overrun, or
    more than any node has) get error rows. A stopped bundle's unfinished members are such units, each with
    the bundle's peak. Returns (units, their memory, rows written)."""
    by_id = {unit_id(unit): unit for unit in chunk}
    again, memory, written = [], {}, 0
    largest = largest_node_memory()
    done = completed_trial_ids(out) if any("bundle" in item for item, _, _ in stopped) else set()
    expanded = []  # a bundle's members are retried as units of their own (its recorded ones are done)
    for item, peak, words in stopped:
        members = unfinished_members(item, done) if "bundle" in item else [item]
        expanded += [(member, peak, words) for member in members]
    for item, peak, words in expanded:
        if item.get("id") not in by_id:  # not a unit of this chunk (cannot happen): left pending
            continue
        need = reservation(int(RETRY_MARGIN * max(peak, item["memory"])))
        if item["id"] not in retried and need <= largest:
            again.append(by_id[item["id"]])
            memory[item["id"]] = need
            continue
        why = ("again, after a retry that reserved " if item["id"] in retried else "reserved ") + \
            f"{item['memory'] / GB:.1f} GB" + ("" if need <= largest else
                                                 f"; needs about {need / GB:.1f} GB, more than any node has")
        written += _error_rows(out, item, f"{words}; {why}" if words else out_of_memory(peak, why))
    return again, memory, written


