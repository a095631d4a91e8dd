# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of the pg_probackup module: reading the catalog, judging the
backup chain, choosing the backup mode, and driving pg_probackup 2.5.

The pure functions at the top (parsing ``show`` JSON and stderr, chain
analysis, planning) are what the unit tests cover against recorded output of
the real pg_probackup 2.5.15. ``Catalog`` below runs the real commands through
``Runner``; the integration tests cover it against a real cluster.

What pg_probackup does, recorded (see the module documentation for the why):
- a killed backup stays RUNNING forever, with its ``backup.pid`` left behind;
- almost every failed backup leaves an ERROR entry, and any ERROR entry makes
  an instance-wide ``validate`` fail (validating one backup by id does not);
- it has no catalog lock of its own, hence ``_locks.FileLock`` around every
  command we run on one catalog.
"""

import calendar
import errno
import json
import os
import re
import stat
import time

from ansible_collections.alation.backup.plugins.module_utils._host import command_failure, exit_description, pid_state
from ansible_collections.alation.backup.plugins.module_utils._locks import LeaseLost, stopped
from ansible_collections.alation.backup.plugins.module_utils._runner import find_program, not_found
from ansible_collections.alation.backup.plugins.module_utils._staging import (
    RemovalError, clear_tree, dir_state, make_dir, mount_points_below, refusal, resolved_path)

RESTORABLE = ('OK', 'DONE')
BROKEN = ('ERROR', 'CORRUPT', 'ORPHAN')
INCREMENTAL_MODES = ('delta', 'page', 'ptrack')
BACKUP_MODES = ('auto', 'full') + INCREMENTAL_MODES
ON_BROKEN_CHAIN = ('reset', 'repair', 'fail')

# A stderr line of pg_probackup: "LEVEL: text", maybe after a timestamp or pid.
_LOG_LINE = re.compile(r'^(?:[0-9][0-9:. +-]*\s+)?(?:\[\d+\]:?\s*)?'
                       r'(VERBOSE|LOG|INFO|NOTICE|WARNING|ERROR|FATAL|PANIC):\s?(.*)$')
_BACKUP_ID = re.compile(r'\bbackup ID: ([0-9A-Z]+)')
# show's start-time: "2026-11-27 07:45:38+00" (the offset is the host's: +00, +03, +05:30).
_START_TIME = re.compile(r'^(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.\d+)?([+-])(\d\d)(?::?(\d\d))?$')
DAY_S = 86400.0


class PgProbackupError(Exception):
    """A pg_probackup command failed; ``result`` is the Runner result."""

    def __init__(self, msg, result=None, **extra):
        super().__init__(msg)
        self.msg = msg
        self.result = result or {}
        self.extra = extra


class LeaseStop(PgProbackupError):
    """The run's lease was lost before a deletion in the catalog: nothing more is deleted."""


# -- stderr ------------------------------------------------------------------

def parse_log(stderr):
    """[(level, message)] of pg_probackup's stderr; continuation lines are joined on."""
    entries = []
    for line in (stderr or '').splitlines():
        m = _LOG_LINE.match(line)
        if m:
            entries.append([m.group(1), m.group(2).strip()])
        elif line.strip() and entries:
            # libpq errors span lines ("\tIs the server running ...").
            entries[-1][1] += ' ' + line.strip()
        elif line.strip():
            entries.append(['', line.strip()])
    return [tuple(e) for e in entries]


def error_lines(stderr):
    """The ERROR (and FATAL/PANIC) messages of stderr, each as one line."""
    return ['%s: %s' % (lvl, txt) for lvl, txt in parse_log(stderr) if lvl in ('ERROR', 'FATAL', 'PANIC')]


def warning_lines(stderr):
    """The WARNING messages of stderr, in order, without repeats."""
    seen = []
    for lvl, txt in parse_log(stderr):
        if lvl == 'WARNING' and txt not in seen:
            seen.append(txt)
    return seen


def backup_id_from_log(stderr):
    """The id of the backup a ``backup`` run started, from its "Backup start" line.

    Not the newest id in ``show``: a retried same-second start logs the id it
    could not use first ("Cannot create directory .../TP5HKY: File exists").
    """
    for lvl, txt in parse_log(stderr):
        if lvl == 'INFO':
            m = _BACKUP_ID.search(txt)
            if m:
                return m.group(1)
    return None


# What to tell the user for the failures seen in the real pg_probackup.
_HINTS = (
    ('Connection refused', 'is PostgreSQL running and listening on the given host and port?'),
    ('Is the server running locally', 'is PostgreSQL running, and is host its socket directory?'),
    ('Is the server running', 'is PostgreSQL running and listening on the given host and port?'),
    ('role "', 'set user to a role that exists on the server.'),
    ('database "', 'set dbname to a database that exists on the server.'),
    ('password authentication failed', 'check user and password.'),
    ('no pg_hba.conf entry', 'allow this host (and replication, for stream) in pg_hba.conf.'),
    ('global/pg_control', 'set pgdata to the data directory of the server being backed up.'),
    ('Create new full backup before an incremental one',
     'no valid FULL backup to build on: use backup_mode=auto or full.'),
    ('does not exist in this backup catalog', 'the instance is not in the catalog (state=backup adds it).'),
    ('already exists and is not empty', 'the catalog dir must be empty or absent for init.'),
    ('Permission denied', 'the catalog and PGDATA must be accessible to run_as.'),
    ('Interrupted', 'pg_probackup was interrupted (signal).'),
)


def failure_message(action, result):
    """One line for fail_json: what failed, the exit code, the ERROR lines, a hint."""
    errs = error_lines(result.get('stderr'))
    msg = 'pg_probackup %s %s' % (action, exit_description(result.get('rc')))
    if errs:
        msg += ': ' + ' '.join(errs)
    elif (result.get('stderr') or '').strip():
        msg += ': ' + (result['stderr'].strip().splitlines() or [''])[-1]
    text = ' '.join(errs)
    for needle, hint in _HINTS:
        if needle in text:
            msg += ' (hint: %s)' % hint
            break
    return msg


# -- show --------------------------------------------------------------------

