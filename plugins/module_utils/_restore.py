# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Bring an Alation backup archive back: find it, check it, unpack it, rebuild PGDATA.

Pure functions and small host-side helpers shared by the modules of the
restore role (archive_info, archive_extract, pgdata_restore, temp_postgres).
Standard library only.
"""

import datetime
import hashlib
import json
import os
import re
import shlex
import socket
import stat
import tarfile

from ansible_collections.alation.backup.plugins.module_utils._archive import MANIFEST_NAME, scan_sources
from ansible_collections.alation.backup.plugins.module_utils._archive_names import list_archives  # noqa: F401
from ansible_collections.alation.backup.plugins.module_utils._host import HostError, free_bytes, pid_alive, tree_bytes  # noqa: F401
from ansible_collections.alation.backup.plugins.module_utils._host import check_space as _check_space
from ansible_collections.alation.backup.plugins.module_utils._host import make_private_dir as _make_private_dir
from ansible_collections.alation.backup.plugins.module_utils._host import write_file
from ansible_collections.alation.backup.plugins.module_utils._runner import join_argv, wrap_argv
from ansible_collections.alation.backup.plugins.module_utils._staging import RemovalError, clear_tree, dir_state
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

SHA256_LINE_RE = re.compile(r'^(?P<hex>[0-9a-fA-F]{64}) [ *](?P<name>.+)$')
HASH_BLOCK = 1024 * 1024
# What a restore into a non-empty place renames the old one to.
ASIDE_FORMAT = '%s.before-restore-%s'
ENGINES = ('pg_probackup', 'pg_basebackup')
TABLESPACE_MAP = 'tablespace_map'
# Counts the archive module records per source, compared after extracting.
COUNTED = ('entries', 'files', 'dirs', 'symlinks', 'hardlinks', 'bytes')
NOT_RUN = '  (check mode: not run)'


class RestoreError(HostError):
    """Something the user must fix or know; the message says what and how."""


# -- archives ------------------------------------------------------------------

def read_head(path, count=2):
    """The manifest (a dict) and the TarInfo of the first ``count`` members after it.

    Reads only the start of the gzip stream: the manifest is the first member.
    """
    members = []
    try:
        with tarfile.open(path, 'r|gz') as tar:
            first = tar.next()
            if first is None or first.name != MANIFEST_NAME or not first.isreg():
                raise RestoreError('%s is not an alation.backup archive: its first member is %s, not %s'
                                   % (path, first.name if first else 'missing', MANIFEST_NAME))
            manifest = json.loads(tar.extractfile(first).read().decode('utf-8'))
            for dummy in range(count):
                info = tar.next()
                if info is None:
                    break
                members.append(info)
    except (tarfile.TarError, OSError, EOFError, ValueError) as e:
        if isinstance(e, RestoreError):
            raise
        raise RestoreError('cannot read the manifest of %s: %s' % (path, e))
    if not isinstance(manifest, dict):
        raise RestoreError('the manifest of %s is not a JSON object' % path)
    return manifest, members


def read_sha256_file(path, archive_name):
    """The hex digest recorded in ``path`` (``sha256sum`` format) for ``archive_name``."""
    try:
        with open(path) as f:
            lines = [line.rstrip('\n') for line in f if line.strip()]
    except FileNotFoundError:
        raise RestoreError('%s is missing: the archive module writes it beside every archive; without it the '
                           'archive cannot be checked' % path)
    for line in lines:
        m = SHA256_LINE_RE.match(line)
        if m and os.path.basename(m.group('name')) == archive_name:
            return m.group('hex').lower()
    raise RestoreError('%s has no sha256sum line for %s' % (path, archive_name))


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            block = f.read(HASH_BLOCK)
            if not block:
                return digest.hexdigest()
            digest.update(block)


def source_entry(manifest, arcname):
    for src in manifest.get('sources') or []:
        if src.get('arcname') == arcname:
            return src
    return None


def members_to_extract(manifest, members):
    """The manifest's present sources named in ``members`` (all when empty); unknown names are refused."""
    present = [s for s in manifest.get('sources') or [] if s.get('present', True)]
    if not members:
        return present
    by_name = dict((s.get('arcname'), s) for s in present)
    unknown = [m for m in members if m not in by_name]
    if unknown:
        raise RestoreError('the archive holds no source %s; it holds %s'
                           % (', '.join(unknown), ', '.join(sorted(by_name)) or 'nothing'))
    return [by_name[m] for m in members]


