"""``bioxen vm gc``: find XCP-ng VMs and Slurm jobs bioxen left behind, and remove them with ``--yes``.

An *orphan* is a VM this user's bioxen (this installation) created whose creating process is
gone (it crashed, was killed, or the machine rebooted).  Two sources, so nothing is missed:

* the local record (:mod:`.registry`), written right after ``VM.clone`` — it names the owner
  process precisely;
* the pools themselves: every VM tagged ``bioxen`` or stamped with ``other_config:bioxen-owner``
  (also VMs whose record was lost).

A pool is shared, so a tag proves nothing and gc destroys only what provably is ours: a VM in
the local record, or one whose owner stamp names this user and installation.  Everything else
bioxen-looking is listed and never destroyed:

* ``in-use`` — ours, and its owner process still runs;
* ``foreign`` — ours, created from another machine (a shared state directory): we cannot see
  whether its owner lives, so it is destroyed only with ``--foreign``;
* ``not-mine`` — stamped by another user or another bioxen installation;
* ``unowned`` — tagged ``bioxen`` without an owner stamp (by hand, or by another tool).

Slurm jobs (``--cluster NAME``; ``local`` is this machine's Slurm) are found the same way: every
job bioxen submits is named ``bioxen-VM`` and carries the owner stamp in its comment
(``bioxen-owner=…``), so a job of this user's that merely has such a name is ``unowned`` and
never cancelled.  An orphan job is cancelled with ``scancel``.

Without ``--yes`` nothing is destroyed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from . import registry as registry_mod
from .xapi import XapiConnectionError, XapiError, XapiSession

__all__ = ["cli_main", "Candidate", "scan"]


@dataclass
class Candidate:
    """One bioxen VM found on a pool or in the record."""

    pool: str
    uuid: str
    name_label: str
    owner: str          # "host:pid" or "?"
    status: str         # a key of STATUS_NOTES
    created: str
    ref: str | None = None
    record_id: str | None = None  # the record to drop with it, when not its uuid (pending)
    cluster: str | None = None    # a Slurm job (uuid: its job id) of this cluster


STATUS_NOTES = {
    "orphan": "its bioxen process is gone",
    "in-use": "its bioxen process still runs",
    "foreign": "created by you from another machine (OWNER): orphaned there or still in use, "
               "which cannot be seen from here; destroyed only with --foreign",
    "not-mine": "another user's or another bioxen installation's; never destroyed",
    "unowned": "tagged 'bioxen' (a VM) or named 'bioxen-…' (a Slurm job) without bioxen's owner "
               "stamp; never destroyed",
    "ambiguous": "untagged, named as a VM a killed bioxen was cloning, as is another VM: "
                 "never destroyed (check which is yours)",
    "gone": "recorded, but no longer on the pool",
}


def _classify(record: registry_mod.VMRecord | None,
              other_config: dict) -> tuple[str, registry_mod.Owner | None]:
    """The status of one bioxen-looking VM, and its owner when known."""
    from .xcpng import OWNER_KEY
    if record is not None:  # our own record: we cloned it (its uuid came from our VM.clone)
        return _by_owner(record.owner), record.owner
    return classify_stamp(other_config.get(OWNER_KEY))


def classify_stamp(token: str | None) -> tuple[str, registry_mod.Owner | None]:
    """The status of something that carries (or lacks) bioxen's owner stamp, and its owner."""
    owner = registry_mod.Owner.from_token(token) if token else None
    if owner is None:
        return "unowned", None
    if not owner.is_ours():
        return "not-mine", owner
    return _by_owner(owner), owner


def _by_owner(owner: registry_mod.Owner) -> str:
    if not owner.is_local():
        return "foreign"
    return "in-use" if owner.is_alive() else "orphan"


def _owner_text(owner: registry_mod.Owner | None) -> str:
    if owner is None:
        return "?"
    who = f"{owner.user}@" if owner.user else ""
    return f"{who}{owner.host}:{owner.pid}"