def parse_show(stdout):
    """The parsed JSON of ``show --format=json``: a list of {instance, backups}."""
    data = json.loads(stdout or '[]')
    if not isinstance(data, list):
        raise ValueError('pg_probackup show: expected a JSON list, got %s' % type(data).__name__)
    return data


def instance_backups(catalog_json, instance):
    """The backups of ``instance`` in parsed ``show`` output, newest first."""
    for item in catalog_json:
        if item.get('instance') == instance:
            return newest_first(item.get('backups') or [])
    return []


def id_key(backup_id):
    """Backup ids are base-36 start times: this orders them in time."""
    try:
        return int(backup_id, 36)
    except (TypeError, ValueError):
        return -1


def newest_first(backups):
    return sorted(backups, key=lambda b: id_key(b.get('id')), reverse=True)


def normalise(entry):
    """The ``show`` entry of one backup in the module's return format."""
    if entry is None:
        return None
    return dict(
        id=entry.get('id'),
        mode=entry.get('backup-mode'),
        status=entry.get('status'),
        parent=entry.get('parent-backup-id'),
        wal=entry.get('wal'),
        start_time=entry.get('start-time'),
        end_time=entry.get('end-time'),
        recovery_time=entry.get('recovery-time'),
        data_bytes=entry.get('data-bytes'),
        wal_bytes=entry.get('wal-bytes'),
        uncompressed_bytes=entry.get('uncompressed-bytes'),
        pgdata_bytes=entry.get('pgdata-bytes'),
        compress_alg=entry.get('compress-alg'),
        server_version=entry.get('server-version'),
        program_version=entry.get('program-version'),
    )


def show_error_means_empty(stderr):
    """True when ``show`` failed only because the catalog or instance is not there yet.

    Recorded: ``Cannot open directory ".../backups": No such file or directory``
    (catalog missing or not initialised) and ``Instance 'X' does not exist in
    this backup catalog``. A permission error is a real failure.
    """
    errs = ' '.join(error_lines(stderr))
    return bool(errs) and (
        ('Cannot open directory' in errs and 'No such file or directory' in errs)
        or 'does not exist in this backup catalog' in errs)


# -- chain analysis ----------------------------------------------------------

def chain_problem(entry, by_id):
    """Why ``entry``'s parent chain down to its FULL is not usable, or None."""
    seen = set()
    cur = entry
    while cur.get('backup-mode') != 'FULL':
        parent_id = cur.get('parent-backup-id')
        if not parent_id:
            return '%s backup %s has no parent' % (cur.get('backup-mode'), cur.get('id'))
        if parent_id in seen:
            return 'parent chain of %s loops at %s' % (entry.get('id'), parent_id)
        seen.add(parent_id)
        parent = by_id.get(parent_id)
        if parent is None:
            return 'parent %s of backup %s is missing' % (parent_id, cur.get('id'))
        if parent.get('status') not in RESTORABLE:
            return 'parent %s of backup %s is %s' % (parent_id, cur.get('id'), parent.get('status'))
        cur = parent
    return None


def describe_running(backup_id, proc):
    """Words for a RUNNING entry's process, from ``running`` info (see Catalog.running_info)."""
    proc = proc or {}
    pid = proc.get('pid')
    if proc.get('alive'):
        return 'backup %s is RUNNING in live process %s' % (backup_id, pid)
    if pid is None:
        return 'backup %s is RUNNING but has no backup.pid (its process is gone)' % backup_id
    return 'backup %s is RUNNING but its process %s is gone%s' % (
        backup_id, pid, ' (pid %s now belongs to another program)' % pid if proc.get('reused') else '')


def analyse(backups, running):
    """Judge the chain.

    ``backups``: ``show`` entries of one instance. ``running``: {id: {pid,
    alive, reused}} for the RUNNING entries (liveness is checked by the caller).

    Returns a dict: ``newest`` entry or None; ``in_flight``: RUNNING entries
    whose process lives (another backup is running: never touch those);
    ``bad``: every ERROR/CORRUPT/ORPHAN/dead-RUNNING entry as {id, status,
    reason}; ``broken``: the newest entry is bad; ``broken_reason``.
    """
    backups = newest_first(backups)
    running = running or {}
    in_flight, bad = [], []
    for b in backups:
        status = b.get('status')
        if status == 'RUNNING':
            proc = running.get(b.get('id')) or {}
            if proc.get('alive'):
                in_flight.append(dict(id=b['id'], pid=proc.get('pid')))
            else:
                bad.append(dict(id=b['id'], status=status, reason=describe_running(b['id'], proc)))
        elif status in BROKEN:
            bad.append(dict(id=b['id'], status=status, reason='backup %s is %s' % (b['id'], status)))
    newest = backups[0] if backups else None
    bad_ids = [x['id'] for x in bad]
    broken = newest is not None and newest.get('id') in bad_ids
    return dict(
        newest=newest,
        in_flight=in_flight,
        bad=bad,
        broken=broken,
        broken_reason=bad[bad_ids.index(newest['id'])]['reason'] if broken else None,
    )


def descendants(backups, ids):
    """``ids`` and every backup built on one of them, directly or not: what ``delete -i`` removes."""
    gone = set(ids)
    changed = True
    while changed:
        changed = False
        for b in backups:
            if b.get('id') not in gone and b.get('parent-backup-id') in gone:
                gone.add(b['id'])
                changed = True
    return gone


def without(backups, ids):
    """``backups`` minus ``ids`` and every backup built on one of them.

    What ``delete`` leaves: deleting a backup deletes its incremental children.
    """
    gone = descendants(backups, ids)
    return [b for b in newest_first(backups) if b.get('id') not in gone]


def valid_parent(backups):
    """The newest OK/DONE backup whose chain is valid: what an incremental builds on."""
    by_id = dict((b.get('id'), b) for b in backups)
    for b in newest_first(backups):
        if b.get('status') in RESTORABLE and chain_problem(b, by_id) is None:
            return b
    return None


