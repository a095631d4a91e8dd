# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What is wrong with a run's inputs as the host has them, found before anything is touched.

``_alation.path_problems`` says whether the dirs of a run could harm each
other (a rule about names); this looks at the host: an extra path that is
missing, is or holds something that cannot be copied, or does not fit the
staging dir; a PGDATA that is not a PostgreSQL data directory; a dir the run
must write to that cannot be written. Each function returns a list of
messages (empty when fine), each naming the value, the host path, and what to
do. Nothing here writes.
"""

import errno
import fcntl
import os
import stat
import struct

from ansible_collections.alation.backup.plugins.module_utils._host import free_bytes, human, tree_bytes

# Linux's FS_IOC_GETFLAGS (_IOR('f', 1, long)) and the inode flags of chattr +i and +a.
FS_IOC_GETFLAGS = 0x80006601 | (struct.calcsize('l') << 16)
FS_IMMUTABLE_FL = 0x10
FS_APPEND_FL = 0x20
# Shown per extra path: the first few things that cannot be copied.
SHOWN = 3

_KINDS = ((stat.S_ISFIFO, 'a FIFO (named pipe)'), (stat.S_ISSOCK, 'a socket'),
          (stat.S_ISCHR, 'a character device'), (stat.S_ISBLK, 'a block device'))
_DIRS = (('staging_dir', 'staging dir'), ('pg_staging_dir', 'pg staging dir'),
         ('backup_storage_dir', 'backup storage dir'), ('pgdata', 'PGDATA'))


def kind(mode):
    """'a FIFO (named pipe)', 'a socket', ... for what a copy cannot take; None for a file, dir or symlink."""
    for test, word in _KINDS:
        if test(mode):
            return word
    return None


def _contains(outer, inner):
    return outer == inner or inner.startswith(outer.rstrip('/') + '/')


def _uncopyable(host_path, shell_path):
    """What below the dir ``host_path`` a copy cannot take: [(shell path, why)], links not followed."""
    found = []
    for root, dirs, files in os.walk(host_path, onerror=None):
        for name in sorted(dirs + files):
            full = os.path.join(root, name)
            shown = shell_path.rstrip('/') + full[len(host_path.rstrip('/')):]
            try:
                st = os.lstat(full)
            except OSError:
                continue
            what = kind(st.st_mode)
            if what:
                found.append((shown, what))
            elif stat.S_ISLNK(st.st_mode) and not os.path.exists(full):
                found.append((shown, 'a symlink to a missing %s' % os.readlink(full)))
    return found


def extra_path_problems(extra, paths):
    """Why the extra paths ``extra`` (path entries, as ``_alation.path_entry`` gives) cannot be copied.

    ``paths`` is what ``_alation.shell_paths`` returns. An extra path must
    exist, be a file or a dir (a symlink to one), hold no FIFO, socket,
    device or dangling symlink, and stay clear of the run's own dirs: the
    staging dir (it is emptied first, and a dir holding it would be copied
    into itself), the backup storage dir and the pg staging dir (the archives
    and the catalog would travel in the archive) and PGDATA (the database
    step copies it consistently; a file copy of a live PGDATA is not).
    """
    problems = []
    for entry in extra:
        shell, host = entry['shell_path'], entry['host_path']
        clash = None
        for name, word in _DIRS:
            other = paths[name]['shell_path']
            if _contains(shell, other):
                clash = 'is or contains the %s %s' % (word, other)
            elif _contains(other, shell):
                clash = 'lies inside the %s %s' % (word, other)
            if clash:
                problems.append('the extra path %s %s: extra paths are site files copied into the staging dir; '
                                'drop it from alation_backup_extra_paths or name the files you need' % (shell, clash))
                break
        if clash:
            continue
        try:
            st = os.lstat(host)
        except OSError as e:
            problems.append('the extra path %s %s (host path %s): create it, or drop it from '
                            'alation_backup_extra_paths' % (
                                shell, 'does not exist' if e.errno == errno.ENOENT else 'cannot be read: %s'
                                % (e.strerror or e), host))
            continue
        if stat.S_ISLNK(st.st_mode):
            try:
                st = os.stat(host)
            except OSError:
                problems.append('the extra path %s is a symlink to a missing %s (host path %s): fix the link, or drop '
                                'it from alation_backup_extra_paths' % (shell, os.readlink(host), host))
                continue
        what = kind(st.st_mode)
        if what:
            problems.append('the extra path %s is %s (host path %s): only files and dirs can travel in the archive; '
                            'drop it from alation_backup_extra_paths' % (shell, what, host))
        elif stat.S_ISDIR(st.st_mode):
            bad = _uncopyable(host, shell)
            if bad:
                problems.append('the extra path %s holds what cannot be copied: %s%s; remove it, or name the files '
                                'you need in alation_backup_extra_paths instead of the dir' % (
                                    shell, ', '.join('%s (%s)' % b for b in bad[:SHOWN]),
                                    ' and %d more' % (len(bad) - SHOWN) if len(bad) > SHOWN else ''))
    return problems


def staging_room_problems(staging, extra):
    """Whether the extra paths fit the staging dir (path entries): [] or the message.

    The staging dir is emptied before the copy, so what it holds now counts
    as free (when it is on the same file system).
    """
    needed = sum(tree_bytes(os.path.realpath(e['host_path'])) for e in extra)
    if not needed:
        return []
    free = free_bytes(staging['host_path']) + tree_bytes(staging['host_path'])
    if needed <= free:
        return []
    return ['the extra paths (%d bytes, %s) do not fit the staging dir %s: %d bytes (%s) free on its file system '
            'once it is emptied; free space there, move the staging dir to a larger disk (alation_backup_staging_dir '
            'or alation.backup.data_temp_dir), or drop extra paths' % (
                needed, human(needed), staging['shell_path'], free, human(free))]


def pgdata_problems(pgdata):
    """Whether ``pgdata`` (a path entry) is a PostgreSQL data directory: [] or the message."""
    shell, host = pgdata['shell_path'], pgdata['host_path']
    advice = 'set alation_backup_pgdata to the PostgreSQL data directory inside the Alation shell, the dir that holds ' \
             'PG_VERSION (default /data1/pgsql/data)'
    if not os.path.exists(host):
        return ['PGDATA %s does not exist (host path %s): %s' % (shell, host, advice)]
    if not os.path.isdir(host):
        return ['PGDATA %s is not a directory (host path %s): %s' % (shell, host, advice)]
    if not os.path.isfile(os.path.join(host, 'PG_VERSION')):
        below = []
        try:
            below = sorted(n for n in os.listdir(host) if os.path.isfile(os.path.join(host, n, 'PG_VERSION')))
        except OSError:
            pass
        hint = '; %s/%s looks like one' % (shell.rstrip('/'), below[0]) if below else ''
        return ['PGDATA %s is not a PostgreSQL data directory: it has no PG_VERSION (host path %s): %s%s'
                % (shell, host, advice, hint)]
    return []


def inode_flags(path):
    """chattr flags of ``path`` (FS_IMMUTABLE_FL, FS_APPEND_FL, ...), 0 where the file system has none."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, 'O_NOFOLLOW', 0))
    except OSError:
        return 0
    try:
        buf = fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack('l', 0))
        return struct.unpack('i', buf[:4])[0]
    except (OSError, IOError):
        return 0
    finally:
        os.close(fd)