def scan(session: XapiSession, pool: str, records: list[registry_mod.VMRecord]) -> list[Candidate]:
    """Classify every bioxen VM on one pool and every record of that pool."""
    from .xcpng import CREATED_KEY, OWNER_KEY, TAG, find_bioxen_vms
    by_uuid = {r.uuid: r for r in records}
    found: list[Candidate] = []
    seen = set()
    for ref, rec in find_bioxen_vms(session).items():
        status, owner = _classify(by_uuid.get(rec["uuid"]), rec.get("other_config", {}))
        seen.add(rec["uuid"])
        found.append(Candidate(
            pool=pool, uuid=rec["uuid"], name_label=rec["name_label"],
            owner=_owner_text(owner), status=status,
            created=rec.get("other_config", {}).get(CREATED_KEY, "?"), ref=ref))
    pending = [r for r in records if r.pending]
    if pending:
        everything = session.call("VM.get_all_records")
        for record in pending:
            if record.owner.is_alive():
                seen.add(record.uuid)  # still being created
                continue
            # The crash came between VM.clone and tagging: an untagged VM with our label.
            # (Still a template if provisioning had not run: a clone inherits that flag.)
            matches = [(ref, rec) for ref, rec in everything.items()
                       if rec["name_label"] == record.name_label and rec["uuid"] not in seen
                       and not rec.get("is_default_template") and not rec.get("is_a_snapshot")
                       and TAG not in rec.get("tags", [])
                       and OWNER_KEY not in rec.get("other_config", {})]
            # Only one can be ours; with several (another bioxen's clone of the same name
            # that is not stamped yet) none is destroyed.
            status = ("ambiguous" if len(matches) > 1 else
                      "foreign" if not record.owner.is_local() else "orphan")
            for ref, rec in matches:
                seen.update({rec["uuid"], record.uuid})
                found.append(Candidate(
                    pool=pool, uuid=rec["uuid"], name_label=rec["name_label"],
                    owner=_owner_text(record.owner), status=status,
                    created="?", ref=ref, record_id=record.uuid))
    for record in records:
        if record.uuid in seen:
            continue
        if not record.pending:
            # Recorded but untagged (a crash before tagging): look it up by uuid.
            try:
                ref = session.call("VM.get_by_uuid", record.uuid)
                rec = session.call("VM.get_record", ref)
            except XapiError as e:
                if e.code not in ("UUID_INVALID", "HANDLE_INVALID"):
                    raise
            else:
                found.append(Candidate(
                    pool=pool, uuid=record.uuid, name_label=rec["name_label"],
                    owner=_owner_text(record.owner),
                    status=_classify(record, {})[0], ref=ref,
                    created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))))
                continue
        found.append(Candidate(
            pool=pool, uuid=record.uuid, name_label=record.name_label,
            owner=_owner_text(record.owner), status="gone",
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))))
    return found


def scan_cluster(name: str, cmds: Any) -> list[Candidate]:
    """Classify every job of this user on one Slurm cluster that looks like bioxen's (``cmds``:
    where its commands run, :func:`bioxen_shell.remote.slurm.commands_for`)."""
    from .slurm import COMMENT_PREFIX, list_jobs
    jobs = list_jobs(cmds)
    found = []
    for job in jobs:
        comment = job["comment"]
        token = comment[len(COMMENT_PREFIX):] if comment.startswith(COMMENT_PREFIX) else None
        status, owner = classify_stamp(token)
        found.append(Candidate(pool=f"slurm:{name}", uuid=job["job"], name_label=job["name"],
                               owner=_owner_text(owner), status=status, created=job["submitted"],
                               cluster=name))
    return found