def start_epoch(entry):
    """When a backup started, in seconds since the epoch: its start-time, else its id.

    The id is the start time in base 36 (one-second resolution), so it stands
    in when start-time is missing or unreadable; None when neither reads.
    """
    m = _START_TIME.match((entry.get('start-time') or '').strip())
    if m:
        y, mo, d, h, mi, s = (int(x) for x in m.groups()[:6])
        offset = int(m.group(8)) * 3600 + int(m.group(9) or 0) * 60
        return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) - (offset if m.group(7) == '+' else -offset)
    key = id_key(entry.get('id'))
    return key if key >= 0 else None


def chain_of(entry, by_id):
    """``entry``'s chain, its FULL first, for an entry whose chain_problem is None."""
    chain = [entry]
    while chain[-1].get('backup-mode') != 'FULL':
        chain.append(by_id[chain[-1]['parent-backup-id']])
    return chain[::-1]


def full_due(chain, full_every, full_every_days, now):
    """Why the bounded chain needs a new FULL before another incremental on ``chain`` (FULL first), or None.

    ``full_every``: a FULL every that many backups, the FULL included (0: off);
    ``full_every_days``: a FULL once the chain's FULL is that many days old (0: off).
    Whichever comes first; both are named when both are due.
    """
    full = chain[0]
    why = []
    if full_every and len(chain) >= full_every:
        why.append('the chain since FULL %s already has %d incremental%s (full_every %d)'
                   % (full['id'], len(chain) - 1, '' if len(chain) == 2 else 's', full_every))
    started = start_epoch(full)
    if full_every_days and now is not None and started is not None:
        age = (now - started) / DAY_S
        if age >= full_every_days:
            why.append("the chain's FULL %s is %.1f days old (full_every_days %g)" % (full['id'], age, full_every_days))
    return ' and '.join(why) or None


def _incremental_reason(mode, chain, full_every, full_every_days, now):
    full, parent = chain[0], chain[-1]
    where = '%d of %d in this chain' % (len(chain) + 1, full_every) if full_every else \
        '%d in this chain (full_every off)' % (len(chain) + 1)
    started = start_epoch(full)
    age = '%.1f days old' % ((now - started) / DAY_S) if now is not None and started is not None else 'of unknown age'
    days = 'full_every_days %g' % full_every_days if full_every_days else 'full_every_days off'
    return '%s on %s: %s, whose FULL %s is %s (%s)' % (mode, parent['id'], where, full['id'], age, days)


def choose_mode(backup_mode, incremental_mode, backups, full_every=0, full_every_days=0, now=None):
    """(MODE, reason) for the next backup given the catalog ``backups``.

    With backup_mode auto, ``full_every``/``full_every_days`` bound the chain
    (see full_due); ``now`` is the time in seconds since the epoch.
    """
    backups = newest_first(backups)
    by_id = dict((b.get('id'), b) for b in backups)
    if backup_mode == 'full':
        return 'FULL', 'backup_mode is full'
    if backup_mode in INCREMENTAL_MODES:
        parent = valid_parent(backups)
        if parent is None:
            raise ValueError('backup_mode is %s but the catalog has no valid backup to build on '
                             '(an incremental needs an OK or DONE FULL with a valid chain): '
                             'use backup_mode=auto or full' % backup_mode)
        return backup_mode.upper(), 'backup_mode is %s; parent will be %s' % (backup_mode, parent['id'])
    incr = (incremental_mode or 'delta').upper()
    if not backups:
        return 'FULL', 'the catalog has no backup yet'
    newest = backups[0]
    if newest.get('status') not in RESTORABLE:
        return 'FULL', 'newest backup %s is %s, not OK or DONE' % (newest['id'], newest.get('status'))
    problem = chain_problem(newest, by_id)
    if problem:
        return 'FULL', problem
    chain = chain_of(newest, by_id)
    due = full_due(chain, full_every, full_every_days, now)
    if due:
        return 'FULL', 'FULL: ' + due
    return incr, _incremental_reason(incr, chain, full_every, full_every_days, now)


def prune_plan(backups, keep_id=None, running=None):
    """The ``delete -i`` commands that leave only the chain of a new FULL: [{id, with}], in order.

    Once the new FULL ``keep_id`` is OK, every backup older than it is an
    older chain (or what a failed run left): a FULL goes with its incrementals
    in one ``delete -i`` (pg_probackup deletes a backup's children with it),
    then whatever has no FULL left under it goes by its own id. ``keep_id``
    None: the FULL is still to be taken (check mode), so every backup is older.
    A RUNNING entry whose process lives (``running``) is never touched, nor
    anything it builds on.
    """
    running = running or {}
    limit = id_key(keep_id) if keep_id else None
    alive = set(bid for bid, proc in running.items() if proc.get('alive'))
    candidates = set(b['id'] for b in backups if b.get('id') and b['id'] != keep_id and b['id'] not in alive
                     and (limit is None or id_key(b['id']) < limit))
    oldest_first = sorted(candidates, key=id_key)
    by_id = dict((b.get('id'), b) for b in backups)
    plan, pending = [], set(candidates)
    for roots_first in (True, False):
        for bid in oldest_first:
            if bid not in pending or (roots_first and by_id[bid].get('backup-mode') != 'FULL'):
                continue
            gone = descendants(backups, [bid])
            if not gone <= candidates:
                continue  # it carries a backup that must stay
            plan.append(dict(id=bid, mode=by_id[bid].get('backup-mode'), status=by_id[bid].get('status'),
                             with_children=sorted(gone - set([bid]), key=id_key)))
            pending -= gone
    return plan


def pruned_ids(plan):
    """Every backup id a prune plan deletes, oldest first."""
    return sorted(set(x['id'] for x in plan) | set(c for x in plan for c in x['with_children']), key=id_key)


def delete_statuses(bad):
    """The ``delete --status`` values that clear ``bad`` entries, children first."""
    order = ('ORPHAN', 'ERROR', 'CORRUPT', 'RUNNING')
    present = set(x['status'] for x in bad)
    return [s for s in order if s in present]


def repair_commands(catalog, instance, bad):
    return ['pg_probackup delete -B %s --instance %s --status=%s' % (catalog, instance, s)
            for s in delete_statuses(bad)]