def _nearest(path):
    """``path``, or its nearest parent that exists."""
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def writable_problems(paths, names=('staging_dir', 'pg_staging_dir', 'backup_storage_dir')):
    """Whether the run can write the dirs ``names`` of ``paths`` (or, where missing, create them): [] or messages.

    A dir must be a dir, on a file system mounted read-write, without chattr
    +i or +a (an archive is renamed into place, and staging dirs are
    emptied), and writable. Run as root, so permission bits rarely matter.
    """
    words = dict(_DIRS)
    problems = []
    for name in names:
        shell, host = paths[name]['shell_path'], paths[name]['host_path']
        probe = _nearest(host)
        named = 'the %s %s' % (words[name], shell)
        where = '' if probe == host else ' (it does not exist yet; %s, where it would be made, ' % probe
        if os.path.lexists(host) and not os.path.isdir(host):
            problems.append('%s is not a directory (host path %s): remove the file or choose another dir'
                            % (named, host))
            continue
        why = None
        if os.statvfs(probe).f_flag & os.ST_RDONLY:
            why = 'is on a read-only file system'
            todo = 'remount it read-write, or choose a dir on a writable disk'
        else:
            flags = inode_flags(probe)
            if flags & FS_IMMUTABLE_FL:
                why, todo = 'is immutable (chattr +i)', 'run chattr -i %s, or choose another dir' % probe
            elif flags & FS_APPEND_FL:
                why, todo = 'is append-only (chattr +a)', 'run chattr -a %s, or choose another dir' % probe
            elif not os.access(probe, os.W_OK | os.X_OK):
                why, todo = 'is not writable', 'give the user the run connects as write access, or choose another dir'
        if why:
            if where:
                problems.append('%s cannot be created%s%s): %s' % (named, where, why, todo))
            else:
                problems.append('%s %s (host path %s): %s' % (named, why, host, todo))
    return problems


def host_problems(paths, extra):
    """Everything above for a backup run: ``paths`` from ``_alation.shell_paths``, ``extra`` its extra paths."""
    problems = extra_path_problems(extra, paths)
    problems += pgdata_problems(paths['pgdata'])
    problems += writable_problems(paths)
    if not problems:
        # Only for extra paths that can be copied, into a staging dir that can be written.
        problems += staging_room_problems(paths['staging_dir'], extra)
    return problems
