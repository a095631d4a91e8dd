# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Facts about an Alation host: alation_conf output, the version file, shell paths.

Pure functions (no I/O except where a name says ``read``) so they can be
unit-tested without an Alation host. See shared/reference/alation.md.
"""

import os
import posixpath
import re

from ansible_collections.alation.backup.plugins.module_utils._host import free_bytes, tree_bytes
from ansible_collections.alation.backup.plugins.module_utils._runner import find_program, wrap_argv

# Where the Alation shell (a chroot) lives on the host.
DEFAULT_ROOT = '/opt/alation/alation'
DEFAULT_RUN_AS = 'alationadmin'
DEFAULT_ALATION_CONF_COMMAND = 'alation_conf'
# Seconds one alation_conf call may take (it answers in about a second).
DEFAULT_ALATION_CONF_TIMEOUT = 60

DATA_TEMP_DIR_KEY = 'alation.backup.data_temp_dir'
# The keys Backup V1 is configured with: where it stages, and when it runs.
BACKUP_CONF_KEYS = (
    DATA_TEMP_DIR_KEY,
    'alation.backup.scheduled_minute',
    'alation.backup.scheduled_hour',
    'alation.backup.scheduled_day',
)

# Paths inside the Alation shell.
DEFAULT_STAGING_DIR = '/data2/tmp'
PG_STAGING_DIR = '/data2/backup/pgbackup'
BACKUP_STORAGE_DIR = '/data2/backup'
PGDATA = '/data1/pgsql/data'
VERSION_FILE = '/opt/alation/django/main/alation_version.py'
# The per-host backup lock, in the backup storage dir.
LOCK_NAME = '.alation_backup.lock'
# Files at the top of the chroot naming the host disks behind /data1 and /data2.
DISK_CACHES = ('disk1', 'disk2')

VERSION_CONSTANTS = (
    ('major', 'ALATION_MAJOR_VERSION'),
    ('minor', 'ALATION_MINOR_VERSION'),
    ('patch', 'ALATION_PATCH_VERSION'),
    ('build', 'ALATION_BUILD_VERSION'),
)
_CONSTANT_LINE = re.compile(r'^\s*(%s)\b' % '|'.join(name for part, name in VERSION_CONSTANTS))
# NAME = 5 | NAME = '5' | NAME = "5", optionally followed by a comment.
_ASSIGNMENT = re.compile(r'''\s*(?P<name>\w+)\s*=\s*(?:(?P<int>[0-9]+)|(?P<q>['"])(?P<str>[0-9]+)(?P=q))\s*(?:\#.*)?''')


class AlationFactError(Exception):
    """A fact could not be read; the message names the file or value and what to do."""


def host_path(root, shell_path):
    """The host path of ``shell_path`` (a path inside the Alation shell at ``root``).

    >>> host_path('/opt/alation/alation', '/data2/tmp')
    '/opt/alation/alation/data2/tmp'

    Raises ValueError for a relative path or one with ``..``: such a path
    could name something outside the shell, and callers delete under these.
    """
    if not isinstance(shell_path, str) or not shell_path.startswith('/'):
        raise ValueError('shell path %r is not absolute: paths inside the Alation shell must start with /' % (shell_path,))
    if '..' in shell_path.split('/'):
        raise ValueError('shell path %r contains "..": give the path without parent references' % (shell_path,))
    if not isinstance(root, str) or not root.startswith('/'):
        raise ValueError('root %r is not absolute: give the host path of the Alation shell, or /' % (root,))
    # normpath keeps a leading '//' (POSIX allows it); strip all leading slashes first.
    rel = posixpath.normpath(shell_path.lstrip('/') or '.')
    base = posixpath.normpath(root.lstrip('/') or '.')
    joined = posixpath.normpath(posixpath.join('/', base, rel))
    return joined


def in_shell(root, use_chroot=True):
    """Whether programs run inside the Alation shell: asked for, and there is a shell (root is not /)."""
    return bool(use_chroot) and posixpath.normpath(root or '/') != '/'


def shell_paths(root, data_temp_dir=None, use_chroot=True, staging_dir=None, pg_staging_dir=PG_STAGING_DIR,
                backup_storage_dir=BACKUP_STORAGE_DIR, pgdata=PGDATA, named=None):
    """The paths of a run, each as ``shell_path``, ``host_path`` (under ``root``) and ``path``.

    ``path`` is the one handed to programs: the shell path when they run
    inside the Alation shell (``use_chroot`` and root is not /), else the
    host path. The staging dir is ``staging_dir`` when given, else
    ``data_temp_dir`` (alation.backup.data_temp_dir), else Alation's default.
    ``lock`` is the backup lock in the backup storage dir; ``named`` adds
    more paths (name -> shell path). Raises ValueError for a path that is
    not absolute or has ``..``.
    """
    staging = staging_dir or data_temp_dir or DEFAULT_STAGING_DIR
    paths = dict(
        staging_dir=staging,
        pg_staging_dir=pg_staging_dir,
        backup_storage_dir=backup_storage_dir,
        pgdata=pgdata,
        version_file=VERSION_FILE,
        lock=posixpath.join(backup_storage_dir or '/', LOCK_NAME),
    )
    paths.update(named or {})
    inside = in_shell(root, use_chroot)
    return dict((name, path_entry(root, shell_path, inside, name)) for name, shell_path in paths.items())


def path_entry(root, shell_path, inside, name):
    """{shell_path, host_path, path} of one shell path; ValueError naming ``name`` for a bad one."""
    try:
        host = host_path(root, shell_path)
    except ValueError as e:
        raise ValueError('%s: %s' % (name, e))
    shell = host_path('/', shell_path)
    return dict(shell_path=shell, host_path=host, path=shell if inside else host)


# The shell's own system dirs: a staging dir is never one of them, inside one, or above one.
SHELL_SYSTEM_DIRS = ('/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/libx32', '/media', '/mnt',
                     '/opt', '/proc', '/root', '/run', '/sbin', '/srv', '/sys', '/tmp', '/usr', '/var')
_ROLES = (('staging_dir', 'staging dir'), ('pg_staging_dir', 'pg staging dir'),
          ('backup_storage_dir', 'backup storage dir'))


def _contains(outer, inner):
    """True when shell path ``inner`` is ``outer`` or below it."""
    return outer == inner or inner.startswith(outer.rstrip('/') + '/')


def path_problems(root, paths):
    """Why the staging dir, the pg staging dir and the backup storage dir must not be used as they are: [] when fine.

    ``paths`` is what shell_paths returns. The rules are the shell's, for the
    shell at ``root`` (a typo in alation_conf or a role variable must never
    empty the archives): the three are distinct and none is / or a top-level
    dir of the shell (/data1, /data2); the staging dir neither contains nor
    lies inside the backup storage dir, the pg staging dir, PGDATA or a system
    dir of the shell; the pg staging dir may sit inside the backup storage dir
    but contains neither it nor PGDATA; none resolves through a symlink to
    somewhere else. Each message names the two paths and the rule.
    """
    shell = dict((name, paths[name]['shell_path']) for name, dummy in _ROLES + (('pgdata', 'PGDATA'),))
    words = dict(_ROLES, pgdata='PGDATA')
    problems = []

    def overlap(a, b, why):
        """Refuse when dir ``a`` is, contains or lies inside dir ``b``."""
        pa, pb = shell[a], shell[b]
        rule = 'is' if pa == pb else 'contains' if _contains(pa, pb) else 'lies inside' if _contains(pb, pa) else None
        if rule:
            problems.append('the %s %s %s the %s %s: %s' % (words[a], pa, rule, words[b], pb, why))

    for name, word in _ROLES:
        path = shell[name]
        if path == '/' or path.count('/') < 2:
            problems.append('the %s %s is %s of the Alation shell: give a dir of its own below one, such as %s'
                            % (word, path, 'the root' if path == '/' else 'a top-level dir',
                               {'staging_dir': DEFAULT_STAGING_DIR, 'pg_staging_dir': PG_STAGING_DIR}.get(
                                   name, BACKUP_STORAGE_DIR)))
            continue
        real_root = os.path.realpath(root)
        expected = path if real_root == '/' else os.path.normpath(real_root + path)
        real = os.path.realpath(paths[name]['host_path'])
        if real != expected:
            problems.append('the %s %s resolves through a symlink to %s on the host: give the real directory'
                            % (word, path, real))
    emptied = 'the staging dir is emptied at every run'
    overlap('staging_dir', 'backup_storage_dir', emptied + ', which would delete the archives; give it a dir of '
            'its own such as %s (alation.backup.data_temp_dir)' % DEFAULT_STAGING_DIR)
    overlap('staging_dir', 'pg_staging_dir', emptied + ', which would delete the pg staging dir and its chain')
    overlap('staging_dir', 'pgdata', emptied + ', which would delete the database')
    staging = shell['staging_dir']
    for system in SHELL_SYSTEM_DIRS:
        if _contains(staging, system) or _contains(system, staging):
            problems.append("the staging dir %s %s the Alation shell's system dir %s: %s; give it a dir of its own "
                            'such as %s' % (staging, 'lies inside' if staging != system and _contains(system, staging)
                                            else 'is or contains', system, emptied, DEFAULT_STAGING_DIR))
            break
    pg, storage = shell['pg_staging_dir'], shell['backup_storage_dir']
    if pg == storage or _contains(pg, storage):
        overlap('pg_staging_dir', 'backup_storage_dir', 'the pg staging dir is removed when incremental backups are '
                'off, which would delete the archives; it may sit inside the backup storage dir (the default %s), '
                'never above it' % PG_STAGING_DIR)
    overlap('pg_staging_dir', 'pgdata', 'the pg staging dir is emptied or removed, and it is written while PGDATA '
            'is read')
    overlap('backup_storage_dir', 'pgdata', 'archives written into PGDATA would be copied into every later backup, '
            'and PGDATA written into the backup storage dir would be packed into the archive; give each a dir of '
            'its own')
    return problems


def parse_conf_output(key, stdout):
    """The value ``alation_conf <key>`` printed, or None if it printed no line for ``key``.

    Only a line ``<key> = <value>`` counts (other output, such as a login
    banner, is ignored); the value is everything after the first ``=``, so it
    may hold spaces and ``=``; it may be empty.
    """
    line_re = re.compile(r'^\s*%s\s*=(.*)$' % re.escape(key))
    for line in stdout.splitlines():
        m = line_re.match(line)
        if m:
            return m.group(1).strip()
    return None


def parse_version_file(text, path):
    """Return dict(major, minor, patch, build) from alation_version.py text.

    The file is read as text, never imported: a line that sets one of the
    four constants must be a plain ``NAME = <digits>`` (or quoted digits).
    Other lines are ignored. ``path`` only goes into error messages.
    """
    found = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not _CONSTANT_LINE.match(line):
            continue
        m = _ASSIGNMENT.fullmatch(line)
        if not m:
            raise AlationFactError(
                '%s line %d is malformed: %r; expected NAME = <digits> or NAME = "<digits>" '
                'for the ALATION_*_VERSION constants. Check that root is the Alation shell '
                'and the file is intact.' % (path, number, line.strip()))
        # Like Python, a later assignment wins.
        found[m.group('name')] = m.group('int') if m.group('int') is not None else m.group('str')
    missing = [name for part, name in VERSION_CONSTANTS if name not in found]
    if missing:
        raise AlationFactError(
            '%s does not set %s: expected all of %s. Check that root is the Alation shell '
            'and the file is intact.' % (path, ', '.join(missing), ', '.join(name for part, name in VERSION_CONSTANTS)))
    return dict((part, found[name]) for part, name in VERSION_CONSTANTS)


def read_version_file(path):
    """Read and parse the version file at host path ``path``."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except FileNotFoundError:
        raise AlationFactError(
            'version file %s not found: root must be the Alation shell (default %s, or / on a '
            'plain host) with Alation installed' % (path, DEFAULT_ROOT))
    except OSError as e:
        raise AlationFactError('cannot read version file %s: %s' % (path, e.strerror or e))
    return parse_version_file(data.decode('utf-8', 'replace'), path)