def space_needed(sources, extra=0):
    """Bytes a extraction of ``sources`` needs: their file bytes, a block per entry, and ``extra``."""
    return sum(int(s.get('bytes', 0)) + 4096 * int(s.get('entries', 0)) for s in sources) + int(extra or 0)


def check_space(path, needed, what):
    return _check_space(path, needed, what, 'free space there or choose another place', error=RestoreError)


def count_mismatches(expected, scanned):
    """What differs between the manifest's counts of one source and the counts of what was extracted."""
    diffs = []
    for key in COUNTED:
        want, got = int(expected.get(key, 0)), int(scanned.get(key, 0))
        if want != got:
            diffs.append('%s %s: archive recorded %d, extracted %d' % (expected.get('arcname'), key, want, got))
    return diffs


def scan_extracted(path, arcname):
    summary, dummy = scan_sources([dict(path=path, arcname=arcname, optional=False)])
    return summary[0]


# -- places --------------------------------------------------------------------

def aside_name(path, now=None):
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return ASIDE_FORMAT % (path.rstrip('/'), now.strftime('%Y%m%dT%H%M%SZ'))


def prepare_target(path, force, what, now=None, dry_run=False):
    """Make sure ``path`` may receive a restore; return the name the old one was (or would be) moved to.

    Empty or absent is fine. A non-empty directory is refused unless ``force``,
    and then renamed aside (never deleted) so nothing is lost.
    """
    state = dir_state(path)
    if state in ('symlink', 'not_dir'):
        raise RestoreError('%s %s is a %s: give a directory (or a path that does not exist yet)'
                           % (what, path, 'symlink' if state == 'symlink' else 'file, not a directory'))
    if state != 'not_empty':
        return None
    if not force:
        raise RestoreError('%s %s is not empty: a restore writes only into an empty or absent directory. Empty it, '
                           'choose another, or set force (the old one is then moved aside, not deleted)'
                           % (what, path))
    aside = aside_name(path, now)
    if os.path.lexists(aside):
        raise RestoreError('cannot move %s aside: %s exists already; wait a second and run again' % (path, aside))
    if not dry_run:
        os.rename(path, aside)
    return aside


def remove_made(path, warn):
    """Remove the directory ``path`` that this run made (links inside removed, never followed).

    Cleanup after the real work: a failure is passed to ``warn``, not raised.
    Returns whether ``path`` is gone.
    """
    try:
        if os.path.lexists(path):
            clear_tree(path, remove_self=True)
        return True
    except (RemovalError, OSError) as e:
        warn('could not remove %s: %s' % (path, e))
        return False


def undo_target(path, made, aside, warn):
    """After a failed restore into ``path``: what it wrote goes, what it moved aside comes back.

    A directory the restore made (``made``) or moved aside (``aside``, the
    name it has now) is removed; one that was there and empty is emptied again.
    """
    if not made and not aside:
        try:
            clear_tree(path)
        except (RemovalError, OSError) as e:
            warn('could not empty %s after the failed restore: %s' % (path, e))
        return
    if remove_made(path, warn) and aside:
        try:
            os.rename(aside, path)
        except OSError as e:
            warn('could not put %s back at %s after the failed restore: %s' % (aside, path, e))


def preview(runner, argv):
    """The command line ``runner`` would run for ``argv``, marked as not run (check mode)."""
    return join_argv(wrap_argv(argv, runner.chroot, runner.run_as)) + NOT_RUN


def running_postmaster(pgdata):
    """The pid of a live postmaster on ``pgdata`` (host path), from its postmaster.pid; else None."""
    try:
        with open(os.path.join(pgdata, 'postmaster.pid')) as f:
            pid = int(f.readline().strip())
    except (OSError, ValueError):
        return None
    return pid if pid > 0 and pid_alive(pid) else None


def pg_major_version(pgdata):
    """The PG_VERSION of a data directory (host path), or None."""
    try:
        with open(os.path.join(pgdata, 'PG_VERSION')) as f:
            return f.read().strip() or None
    except OSError:
        return None


# -- tablespaces ---------------------------------------------------------------