def plan_backup(backups, running, backup_mode, incremental_mode, on_broken_chain, catalog, instance,
                full_every=0, full_every_days=0, now=None):
    """Decide what a state=backup run does, before it does anything.

    Returns {recovery: None|'reset'|'repair', bad, broken_reason, mode, reason,
    remaining, prune, would_prune}; raises PgProbackupError when the run must
    stop (another backup in flight, a broken chain with on_broken_chain=fail,
    an incremental asked for with nothing to build on). ``prune``: the chain
    is bounded (backup_mode auto, full_every or full_every_days set) and this
    run takes a FULL, so once it is OK the older chains go; ``would_prune``:
    the prune plan as the catalog stands (see prune_plan).
    """
    a = analyse(backups, running)
    if a['in_flight']:
        f = a['in_flight'][0]
        raise PgProbackupError(
            'another backup of this catalog is running: backup %s of instance %s is RUNNING in live process %s; '
            'not touching it. Wait for it to end (or stop it) and run again.' % (f['id'], instance, f['pid']),
            in_flight=a['in_flight'])
    recovery = None
    remaining = newest_first(backups)
    if a['broken']:
        if on_broken_chain == 'fail':
            raise PgProbackupError(
                'the backup chain of instance %s in catalog %s is broken: %s. To delete the broken entries and '
                'go on from the newest valid backup, run with on_broken_chain=repair (it runs: %s); to empty the '
                'catalog and start over with a FULL, on_broken_chain=reset.'
                % (instance, catalog, a['broken_reason'], '; '.join(repair_commands(catalog, instance, a['bad']))),
                bad=a['bad'])
        recovery = on_broken_chain
        remaining = [] if recovery == 'reset' else without(backups, [x['id'] for x in a['bad']])
    try:
        if recovery == 'reset':
            mode, reason = 'FULL', 'catalog reset because the chain was broken (%s)' % a['broken_reason']
        else:
            mode, reason = choose_mode(backup_mode, incremental_mode, remaining, full_every, full_every_days, now)
            if recovery == 'repair':
                reason = 'broken entries deleted (%s); then %s' % (a['broken_reason'], reason)
    except ValueError as e:
        raise PgProbackupError(str(e))
    prune = backup_mode == 'auto' and mode == 'FULL' and bool(full_every or full_every_days)
    return dict(recovery=recovery, bad=a['bad'], broken_reason=a['broken_reason'], mode=mode, reason=reason,
                remaining=remaining, analysis=a, prune=prune,
                would_prune=prune_plan(remaining, None, running) if prune else [])


# -- host-side checks ----------------------------------------------------------

def catalog_state(host_path):
    """absent | empty | catalog | foreign | symlink | not_dir, for the catalog's host path."""
    state = dir_state(host_path)
    if state != 'not_empty':
        return state
    for sub in ('backups', 'wal'):
        try:
            if not stat.S_ISDIR(os.lstat(os.path.join(host_path, sub)).st_mode):
                return 'foreign'
        except FileNotFoundError:
            return 'foreign'
    return 'catalog'


def half_added_instance(host_catalog, instance):
    """The instance dirs a stopped ``add-instance`` left (its dirs made, its pg_probackup.conf not yet), or [].

    pg_probackup 2.5.15 then fails every command on the instance ("could not open file .../pg_probackup.conf")
    and add-instance refuses it ("backup directory already exists"). Empty dirs hold nothing: they are the
    ones returned, to remove before the instance is added again. Dirs that hold anything raise: nothing is
    deleted, the admin decides.
    """
    backups_dir = os.path.join(host_catalog, 'backups', instance)
    try:
        if not stat.S_ISDIR(os.lstat(backups_dir).st_mode) or os.path.lexists(
                os.path.join(backups_dir, 'pg_probackup.conf')):
            return []
    except FileNotFoundError:
        return []
    dirs = [d for d in (backups_dir, os.path.join(host_catalog, 'wal', instance)) if os.path.lexists(d)]
    held = [d for d in dirs if not stat.S_ISDIR(os.lstat(d).st_mode) or os.listdir(d)]
    if held:
        raise PgProbackupError(
            'instance %s of catalog %s has no pg_probackup.conf (an add-instance that was stopped, or a hand '
            'edit), and pg_probackup cannot read an instance without it; %s not empty. Put the file back from a '
            'copy of the catalog, or move the catalog away to start a new chain; nothing was deleted.'
            % (instance, host_catalog, ' and '.join(held) + (' is' if len(held) == 1 else ' are')))
    return dirs


def read_pid_file(path):
    try:
        with open(path) as f:
            text = f.read(64).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def running_info(host_catalog, instance, backups):
    """{id: {pid, alive, reused, pid_file}} for the RUNNING entries of ``backups``."""
    info = {}
    for b in backups:
        if b.get('status') != 'RUNNING':
            continue
        pid_file = os.path.join(host_catalog, 'backups', instance, b['id'], 'backup.pid')
        pid = read_pid_file(pid_file)
        state = pid_state(pid, 'pg_probackup')
        info[b['id']] = dict(pid=pid, alive=state == 'alive', reused=state == 'reused', pid_file=pid_file)
    return info


def remove_tree(path, keep_top=False, shell_root=None, allowed_roots=()):
    """Remove catalog directory ``path`` (with keep_top, only what is in it).

    The collection's staging rules apply (never /, a system dir or a symlink;
    ``allowed_roots`` as for the staging dir) and the removal is the staging
    dir's: through directory fds, never following a symlink, never leaving the
    catalog's filesystem. Raises OSError saying why when it refuses or fails.
    """
    why = refusal(path, allowed_roots, shell_root=shell_root)
    if why:
        raise OSError(errno.EPERM, why)
    try:
        result = clear_tree(path, remove_self=not keep_top, mount_points=mount_points_below(resolved_path(path)))
    except RemovalError as e:
        raise OSError(errno.EIO, str(e))
    if result.skipped_mounts:
        raise OSError(errno.EBUSY, 'left mount points in catalog %s alone: %s' % (
            path, ', '.join(result.skipped_mounts)))
    return result


# -- running pg_probackup ------------------------------------------------------