def version_strings(parts):
    """(version, version_tag), e.g. ('5.17.0.116556', '5-17-0-116556')."""
    values = [parts[part] for part, name in VERSION_CONSTANTS]
    return '.'.join(values), '-'.join(values)


def read_disk_caches(root):
    """Contents (stripped) of ``<root>/.disk1_cache`` and ``.disk2_cache`` that exist."""
    caches = {}
    for name in DISK_CACHES:
        path = os.path.join(root, '.%s_cache' % name)
        try:
            with open(path, 'rb') as f:
                caches[name] = f.read().decode('utf-8', 'replace').strip()
        except FileNotFoundError:
            pass
    return caches


def conf_runs_in_chroot(command):
    """Whether ``alation_conf_command`` runs inside the chroot.

    A bare name (or relative path) is looked up on the login PATH inside the
    Alation shell, as Alation's scripts do. An absolute path is a host path
    and runs outside the chroot (for hosts or tests where it sits elsewhere).
    """
    return not command.startswith('/')


# How read_conf's errors begin when the command itself could not be run (every key fails alike).
CONF_UNUSABLE = 'cannot run alation_conf command'


def read_conf(runner, command, keys, timeout=None):
    """Read ``keys`` with ``command`` through ``runner``; return (conf, errors).

    ``conf`` maps every key to its value, or None when it could not be read;
    ``errors`` maps those keys to why. Nothing here is fatal (the caller
    decides which keys are required) but a command that does not answer
    within ``timeout`` seconds: that raises AlationFactError, since a key
    left unread would silently turn into a default staging dir.
    """
    conf = dict((key, None) for key in keys)
    errors = {}
    # Run directly (no chroot, no su), a missing program would make
    # run_command fail the whole module: look for it first.
    direct = wrap_argv([command], runner.chroot, runner.run_as, login=True) == [command]
    if direct:
        found = find_program(None, command)[0]
        if not found:
            missing = '%s %r: not found (not on PATH, or not executable): set alation_conf_command to its path' % (
                CONF_UNUSABLE, command)
            return conf, dict((key, missing) for key in keys)
        command = found
    for key in keys:
        res = runner.run([command, key], login=True, timeout=timeout)
        out, err = res['stdout'] or '', (res['stderr'] or '').strip()
        if res.get('timed_out'):
            raise AlationFactError(
                'alation_conf did not answer within %g s: %s was stopped (alation_conf_timeout, role variable '
                'alation_backup_alation_conf_timeout). Run it by hand in the Alation shell to see why it hangs '
                '(a login script waiting for input, a hung mount), or raise the timeout' % (timeout, res['cmd']))
        if res['rc'] in (126, 127):
            # The shell could not run it: every other key would fail the same way.
            missing = '%s %r (exit code %d: %s): check root, run_as and alation_conf_command' % (
                CONF_UNUSABLE, command, res['rc'], err or 'no message')
            return conf, dict((k, missing) for k in keys)
        if res['rc'] != 0:
            errors[key] = 'not read: %s exited with code %d: %s' % (res['cmd'], res['rc'], err or out.strip() or 'no message')
            continue
        conf[key] = parse_conf_output(key, out)
        if conf[key] is None:
            errors[key] = 'not set: %s printed no "%s = <value>" line' % (res['cmd'], key)
    return conf, errors


