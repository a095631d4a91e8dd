# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Who else is at work in the staging dirs: a look through /proc.

Alation's own backup uses the same staging dir and pg staging dir as this
collection; a run that empties them under it destroys the backup it is
packing. Before anything is touched the backup looks for a pg_probackup whose
catalog (``-B``/``--backup-path``, or ``BACKUP_PATH``) is the pg staging dir,
as seen from that process's own root (inside the Alation shell or not), and
for any process whose cwd, root or an open file lies in a staging dir.
Processes we cannot look at (another user's, when not root) are passed over.
"""

import os

PROC = '/proc'
PG_PROBACKUP = 'pg_probackup'


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


def _link(path):
    """The target of a /proc link without the kernel's " (deleted)" mark, or None."""
    try:
        target = os.readlink(path)
    except OSError:
        return None
    return target[:-len(' (deleted)')] if target.endswith(' (deleted)') else target


def within(path, dirs):
    """The first of ``dirs`` that ``path`` is or lies under, or None."""
    if not path or not path.startswith('/'):
        return None
    for d in dirs:
        if path == d or path.startswith(d.rstrip('/') + '/'):
            return d
    return None


def catalog_arg(argv, environ=None):
    """The catalog a pg_probackup command line names (``-B``, ``--backup-path``, ``BACKUP_PATH``), or None.

    None too when ``argv`` is not pg_probackup's (by its program name,
    ``pg_probackup`` or ``pg_probackup-15``).
    """
    if not argv:
        return None
    if len(argv) == 1 and ' ' in argv[0]:
        # A process that rewrote its title: one string, words split by spaces.
        argv = argv[0].split()
    if not os.path.basename(argv[0]).startswith(PG_PROBACKUP):
        return None
    found = None
    args = iter(argv[1:])
    for arg in args:
        if arg in ('-B', '--backup-path'):
            found = next(args, None)
        elif arg.startswith('--backup-path='):
            found = arg.split('=', 1)[1]
        elif arg.startswith('-B') and not arg.startswith('--'):
            found = arg[2:]
    if found is None and environ:
        found = environ.get('BACKUP_PATH')
    return found or None


def ancestors(pid, proc=PROC):
    """``pid`` and its parents up to init: the processes of this run, as far as the module can tell."""
    pids = []
    while pid > 0 and pid not in pids:
        pids.append(pid)
        try:
            stat = _read(os.path.join(proc, str(pid), 'stat')).decode('utf-8', 'replace')
            pid = int(stat.rsplit(')', 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _environ(pid, proc):
    try:
        data = _read(os.path.join(proc, str(pid), 'environ')).decode('utf-8', 'replace')
    except OSError:
        return {}
    return dict(item.split('=', 1) for item in data.split('\0') if '=' in item)


def _host_path(pid, path, proc):
    """``path`` as process ``pid`` names it, as a host path (through its root, or its cwd when relative)."""
    base = _link(os.path.join(proc, str(pid), 'root' if path.startswith('/') else 'cwd'))
    if not base:
        return None
    return os.path.normpath(os.path.join(base, path.lstrip('/')))


def describe(found):
    """One process as messages name it: pid, command line, user, and why."""
    return 'pid %d (%s, uid %d) %s' % (found['pid'], found['cmdline'] or found['name'], found['uid'], found['why'])


def scan(staging_dirs, catalogs, exclude=(), proc=PROC):
    """Processes at work in ``staging_dirs`` or running pg_probackup on one of ``catalogs`` (host paths).

    ``exclude`` holds this run's pids. Returns a list of dicts: pid, name,
    cmdline, uid and why (what ties it to which dir), in pid order.
    """
    def real(paths):
        return [os.path.realpath(p) for p in paths if p]
    staging_dirs, catalogs = real(staging_dirs), real(catalogs)
    found = []
    try:
        pids = sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    except OSError:
        return found
    for pid in pids:
        if pid in exclude:
            continue
        base = os.path.join(proc, str(pid))
        try:
            argv = [a.decode('utf-8', 'replace') for a in _read(os.path.join(base, 'cmdline')).split(b'\0')]
            name = _read(os.path.join(base, 'comm')).decode('utf-8', 'replace').strip()
            uid = os.stat(base).st_uid
        except OSError:
            # Gone meanwhile.
            continue
        while argv and argv[-1] == '':
            argv.pop()
        if not argv:
            # A kernel thread.
            continue
        why = []
        catalog = catalog_arg(argv, _environ(pid, proc) if PG_PROBACKUP in argv[0] else None)
        if catalog:
            where = _host_path(pid, catalog, proc)
            hit = where and (within(where, catalogs) or within(os.path.realpath(where), catalogs)
                             or any(within(c, [where]) for c in catalogs))
            if hit:
                why.append('runs pg_probackup on the pg staging dir (catalog %s)' % catalog)
        uses = []
        for what, link in (('cwd', 'cwd'), ('root', 'root')):
            target = _link(os.path.join(base, link))
            d = within(target, staging_dirs)
            if d:
                uses.append('has its %s %s in %s' % (what, target, d))
        try:
            fds = os.listdir(os.path.join(base, 'fd'))
        except OSError:
            fds = []
        for fd in fds:
            target = _link(os.path.join(base, 'fd', fd))
            d = within(target, staging_dirs)
            if d:
                uses.append('has %s open in %s' % (target, d))
                break
        why.extend(uses)
        if why:
            found.append(dict(pid=pid, name=name, cmdline=' '.join(argv)[:200], uid=uid, why='; '.join(why)))
    return found