def lock_path(host_catalog):
    """The lock file beside the catalog (inside it, a reset would delete it); it exists only while held."""
    parent, name = os.path.split(os.path.normpath(host_catalog))
    return os.path.join(parent, '.%s.lock' % name)


class Catalog:
    """The pg_probackup commands on one catalog and instance, run through ``runner``.

    ``catalog`` and ``pgdata`` are paths as pg_probackup sees them (inside the
    chroot); ``host_catalog`` is where this process finds the catalog.
    """

    def __init__(self, runner, binary, catalog, instance, threads=None, conn_argv=None, conn_env=None):
        self.runner = runner
        self.binary = binary
        self.catalog = catalog
        self.instance = instance
        self.threads = threads
        self.conn_argv = conn_argv or []
        self.conn_env = conn_env or {}
        self.host_catalog = runner.host_path(catalog)
        self.warnings = []
        # The catalog dir this module makes: its owner (uid, gid; None keeps the module user's) and the
        # staging rules' allowed_roots for making and removing it.
        self.owner = (None, None)
        self.allowed_roots = ()
        # The Alation shell whose system dirs the staging rules guard too (the runner's chroot).
        self.shell_root = runner.chroot

    # The run's lease check (Heartbeat.check), set by the module; None: no lease to check.
    lease_check = None

    def check_lease(self, before):
        """Raise LeaseStop when the run's lease is lost, ``before`` saying what is then not done."""
        if self.lease_check is None:
            return
        try:
            self.lease_check()
        except LeaseLost as e:
            raise LeaseStop(stopped(e, before))

    def run(self, action, args, check=True, env=None):
        result = self.runner.run([self.binary] + list(args), env=env)
        if check and result['rc'] != 0:
            raise PgProbackupError(failure_message(action, result), result)
        self.note_warnings(result)
        return result

    def note_warnings(self, result):
        for w in warning_lines(result['stderr']):
            if w not in self.warnings:
                self.warnings.append(w)

    def _jobs(self):
        return ['-j', str(self.threads)] if self.threads else []

    def state(self):
        return catalog_state(self.host_catalog)

    def make_dir(self):
        """Make the missing catalog dir, 0700 and owned by the user pg_probackup runs as (so its init and backups
        may write there), under the staging rules. True when made."""
        why = refusal(self.host_catalog, self.allowed_roots, shell_root=self.shell_root)
        if why:
            raise PgProbackupError('not making catalog %s: %s' % (self.catalog, why))
        try:
            return make_dir(self.host_catalog, 0o700, *self.owner)
        except OSError as e:
            raise PgProbackupError('could not make catalog dir %s (%s on the host): %s. Check that its parent is a '
                                   'writable directory.' % (self.catalog, self.host_catalog, e.strerror or e))

    def remove(self):
        """Remove the catalog dir with everything in it (the staging rules; never through a symlink)."""
        remove_tree(self.host_catalog, shell_root=self.shell_root, allowed_roots=self.allowed_roots)

    def show_all(self):
        """The whole catalog as parsed JSON ([] when it is missing or not initialised)."""
        r = self.runner.run([self.binary, 'show', '-B', self.catalog, '--format=json'])
        if r['rc'] == 0:
            self.note_warnings(r)
            return parse_show(r['stdout'])
        if show_error_means_empty(r['stderr']):
            return []
        raise PgProbackupError(failure_message('show', r), r)

    def show(self):
        """(instance_exists, backups newest first) of our instance."""
        r = self.runner.run([self.binary, 'show', '-B', self.catalog, '--instance', self.instance, '--format=json'])
        if r['rc'] == 0:
            self.note_warnings(r)
            return True, instance_backups(parse_show(r['stdout']), self.instance)
        if show_error_means_empty(r['stderr']):
            return False, []
        raise PgProbackupError(failure_message('show', r), r)

    def configured_pgdata(self):
        r = self.run('show-config', ['show-config', '-B', self.catalog, '--instance', self.instance,
                                     '--format=json'], check=False)
        if r['rc'] != 0:
            return None
        try:
            return json.loads(r['stdout']).get('pgdata') or None
        except ValueError:
            return None

    def init(self):
        r = self.run('init', ['init', '-B', self.catalog])
        # Seen with 2.5.15: when it cannot create the catalog (parent not
        # writable by run_as) init still says "successfully initialized", exit 0.
        if self.state() != 'catalog':
            raise PgProbackupError(
                'pg_probackup init exited 0 but catalog %s was not created (no backups/ and wal/ in it): '
                'the catalog dir must be writable by the user pg_probackup runs as (run_as=%s)'
                % (self.catalog, self.runner.run_as or 'the module user'), r)

    def add_instance(self, pgdata):
        self.run('add-instance', ['add-instance', '-B', self.catalog, '-D', pgdata, '--instance', self.instance])

    def backup(self, mode, stream=True, pgdata=None, compress_algorithm=None, compress_level=None):
        """Run ``backup``; return (result, backup_id). Never raises on a non-zero exit."""
        args = ['backup', '-B', self.catalog, '--instance', self.instance, '-b', mode]
        if stream:
            args.append('--stream')
        args += self._jobs()
        if pgdata:
            args += ['-D', pgdata]
        if compress_algorithm:
            args += ['--compress-algorithm', compress_algorithm]
        if compress_level is not None:
            args += ['--compress-level', str(compress_level)]
        # We validate by id afterwards (and only when asked): not twice.
        args.append('--no-validate')
        args += self.conn_argv
        r = self.run('backup', args, check=False, env=self.conn_env)
        self.note_warnings(r)
        return r, backup_id_from_log(r['stderr'])

    def validate(self, backup_id):
        self.run('validate', ['validate', '-B', self.catalog, '--instance', self.instance, '-i', backup_id]
                 + self._jobs())

    def delete_status(self, status):
        self.check_lease('deleting the %s backups of catalog %s' % (status, self.catalog))
        self.run('delete', ['delete', '-B', self.catalog, '--instance', self.instance, '--status=%s' % status])

    def delete_id(self, backup_id):
        self.check_lease('deleting backup %s from catalog %s' % (backup_id, self.catalog))
        self.run('delete', ['delete', '-B', self.catalog, '--instance', self.instance, '-i', backup_id])

    def running(self, backups):
        return running_info(self.host_catalog, self.instance, backups)


