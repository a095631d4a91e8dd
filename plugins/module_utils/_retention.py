# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention of the archives in the backup storage dir: which go, and removing them.

Only files named as this collection names archives (``_archive_names``), and
their ``.sha256``, are ever candidates: temporary files (hidden, being
written), foreign files and directories never are. An archive stays when any
rule keeps it (``RULES``, one dict that the local retention, the space check,
the off-host copy and the object store pass through unchanged): it is among
the ``keep_count`` newest, younger than ``keep_days``, the newest of one of the
last ``keep_daily`` days, ``keep_weekly`` ISO weeks or ``keep_monthly`` months
that have an archive, or pinned (``keep_pinned`` names it, or an
``<archive>.keep`` file stands beside it; pinned archives are not counted
toward ``keep_count``). Days, weeks and months are UTC, by the time in the
archive's name: the one time every copy of an archive carries alike (a copy's
mtime is when it was copied), the one the archives are named and sorted by.
The newest archive must match its ``.sha256`` (size and hash) before anything
older goes, and is itself never removed, so at least one verified archive is
always left. A ``.sha256`` whose archive is gone is removed.

A name is only what some clock said. The archives a run protects (the one it
just wrote) are never removed, wherever their names rank them (a clock that
jumped back names them before older ones), and count toward ``keep_count``
there: the next oldest goes in their place. Archives named in the
future (``_archive_names.is_future``) are left alone: neither removed, nor the
newest, nor counted toward ``keep_count``; ``plan`` names them in ``future``.