def parse_tablespace_map(text):
    """[(oid, path)] from a tablespace_map (``<oid> <path>`` a line; the path may hold spaces)."""
    entries = []
    for line in text.splitlines():
        if not line.strip():
            continue
        oid, sep, path = line.partition(' ')
        if not sep or not oid.isdigit() or not path.startswith('/'):
            raise RestoreError('tablespace_map line %r is not "<oid> <absolute path>"' % line)
        entries.append((oid, path))
    return entries


def relocated_tablespaces(entries, tablespace_dir):
    """{oid: (old path, new path)}: each tablespace moves to ``<tablespace_dir>/<oid>``."""
    return dict((oid, (old, os.path.join(tablespace_dir, oid))) for oid, old in entries)


def tablespace_map_text(relocated):
    return ''.join('%s %s\n' % (oid, new) for oid, (dummy, new) in sorted(relocated.items()))


# -- the temporary server ------------------------------------------------------

def free_port(host='127.0.0.1'):
    """A TCP port on ``host`` that is free now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# Settings that keep a temporary server away from everything of the live
# cluster's: this data directory whatever its postgresql.conf says, loopback
# and its own socket dir only, its own pid file, no WAL archiving (it would
# push into the live archive), no standby connection, little memory, logs to
# our file. Everything else is as in the backup, so the drill starts the
# server as production would.
def server_settings(pgdata, port, socket_dir, hba_file, major=None, extra=None):
    try:
        major = float(str(major)) if major else 99.0
    except ValueError:
        major = 99.0
    settings = [
        ('data_directory', pgdata),
        ('external_pid_file', ''),
        ('listen_addresses', '127.0.0.1'),
        ('port', str(port)),
        ('unix_socket_directories', socket_dir),
        ('hba_file', hba_file),
        ('archive_mode', 'off'),
        ('shared_buffers', '128MB'),
        ('huge_pages', 'off'),
        ('logging_collector', 'off'),
        ('ssl', 'off'),
    ]
    if major >= 12:
        # Recovery settings became server settings in 12; before, they live in recovery.conf.
        settings += [('restore_command', ''), ('primary_conninfo', '')]
    if major < 15:
        # Before 15 it may point at a directory the live server uses.
        settings.append(('stats_temp_directory', 'pg_stat_tmp'))
    overridden = dict(extra or {})
    return [(k, overridden.pop(k, v)) for k, v in settings] + sorted(overridden.items())


def postgres_options(settings):
    """The ``pg_ctl -o`` string: pg_ctl hands it to a shell, so each value is quoted."""
    return ' '.join('-c %s' % shlex.quote('%s=%s' % (k, v)) for k, v in settings)


LOG_ERROR_RE = re.compile(r'\b(FATAL|PANIC|ERROR):')
LOG_CONSISTENT_RE = re.compile(r'consistent recovery state reached at \S+|database system is ready to accept connections')


def log_findings(text):
    """(lines saying the server reached a consistent state, error lines) of a server log."""
    lines = text.splitlines()
    consistent = [line for line in lines if LOG_CONSISTENT_RE.search(line)]
    errors = [line for line in lines if LOG_ERROR_RE.search(line)]
    return consistent, errors


def tail(text, lines=20):
    return '\n'.join(text.splitlines()[-lines:])


# -- owners --------------------------------------------------------------------

def user_ids(user, chroot=None):
    """(uid, gid) of ``user``: from the Alation shell's own /etc/passwd when ``chroot`` is set.

    Programs run inside the shell as its users; the host may not know them by name.
    """
    if user is None or user == '':
        return os.geteuid(), os.getegid()
    try:
        return Accounts(chroot).user(user)
    except ValueError as e:
        raise RestoreError(str(e))


def make_private_dir(path, uid, gid):
    """``path`` (host path) as an existing directory, mode 0700, owned by uid:gid. Parents are made as needed."""
    _make_private_dir(path, uid, gid, error=RestoreError)


def write_private_file(path, text, uid, gid):
    """Write ``text`` to ``path`` atomically (temporary file in the same dir, fsync, rename), mode 0600."""
    write_file(path, text, 0o600, uid, gid)


def tar_member_text(tar_path, name):
    """The text of member ``name`` of an uncompressed tar (pg_basebackup's base.tar), or None."""
    with tarfile.open(tar_path, 'r:') as tar:
        for info in tar:
            if info.name.lstrip('./') == name and info.isreg():
                return tar.extractfile(info).read().decode('utf-8')
    return None
