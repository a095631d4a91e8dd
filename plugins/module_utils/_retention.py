# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Retention of the archives in the backup storage dir: which go, and removing them.

Only files named as this collection names archives (``_archive_names``), and
their ``.sha256``, are ever candidates: temporary files (hidden, being
written), foreign files and directories never are. An archive goes only when
both rules allow it: it is not among the ``keep_count`` newest, and (when
``keep_days`` is set) it is older than ``keep_days`` by the time in its name.
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


def plan(directory, keep_count, keep_days=0, suffix=DEFAULT_SUFFIX, make_room_for=0, now=None, protect=()):
    """What retention removes from ``directory``; nothing is touched.

    ``make_room_for``: archives about to be written count among the newest
    already (the space check plans room for the next archive). ``protect``:
    archives (names or paths) never removed, counted toward ``keep_count`` (the
    one this run wrote). Returns a dict: ``remove`` (archives and their .sha256, oldest
    first, each ``{path, bytes, why}``), ``orphans`` (lone .sha256 files),
    ``kept`` (archive paths), ``newest``, ``future`` (archives named in the
    future, left alone, each ``{path, why}``) and ``refused`` (why no archive
    may go, or None).
    """
    return plan_listing(directory, listing(directory), keep_count, keep_days, suffix, make_room_for, now, verify,
                        protect)


def plan_listing(directory, files, keep_count, keep_days=0, suffix=DEFAULT_SUFFIX, make_room_for=0, now=None,
                 verify_newest=None, protect=()):
    """The retention decision over a listing, wherever it was taken (this host, or a backup host over ssh).

    ``files`` maps each name in ``directory`` to ``{size, mtime}`` (mtime
    optional) for a regular file, or None for anything else (never a
    candidate). ``verify_newest(path)`` returns None when the newest archive
    matches its .sha256, else why not; nothing goes without it saying so.
    Paths are ``directory`` joined with a name by ``/``. ``protect`` names
    archives (by name or path) that are never removed, whatever their names
    say, and count toward ``keep_count``; archives named in the future (by ``now``) are
    never candidates, never the newest and not counted. Returns what ``plan``
    returns.
    """
    if keep_count < 1:
        raise HostError('keep_count=%s: keep at least 1 archive (the newest that verifies is never removed)'
                        % keep_count)
    if keep_days < 0:
        raise HostError('keep_days=%s must be 0 (off) or more days' % keep_days)
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
    result = dict(remove=[], orphans=orphans, kept=[path_of(n) for n in archives],
                  newest=path_of(archives[-1]) if archives else None, refused=None,
                  future=[dict(path=path_of(n), why=future_why(n, now)) for n in sorted(future)])
    if not archives:
        return result
    newest = path_of(archives[-1])
    problem = verify_newest(newest) if verify_newest else 'no way to verify it was given'
    if problem:
        result['refused'] = ('the newest archive %s does not match its .sha256 (%s): nothing older is removed '
                             'until a newer archive verifies' % (newest, problem))
        return result
    keep_newest = max(0, keep_count - make_room_for)
    # What this run wrote is never a candidate, but it counts toward keep_count wherever its name ranks it (a
    # clock that jumped back names it before older archives): the next oldest goes in its place.
    candidates = [n for n in archives[:-1] if n not in protected][:max(0, len(archives) - keep_newest)]
    kept = []
    for name in archives:
        if name not in candidates:
            kept.append(path_of(name))
            continue
        age_days = (now - archive_time(name)) / DAY
        if keep_days and age_days <= keep_days:
            kept.append(path_of(name))
            continue
        why = 'beyond the %d newest (keep_count)' % keep_count
        if keep_days:
            why += ' and %.1f days old, older than keep_days %s' % (age_days, keep_days)
        result['remove'].append(entry(name, why))
        if files.get(name + '.sha256') is not None:
            result['remove'].append(entry(name + '.sha256', 'the .sha256 of a removed archive'))
    result['kept'] = kept
    return result


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