Standard library only.
"""

import datetime
import os
import posixpath
import stat
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_names import (
    ARCHIVE_RE, DEFAULT_SUFFIX, archive_sort_key, archive_time, future_why, is_future, read_sidecar, sha256_of)
from ansible_collections.alation.backup.plugins.module_utils._host import HostError, fsync_dir

DAY = 86400


def verify(path):
    """None when ``path`` matches its .sha256 (size recorded at publish and hash), else why not."""
    name = os.path.basename(path)
    try:
        digest, size = read_sidecar(path + '.sha256', name)
    except ValueError as e:
        return str(e)
    actual = os.path.getsize(path)
    if size is not None and size != actual:
        return 'it has %d bytes, its .sha256 recorded %d at publish' % (actual, size)
    if sha256_of(path) != digest:
        return 'it does not hash to the sha256 its .sha256 records'
    return None


def listing(directory):
    """``{name: {size, mtime} or None}`` for the entries of ``directory``: None for anything not a regular file."""
    found = {}
    for name in os.listdir(directory):
        try:
            st = os.lstat(os.path.join(directory, name))
        except FileNotFoundError:
            continue
        found[name] = dict(size=st.st_size, mtime=st.st_mtime) if stat.S_ISREG(st.st_mode) else None
    return found


# The rules of one retention, as the modules take them (one dict, passed through unchanged to the plan): an archive
# stays when ANY of them keeps it.
RULES = dict(keep_count=0, keep_days=0, keep_daily=0, keep_weekly=0, keep_monthly=0, keep_pinned=())
TIERS = (('keep_daily', 'daily', 'days'), ('keep_weekly', 'weekly', 'ISO weeks'), ('keep_monthly', 'monthly', 'months'))
# An archive with a file of this name beside it (``<archive>.keep``) is pinned: never removed.
PIN_EXT = '.keep'


def rules_argument_spec():
    """The module options of the rules beyond keep_count and keep_days (their descriptions differ per module):
    the doc fragment ``alation.backup.retention_rules`` documents them."""
    return dict(keep_daily=dict(type='int', default=0), keep_weekly=dict(type='int', default=0),
                keep_monthly=dict(type='int', default=0), keep_pinned=dict(type='list', elements='str', default=[]))


def rules_from(params):
    """The rules dict out of a module's params (any of RULES' keys it has)."""
    return dict((key, params[key]) for key in RULES if params.get(key) is not None)


def check_rules(rules):
    """``rules`` with every rule filled in (RULES' defaults), or HostError naming the value that is wrong."""
    unknown = sorted(set(rules or {}) - set(RULES))
    if unknown:
        raise HostError('unknown retention rule(s) %s: the rules are %s' % (', '.join(unknown), ', '.join(sorted(RULES))))
    full = dict(RULES, **(rules or {}))
    for key in ('keep_count', 'keep_days') + tuple(t[0] for t in TIERS):
        try:
            full[key] = int(full[key] or 0)
        except (TypeError, ValueError):
            raise HostError('%s=%r must be a whole number' % (key, full[key]))
    if full['keep_count'] < 1:
        raise HostError('keep_count=%s: keep at least 1 archive (the newest that verifies is never removed)'
                        % full['keep_count'])
    if full['keep_days'] < 0:
        raise HostError('keep_days=%s must be 0 (off) or more days' % full['keep_days'])
    for key, dummy, unit in TIERS:
        if full[key] < 0:
            raise HostError('%s=%s must be 0 (off) or more %s' % (key, full[key], unit))
    pins = full['keep_pinned'] or ()
    if isinstance(pins, str):
        pins = [pins]
    for pin in pins:
        if not isinstance(pin, str) or not ARCHIVE_RE.match(posixpath.basename(pin)):
            raise HostError('keep_pinned: %r is not an archive name (<YYYYMMDDHHMM>_<version>_<suffix>.tar.gz[.gpg]): '
                            'list the names of the archives to keep forever' % (pin,))
    full['keep_pinned'] = sorted(set(posixpath.basename(pin) for pin in pins))
    return full


def off_with_tiers(rules):
    """With ``keep_count`` 0 (retention off, every archive kept), why a tier that is set would do nothing, or None."""
    rules = rules or {}
    if rules.get('keep_count'):
        return None
    tiers = ['%s=%s' % (key, rules[key]) for key, dummy, unit in TIERS if rules.get(key)]
    if not tiers:
        return None
    return ('%s: keep_count=0 turns retention off (every archive is kept), so the tiers would change nothing; set '
            'keep_count to at least 1 (alation_backup_keep_count), or the tiers to 0' % ', '.join(tiers))


def period(tier, when):
    """The UTC day (``2026-12-01``), ISO week (``2026-W49``) or month (``2026-12``) the epoch time ``when`` is in."""
    day = datetime.datetime.fromtimestamp(when, datetime.timezone.utc)
    if tier == 'daily':
        return day.strftime('%Y-%m-%d')
    if tier == 'weekly':
        iso = day.isocalendar()
        return '%04d-W%02d' % (iso[0], iso[1])
    return day.strftime('%Y-%m')


def plan(directory, rules, suffix=DEFAULT_SUFFIX, make_room_for=0, now=None, protect=()):
    """What retention removes from ``directory``; nothing is touched.

    ``rules``: a dict of RULES (``keep_count`` at least 1; the others 0 or
    empty for off); an archive stays when any of them keeps it.
    ``make_room_for``: archives about to be written count among the newest
    already (the space check plans room for the next archive). ``protect``:
    archives (names or paths) never removed, counted toward ``keep_count`` (the
    one this run wrote). Returns a dict: ``remove`` (archives and their .sha256, oldest
    first, each ``{path, bytes, why}``), ``orphans`` (lone .sha256 files),
    ``kept`` (each archive kept, oldest first, as ``{path, rules}``: the rules
    that keep it), ``newest``, ``future`` (archives named in the future, left
    alone, each ``{path, why}``) and ``refused`` (why no archive may go, or None).
    """
    return plan_listing(directory, listing(directory), rules, suffix, make_room_for, now, verify, protect)


def plan_listing(directory, files, rules, suffix=DEFAULT_SUFFIX, make_room_for=0, now=None, verify_newest=None,
                 protect=()):
    """The retention decision over a listing, wherever it was taken (this host, a backup host over ssh, a bucket).

    ``files`` maps each name in ``directory`` to ``{size, mtime}`` (mtime
    optional) for a regular file, or None for anything else (never a
    candidate). ``rules``: as ``plan`` takes them. ``verify_newest(path)``
    returns None when the newest archive matches its .sha256, else why not;
    nothing goes without it saying so. Paths are ``directory`` joined with a
    name by ``/``. ``protect`` names archives (by name or path) that are never
    removed, whatever their names say, and count toward ``keep_count``;
    archives named in the future (by ``now``) are never candidates, never the
    newest and not counted. Pinned archives (``keep_pinned``, or a
    ``<archive>.keep`` in the listing) are never removed and not counted toward
    ``keep_count``. Each archive's time, for ``keep_days`` and the tiers, is
    the UTC time in its name. Returns what ``plan`` returns.
    """
    rules = check_rules(rules)
    now = time.time() if now is None else now

    def path_of(name):
        return posixpath.join(directory, name)

    def entry(name, why):
        return dict(path=path_of(name), bytes=(files.get(name) or {}).get('size', 0), why=why)

    orphans = []
    for name in sorted(files):
        stem = name[:-len('.sha256')]
        if name.endswith('.sha256') and ARCHIVE_RE.match(stem) and stem not in files and files[name] is not None \
                and not is_future(stem, now):
            orphans.append(entry(name, 'a .sha256 whose archive is gone'))
    protected = set(posixpath.basename(p) for p in protect or ())
    found = []
    future = []
    for name, info in files.items():
        m = ARCHIVE_RE.match(name)
        if info is None or not m or m.group('suffix') != suffix:
            continue
        if name not in protected and is_future(name, now):
            future.append(name)
            continue
        found.append((archive_sort_key(name, info.get('mtime', 0.0)), name))
    archives = [name for dummy, name in sorted(found)]
    result = dict(remove=[], orphans=orphans, kept=[], newest=path_of(archives[-1]) if archives else None,
                  refused=None, future=[dict(path=path_of(n), why=future_why(n, now)) for n in sorted(future)])
    if not archives:
        return result
    newest = archives[-1]
    problem = verify_newest(path_of(newest)) if verify_newest else 'no way to verify it was given'
    if problem:
        result['refused'] = ('the newest archive %s does not match its .sha256 (%s): nothing older is removed '
                             'until a newer archive verifies' % (path_of(newest), problem))
    why_kept = keeping(archives, files, rules, protected, make_room_for, now)
    why_kept[newest].insert(0, 'newest' if problem else 'newest good')
    for name in archives:
        if why_kept[name] or problem:
            result['kept'].append(dict(path=path_of(name), rules=why_kept[name] or ['the newest does not verify']))
            continue
        result['remove'].append(entry(name, why_removed(name, rules, now)))
        if files.get(name + '.sha256') is not None:
            result['remove'].append(entry(name + '.sha256', 'the .sha256 of a removed archive'))
    return result


def keeping(archives, files, rules, protected, make_room_for=0, now=None):
    """``{name: [the rules that keep it]}`` for ``archives`` (oldest first, none in the future); the newest good
    archive is the caller's. ``make_room_for`` archives about to be written at ``now`` count among the newest and
    take the day, week and month of ``now``."""
    why = dict((name, []) for name in archives)
    pins = set(rules['keep_pinned'])
    pinned = set()
    for name in archives:
        if name in protected:
            why[name].append('this run')
        if name + PIN_EXT in files:
            why[name].append('pinned (.keep)')
            pinned.add(name)
        elif name in pins:
            why[name].append('pinned (keep_pinned)')
            pinned.add(name)
    # keep_count: pinned archives are not counted; the newest and what this run wrote count first, wherever their
    # names rank them (a clock that jumped back names this run's archive before older ones): the next oldest goes.
    counted = [n for n in reversed(archives) if n not in pinned]
    first = [n for n in counted if n == archives[-1] or n in protected]
    for name in (first + [n for n in counted if n not in first])[:max(0, rules['keep_count'] - make_room_for)]:
        why[name].append('count')
    if rules['keep_days']:
        for name in archives:
            if (now - archive_time(name)) / DAY <= rules['keep_days']:
                why[name].append('days')
    # The tiers: the newest archive of each of the last N days (ISO weeks, months) that have an archive, in UTC by
    # the time in its name, as restic, borg and Proxmox count them (backups that stopped for a while are not all
    # aged out at once).
    for key, tier, dummy in TIERS:
        if not rules[key]:
            continue
        taken = set([period(tier, now)]) if make_room_for else set()
        for name in reversed(archives):
            label = period(tier, archive_time(name))
            if label in taken:
                continue
            if len(taken) >= rules[key]:
                break
            taken.add(label)
            why[name].append('%s %s' % (tier, label))
    return why


def why_removed(name, rules, now):
    """Why ``name`` goes: each rule that is on, and why it does not keep it."""
    why = 'beyond the %d newest (keep_count)' % rules['keep_count']
    if rules['keep_days']:
        why += ' and %.1f days old, older than keep_days %s' % ((now - archive_time(name)) / DAY, rules['keep_days'])
    tiers = ['%d %s (%s)' % (rules[key], unit, key) for key, dummy, unit in TIERS if rules[key]]
    if tiers:
        why += '; not the newest of one of the last %s' % ', '.join(tiers)
    return why


def future_warning(planned):
    """What to tell about the archives ``plan`` found named in the future, or None. The same text for the same
    archives (no clock reading in it), so Ansible shows it once however many steps plan retention."""
    if not planned['future']:
        return None
    return ('%d archive(s) named more than an hour ahead of this host\'s clock are left alone, neither the newest nor '
            'counted toward keep_count: %s. A clock ran ahead (or this one jumped back): set the clock right (NTP), '
            'then move or remove them by hand once you know what they hold' % (
                len(planned['future']), ', '.join(f['path'] for f in planned['future'])))


def apply(planned, check=None):
    """Remove what ``plan`` chose: each archive before its .sha256 (a cut-short run never leaves an archive
    that looks unsealed and would be sealed again), then the orphans. Returns the entries removed.

    ``check`` (the run's lease check) is called before each removal: what it raises stops retention there.
    """
    removed = []
    for entry in planned['remove'] + planned['orphans']:
        if check is not None:
            check()
        try:
            os.unlink(entry['path'])
        except FileNotFoundError:
            continue
        except OSError as e:
            raise HostError('could not remove %s: %s. Removed so far: %s. Check the permissions of the backup '
                            'storage dir.' % (entry['path'], e, ', '.join(r['path'] for r in removed) or 'nothing'))
        removed.append(entry)
    if removed:
        fsync_dir(os.path.dirname(removed[0]['path']))
    return removed