# -- the states ------------------------------------------------------------------

def _refuse_odd_catalog(cat, state):
    if state == 'symlink':
        raise PgProbackupError('catalog %s is a symlink; symlinks are never followed here: give the real directory'
                               % cat.catalog)
    if state == 'not_dir':
        raise PgProbackupError('catalog %s exists and is not a directory: give a directory path' % cat.catalog)
    if state == 'foreign':
        raise PgProbackupError(
            'catalog %s exists, is not empty and is not a pg_probackup catalog (it has no backups/ and wal/): '
            'pg_probackup init would refuse it ("The backup catalog already exists and is not empty"). '
            'Give an empty or absent directory; nothing was deleted.' % cat.catalog)


def discard_failed(cat, backup_id):
    """Delete the entry a failed backup of this run left (ERROR, CORRUPT, dead RUNNING).

    Left in place it would make the next auto run see a broken chain and, with
    the default on_broken_chain=reset, throw away every good backup for what
    was maybe a passing outage; it also fails any instance-wide validate.
    Only an entry ``show`` reports as failed is deleted (never an OK one).
    """
    if not backup_id:
        return None
    try:
        dummy, backups = cat.show()
    except PgProbackupError:
        return dict(id=backup_id, deleted=False, error='could not read the catalog to check it')
    entry = next((b for b in backups if b.get('id') == backup_id), None)
    if entry is None:
        return None
    status = entry.get('status')
    dead_running = status == 'RUNNING' and not cat.running([entry]).get(backup_id, {}).get('alive')
    if status not in ('ERROR', 'CORRUPT') and not dead_running:
        return dict(id=backup_id, status=status, deleted=False)
    try:
        cat.delete_id(backup_id)
    except PgProbackupError as e:
        return dict(id=backup_id, status=status, deleted=False, error=e.msg)
    return dict(id=backup_id, status=status, deleted=True)


def discarded_note(discarded):
    if not discarded:
        return ''
    if discarded.get('deleted'):
        return ('. The %s entry %s it left was deleted, so the catalog stays usable'
                % (discarded.get('status'), discarded['id']))
    return '. The entry %s it left (%s) was not deleted: %s' % (
        discarded['id'], discarded.get('status'), discarded.get('error') or 'it is not a failed entry')


def _new_result():
    return dict(changed=False, backup=None, backups=[], mode_taken=None, reason=None, recovered={}, pruned=[],
                prune_error='')


def run_backup(cat, p, check_mode, now=None):
    """state=backup. ``p``: the module params. Returns the result; raises PgProbackupError.

    With ``p['fresh']`` the catalog goes first (as state=absent removes it) and the backup starts a new one.
    A missing catalog dir is made (``Catalog.make_dir``). The result carries the engines' one shape:
    ``engine``, ``mode``, ``reason``, ``backup_id``, ``recovered``, ``pruned``.
    """
    res = _new_result()
    res.update(engine='pg_probackup', mode=None, backup_id='', fresh_removed=False, made_catalog_dir=False)
    fresh = bool(p.get('fresh'))
    if fresh and not p.get('pgdata'):
        raise PgProbackupError('pgdata is required with fresh=true: the new catalog needs instance %s added '
                               '(pg_probackup add-instance -D PGDATA); nothing was removed' % cat.instance)
    state = cat.state()
    _refuse_odd_catalog(cat, state)
    half_added = half_added_instance(cat.host_catalog, cat.instance) if state == 'catalog' and not fresh else []
    if fresh:
        # Decided (and refused) as state=absent decides, before anything is touched; removed below.
        res['fresh_removed'] = remove_catalog(cat, True)
        instance_exists, backups = False, []
    elif half_added:
        instance_exists, backups = False, []
        res['recovered'] = dict(action='re-add', broken=[], deleted=[], removed=half_added)
    else:
        # A missing catalog or instance reads as empty (recorded errors of show).
        instance_exists, backups = cat.show()
    res['backups'] = [normalise(b) for b in backups]
    plan = plan_backup(backups, cat.running(backups), p['backup_mode'], p['incremental_mode'],
                       p['on_broken_chain'], cat.catalog, cat.instance, p.get('full_every') or 0,
                       p.get('full_every_days') or 0, time.time() if now is None else now)
    res.update(mode_taken=plan['mode'], mode=(plan['mode'] or '').upper() or None, reason=plan['reason'])
    if fresh:
        res['reason'] = 'fresh: a new catalog, so %s' % plan['reason']
    if plan['recovery']:
        gone = [b['id'] for b in backups] if plan['recovery'] == 'reset' else \
            sorted(set(b['id'] for b in backups) - set(b['id'] for b in plan['remaining']), key=id_key, reverse=True)
        res['recovered'] = dict(action=plan['recovery'], broken=plan['bad'], deleted=gone)
    reset = plan['recovery'] == 'reset'
    needs_init = reset or fresh or state in ('absent', 'empty')
    needs_instance = reset or not instance_exists
    pgdata = p.get('pgdata')
    if needs_instance and not pgdata and instance_exists:
        pgdata = cat.configured_pgdata()  # a reset re-adds the instance as it was
    if needs_instance and not pgdata:
        raise PgProbackupError('pgdata is required: instance %s must be added to catalog %s (pg_probackup '
                               'add-instance -D PGDATA); set pgdata to the data directory of the server'
                               % (cat.instance, cat.catalog))
    if check_mode:
        # What would go once the new FULL is OK: the catalog as it stands after the recovery.
        res['pruned'] = pruned_ids(plan['would_prune'])
        res['changed'] = True
        return res

    changed = []
    try:
        if res['fresh_removed']:
            remove_catalog(cat, False)
            changed.append(True)
        if fresh or state == 'absent':
            # Made here, once the plan holds: a refused run leaves no dir behind.
            res['made_catalog_dir'] = cat.make_dir()
            changed.append(res['made_catalog_dir'])
        if reset:
            # Empty the catalog but keep its directory (owner and mode stay as the admin made them).
            cat.check_lease('emptying catalog %s (on_broken_chain=reset)' % cat.catalog)
            remove_tree(cat.host_catalog, keep_top=True, shell_root=cat.shell_root, allowed_roots=cat.allowed_roots)
            changed.append(True)
        elif plan['recovery'] == 'repair':
            _repair(cat, plan, backups)
            changed.append(True)
        for path in half_added:
            cat.check_lease('removing the empty dir %s of a half-added instance' % path)
            try:
                os.rmdir(path)  # empty when it was read; a file come since stays, and so does the dir
            except OSError as e:
                raise PgProbackupError('could not remove %s, the empty dir of a half-added instance: %s; nothing '
                                       'in it was deleted' % (path, e.strerror or e))
            changed.append(True)
        if needs_init:
            cat.init()
            changed.append(True)
        if needs_instance:
            cat.add_instance(pgdata)
            changed.append(True)
        r, backup_id = cat.backup(plan['mode'], stream=p['stream'], pgdata=p.get('pgdata'),
                                  compress_algorithm=p.get('compress_algorithm'),
                                  compress_level=p.get('compression_level'))
        changed.append(True)
        if r['rc'] != 0:
            discarded = discard_failed(cat, backup_id)
            raise PgProbackupError(failure_message('backup', r) + discarded_note(discarded), r,
                                   discarded=discarded, backup_id=backup_id)
        if p['validate']:
            try:
                cat.validate(backup_id)
            except PgProbackupError as e:
                discarded = discard_failed(cat, backup_id)
                e.msg += discarded_note(discarded)
                e.extra.update(discarded=discarded, backup_id=backup_id)
                raise
        dummy, backups = cat.show()
        if plan['prune']:
            new = next((b for b in backups if b.get('id') == backup_id), {})
            if new.get('status') == 'OK':
                res['pruned'], backups, res['prune_error'] = _prune(cat, backup_id, backups)
            else:
                res['prune_error'] = ('the older chain is kept: the new FULL %s is %s, not validated (validate=%s); '
                                      'the next FULL that validates deletes it' % (backup_id, new.get('status'),
                                                                                   p['validate']))
    except PgProbackupError as e:
        e.extra.setdefault('changed', any(changed))
        e.extra.setdefault('recovered', res['recovered'])
        e.extra.setdefault('mode_taken', res['mode_taken'])
        raise
    res['changed'] = True
    res['backups'] = [normalise(b) for b in backups]
    res['backup'] = normalise(next((b for b in backups if b.get('id') == backup_id), None))
    res['backup_id'] = backup_id or ''
    return res