def _print_table(rows: list[Candidate], out: TextIO) -> None:
    header = ("STATUS", "WHERE", "NAME", "ID", "OWNER", "CREATED")
    table = [header] + [(c.status, c.pool, c.name_label, c.uuid, c.owner, c.created)
                        for c in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        out.write("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() + "\n")
    shown = {c.status for c in rows}
    for status, note in STATUS_NOTES.items():
        if status in shown:
            out.write(f"  {status}: {note}\n")


def _settings_for(pool: str, records: list[registry_mod.VMRecord]) -> Any:
    from .xcpng import PoolSettings, load_pool
    inline = next((r.settings for r in records if r.settings), None)
    if inline is not None:
        return PoolSettings.from_mapping(pool, inline, f"the record of pool {pool}")
    return load_pool(pool)


def _configured_pools() -> list[str]:
    try:
        from . import config as config_mod
        cfg = config_mod.load_config()
    except Exception:  # noqa: BLE001 - no config file: only the record's pools
        return []
    return sorted(getattr(cfg, "pools", {}) or {})


USAGE = "usage: bioxen vm gc [--pool NAME]... [--cluster NAME]... [--yes] [--foreign]\n"


def cli_main(argv: list[str], *, out: TextIO | None = None, err: TextIO | None = None,
             open_session: Callable[[Any], XapiSession] | None = None) -> int:
    """``bioxen vm gc [--pool NAME]… [--cluster NAME]… [--yes] [--foreign]`` (argv starts at ``gc``)."""
    out = out or sys.stdout
    err = err or sys.stderr
    if not argv or argv[0] in ("-h", "--help"):
        (out if argv else err).write(USAGE + "Subcommands of `bioxen vm`: gc (list and remove "
                                     "XCP-ng VMs and Slurm jobs left behind; see `bioxen vm gc --help`)\n")
        return 0 if argv else 2
    if argv[0] != "gc":
        err.write(f"bioxen vm: unknown subcommand {argv[0]!r} (expected: gc)\n")
        return 2
    try:
        return _gc(argv[1:], out, err, open_session)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2), already printed
        return int(e.code or 0)


def _gc(argv: list[str], out: TextIO, err: TextIO,
        open_session: Callable[[Any], XapiSession] | None) -> int:
    parser = argparse.ArgumentParser(
        prog="bioxen vm gc",
        description="List XCP-ng VMs and Slurm jobs that bioxen created and no running bioxen "
                    "uses (left by a crash or a kill); remove them with --yes.")
    parser.add_argument("--pool", action="append", metavar="NAME",
                        help="only this XCP-ng pool (repeatable); default: every configured pool "
                             "and every pool in bioxen's record")
    parser.add_argument("--cluster", action="append", metavar="NAME",
                        help="only this Slurm cluster (repeatable; 'local': this machine's Slurm); "
                             "default: every [clusters.NAME], and 'local' where Slurm is set up")
    parser.add_argument("--yes", action="store_true", help="destroy the orphans listed")
    parser.add_argument("--foreign", action="store_true",
                        help="also destroy your bioxen VMs created from other machines "
                             "(never another user's or installation's)")
    args = parser.parse_args(argv)

    reg = registry_mod.Registry()
    try:
        records = reg.all()
        registry_mod.installation_id()  # what "ours" means below; a damaged one stops here
    except (registry_mod.RegistryError, OSError) as e:
        err.write(f"bioxen vm gc: {e}\n")
        return 2
    if args.pool or args.cluster:
        pools, clusters = args.pool or [], args.cluster or []
    else:
        pools = sorted({r.pool for r in records} | set(_configured_pools()))
        clusters = _configured_clusters()
    if not pools and not clusters:
        out.write("no XCP-ng pools or Slurm clusters configured and no VMs recorded: nothing to do\n")
        return 0

    status = 0
    rows: list[Candidate] = []
    sessions: dict[str, XapiSession] = {}
    cluster_cmds: dict[str, Any] = {}  # where each cluster's Slurm commands run (scan, then cancel)
    try:
        for pool in pools:
            pool_records = [r for r in records if r.pool == pool]
            try:
                from .xcpng import pool_session
                settings = _settings_for(pool, pool_records)
                if open_session is not None:
                    session = open_session(settings)
                else:
                    session = pool_session(settings)
                    session.login()
            except Exception as e:  # noqa: BLE001 - report and go on with the other pools
                err.write(f"bioxen vm gc: pool {pool!r}: {e}\n")
                status = 1
                continue
            sessions[pool] = session
            rows.extend(scan(session, pool, pool_records))
        for cluster in clusters:
            try:
                from .slurm import cluster_for_gc, commands_for
                cmds = cluster_cmds[cluster] = commands_for(cluster_for_gc(cluster))
                rows.extend(scan_cluster(cluster, cmds))
            except Exception as e:  # noqa: BLE001 - report and go on with the other clusters
                err.write(f"bioxen vm gc: cluster {cluster!r}: {e}\n")
                status = 1
        _print_table(rows, out) if rows else out.write("no bioxen VMs or jobs found\n")

        doomed = [c for c in rows if c.status == "orphan" or
                  (args.foreign and c.status == "foreign")]
        stale = [c for c in rows if c.status == "gone"]
        if not args.yes:
            if doomed or stale:
                out.write(f"{len(doomed)} orphan(s)"
                          f"{f', {len(stale)} stale record(s)' if stale else ''}; "
                          f"run `bioxen vm gc --yes` to remove them\n")
            return status
        for c in stale:
            reg.remove(c.uuid)
        for c in doomed:
            if c.cluster is not None:
                from .slurm import cancel_job
                problem = cancel_job(cluster_cmds[c.cluster], c.uuid)
                if problem is not None:
                    err.write(f"bioxen vm gc: could not cancel Slurm job {c.uuid} ({c.name_label}) on "
                              f"cluster {c.cluster}: {problem}\n")
                    status = 1
                else:
                    out.write(f"cancelled Slurm job {c.uuid} ({c.name_label}) on cluster {c.cluster}\n")
                continue
            status |= _destroy_vm(c, sessions[c.pool], reg, out, err)
        if not doomed:
            out.write("no orphans to destroy\n")
        return status
    finally:
        for session in sessions.values():
            session.logout()
        for cmds in cluster_cmds.values():
            cmds.close()


def _destroy_vm(c: Candidate, session: XapiSession, reg: registry_mod.Registry,
                out: TextIO, err: TextIO) -> int:
    from .xcpng import VMRemoval
    removal = VMRemoval(session, c.ref)
    try:
        kept = removal.run()
    except (XapiError, XapiConnectionError) as e:
        err.write(f"bioxen vm gc: could not destroy {c.name_label} ({c.uuid}): {e}; "
                  f"{removal.left()}\n")
        return 1
    reg.remove(c.uuid)
    if c.record_id:
        reg.remove(c.record_id)
    note = f" (kept disks used by other VMs: {', '.join(kept)})" if kept else ""
    out.write(f"destroyed {c.name_label} ({c.uuid}) on pool {c.pool}{note}\n")
    return 0


def _configured_clusters() -> list[str]:
    """Every [clusters.NAME], and "local" when this machine has Slurm set up (SLURM_CONF or
    /etc/slurm/slurm.conf, and squeue on PATH)."""
    try:
        from . import config as config_mod
        names = sorted(config_mod.load_config().clusters)
    except Exception:  # noqa: BLE001 - a broken config is `bioxen config check`'s to report
        names = []
    if shutil.which("squeue") and (os.environ.get("SLURM_CONF") or os.path.exists("/etc/slurm/slurm.conf")):
        names.append("local")
    return names