def alation_info_argument_spec():
    return dict(
        root=dict(type='path', default=DEFAULT_ROOT),
        use_chroot=dict(type='bool', default=True),
        read_conf=dict(type='bool', default=True),
        staging_dir=dict(type='str'),
        pg_staging_dir=dict(type='str', default=PG_STAGING_DIR),
        storage_dir=dict(type='str', default=BACKUP_STORAGE_DIR, aliases=['backup_storage_dir']),
        pgdata=dict(type='str', default=PGDATA),
        paths=dict(type='dict', default={}),
        extra_paths=dict(type='list', elements='str', default=[]),
        users=dict(type='list', elements='str', default=[]),
        groups=dict(type='list', elements='str', default=[]),
        check_paths=dict(type='bool', default=False),
        # Key names, not secrets.
        alation_conf_keys=dict(type='list', elements='str', default=list(BACKUP_CONF_KEYS), no_log=False),
        required=dict(type='list', elements='str', default=[]),
        run_as=dict(type='str', default=DEFAULT_RUN_AS),
        alation_conf_command=dict(type='str', default=DEFAULT_ALATION_CONF_COMMAND),
        alation_conf_timeout=dict(type='int', default=DEFAULT_ALATION_CONF_TIMEOUT),
        alation_schedule_margin=dict(type='int', default=0),
        refuse_busy=dict(type='bool', default=False),
    )


def backup_space(storage_dir, pgdata, extra_paths=()):
    """What a backup needs in the backup storage dir, and what it has (host paths).

    The pg staging dir takes about PGDATA (a FULL); the archive, at worst
    (nothing compresses), PGDATA again plus the extra paths. Returns a dict
    of free, needed, pgdata_bytes and extra_bytes. Nothing is written.
    """
    pgdata_bytes = tree_bytes(pgdata)
    extra_bytes = sum(tree_bytes(p) for p in extra_paths)
    return dict(free=free_bytes(storage_dir), needed=2 * pgdata_bytes + extra_bytes,
                pgdata_bytes=pgdata_bytes, extra_bytes=extra_bytes)