def _drop_reused_pid_files(running, ids):
    """pg_probackup trusts any live pid in backup.pid: a reused one would make
    delete wait 60 s and then skip the entry. Its owner is gone: drop it."""
    for bid, proc in running.items():
        if bid in ids and proc.get('reused') and proc.get('pid_file'):
            os.unlink(proc['pid_file'])


def _prune(cat, keep_id, backups):
    """Delete every chain older than the new FULL ``keep_id`` (OK by now) with ``delete -i``.

    Returns (ids deleted, the catalog's backups afterwards, error or ''). A
    failed delete does not fail the run: the new FULL is good and in the
    catalog; the next FULL that validates tries again.
    """
    running = cat.running(backups)
    plan = prune_plan(backups, keep_id, running)
    if not plan:
        return [], backups, ''
    wanted = pruned_ids(plan)
    cat.check_lease('pruning the older chain of catalog %s' % cat.catalog)
    _drop_reused_pid_files(running, wanted)
    error = ''
    for step in plan:
        try:
            cat.delete_id(step['id'])
        except LeaseStop:
            raise
        except PgProbackupError as e:
            error = e.msg
            break
    dummy, after = cat.show()
    left = set(b.get('id') for b in after)
    deleted = [bid for bid in wanted if bid not in left]
    if not error and len(deleted) < len(wanted):
        error = 'pg_probackup delete left %s in catalog %s' % (
            ', '.join(bid for bid in wanted if bid in left), cat.catalog)
    if error:
        error = ('the older chain was not all deleted (%s); the new FULL %s is fine, the next FULL that validates '
                 'tries again. Look with pg_probackup show -B %s --instance %s'
                 % (error, keep_id, cat.catalog, cat.instance))
    return deleted, after, error


def _repair(cat, plan, backups):
    bad_ids = [x['id'] for x in plan['bad']]
    cat.check_lease('repairing catalog %s' % cat.catalog)
    _drop_reused_pid_files(cat.running(backups), bad_ids)
    for status in delete_statuses(plan['bad']):
        cat.delete_status(status)
    dummy, backups = cat.show()
    left = [b['id'] for b in backups if b.get('id') in bad_ids]
    if left:
        raise PgProbackupError('on_broken_chain=repair: pg_probackup delete left the broken backup(s) %s in catalog '
                               '%s; look at them with pg_probackup show, or use on_broken_chain=reset'
                               % (', '.join(left), cat.catalog))


def run_show(cat, p):
    """state=show: the catalog as parsed JSON, and what the next backup would do."""
    res = dict(changed=False)
    state = cat.state()
    if state in ('symlink', 'not_dir'):
        _refuse_odd_catalog(cat, state)
    catalog_json = cat.show_all()
    backups = instance_backups(catalog_json, cat.instance)
    running = cat.running(backups)
    a = analyse(backups, running)
    would_prune = []
    try:
        plan = plan_backup(backups, running, p['backup_mode'], p['incremental_mode'], p['on_broken_chain'],
                           cat.catalog, cat.instance, p.get('full_every') or 0, p.get('full_every_days') or 0,
                           time.time())
        next_mode, reason, would_prune = plan['mode'], plan['reason'], pruned_ids(plan['would_prune'])
    except PgProbackupError as e:
        next_mode, reason = None, e.msg
    res.update(catalog=catalog_json, catalog_state=state,
               instance_exists=any(i.get('instance') == cat.instance for i in catalog_json),
               backups=[normalise(b) for b in backups], backup=normalise(backups[0]) if backups else None,
               in_flight=a['in_flight'], broken=a['broken'], bad=a['bad'],
               next_mode=next_mode, reason=reason, next_pruned=would_prune)
    return res


def run_validate(cat, check_mode):
    res = _new_result()
    dummy, backups = cat.show()
    running = cat.running(backups)
    target = next((b for b in backups if b.get('status') in RESTORABLE), None)
    if target is None:
        seen = ', '.join('%s %s' % (b['id'], b.get('status')) for b in backups) or 'no backups'
        raise PgProbackupError('catalog %s has no OK or DONE backup of instance %s to validate (%s)'
                               % (cat.catalog, cat.instance, seen))
    in_flight = analyse(backups, running)['in_flight']
    res['reason'] = 'newest OK or DONE backup is %s' % target['id']
    if check_mode:
        res['changed'] = target.get('status') == 'DONE'
        res['backup'] = normalise(target)
        res['backups'] = [normalise(b) for b in backups]
        res['in_flight'] = in_flight
        return res
    try:
        cat.validate(target['id'])
    finally:
        dummy, after = cat.show()
        res['backups'] = [normalise(b) for b in after]
        res['backup'] = normalise(next((b for b in after if b.get('id') == target['id']), None))
    res['changed'] = (res['backup'] or {}).get('status') != target.get('status')
    return res


def live_pid_files(host_catalog):
    """[(backup dir, pid)] of backups in any instance whose backup.pid names a live pg_probackup."""
    found = []
    backups_dir = os.path.join(host_catalog, 'backups')
    try:
        instances = os.listdir(backups_dir)
    except OSError:
        return found
    for inst in instances:
        try:
            ids = os.listdir(os.path.join(backups_dir, inst))
        except OSError:
            continue
        for bid in ids:
            pid = read_pid_file(os.path.join(backups_dir, inst, bid, 'backup.pid'))
            if pid_state(pid, 'pg_probackup') == 'alive':
                found.append((os.path.join(inst, bid), pid))
    return found


def remove_catalog(cat, check_mode):
    """Remove the catalog dir, refusing one that is no catalog and one a backup runs in (state=absent, and
    fresh=true before its backup). True when there was one to remove."""
    state = cat.state()
    if state == 'absent':
        return False
    _refuse_odd_catalog(cat, state)
    live = live_pid_files(cat.host_catalog)
    if live:
        raise PgProbackupError('not removing catalog %s: a backup is running in it (%s)' % (
            cat.catalog, ', '.join('%s: pid %s' % x for x in live)))
    if not check_mode:
        cat.check_lease('removing catalog %s' % cat.catalog)
        cat.remove()
    return True


def run_absent(cat, check_mode):
    return dict(changed=remove_catalog(cat, check_mode))


# -- the binary, checked before the run -----------------------------------------------

# "pg_probackup 2.5.15 (PostgreSQL 15.20 (Debian 15.20-0+deb12u1))", what --version prints.
_VERSION_LINE = re.compile(r'^\s*pg_probackup\S*\s+(?P<version>\d[\w.]*)(?:.*?\(PostgreSQL (?P<pg>\d+(?:\.\d+)?))?')
BINARY_HINT = 'Install pg_probackup or set binary to its path.'


def locate(runner, binary=None, hint=BINARY_HINT):
    """pg_probackup's path as the runner's commands see it (the same lookup for every caller); else
    PgProbackupError saying where it looked."""
    found, searched = find_program(runner, binary or 'pg_probackup')
    if not found:
        raise PgProbackupError(not_found(runner, binary or 'pg_probackup', searched, hint))
    return found


def parse_version(text):
    """(pg_probackup's version, the PostgreSQL major it was built for, or None) of ``--version``'s output;
    None when the output is not pg_probackup's."""
    for line in (text or '').splitlines():
        m = _VERSION_LINE.match(line)
        if m:
            return m.group('version'), pg_major(m.group('pg'))
    return None


def pg_major(version):
    """The major of a PostgreSQL version: ``15.20`` -> ``15``, ``9.6.24`` -> ``9.6``; a server_version_num too
    (``150020`` -> ``15``, ``90624`` -> ``9.6``). None for nothing."""
    text = str(version or '').strip()
    if not text:
        return None
    if text.isdigit() and len(text) >= 5:
        num = int(text)
        return str(num // 10000) if num >= 100000 else '%d.%d' % (num // 10000, num // 100 % 100)
    parts = text.split('.')
    return parts[0] if int(parts[0]) >= 10 or len(parts) == 1 else '.'.join(parts[:2])


def check_binary(runner, binary=None, server_version_num=None, setting='binary'):
    """What the backup step would meet, found before anything is touched: the binary is there (as
    ``locate`` finds it), it runs (``--version``), and it was built for the server's PostgreSQL major
    (pg_probackup refuses any other). ``setting`` names the option that sets the binary, for the messages.
    Returns {binary, version, pg_major}; PgProbackupError saying what to do."""
    where = ' inside the Alation shell' if runner.chroot not in (None, '', '/') else ''
    hint = 'Install pg_probackup%s, or set %s to its path%s.' % (where, setting, ' there' if where else '')
    path = locate(runner, binary, hint)
    result = runner.run([path, '--version'])
    seen = parse_version(result['stdout']) or parse_version(result['stderr'])
    if result['rc'] != 0:
        failure = command_failure('%s --version' % path, result['rc'], result['stderr'] or result['stdout'])
        raise PgProbackupError('%s. %s' % (failure, hint), result)
    if not seen:
        raise PgProbackupError('%s is not pg_probackup: --version printed %r. %s'
                               % (path, (result['stdout'] or result['stderr']).strip()[:200], hint), result)
    version, built_for = seen
    server = pg_major(server_version_num)
    if built_for and server and built_for != server:
        raise PgProbackupError(
            '%s (pg_probackup %s) is built for PostgreSQL %s, but the server runs PostgreSQL %s, and pg_probackup '
            'backs up only the major it was built for: install the pg_probackup build for PostgreSQL %s '
            '(pg_probackup-%s)%s and set %s to it' % (path, version, built_for, server, server, server, where,
                                                      setting), result)
    return dict(binary=path, version=version, pg_major=built_for)
