# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Staging clear: which paths may be cleared, and clearing them without following links.

Everything here works on host paths. ``refusal`` says why a path must not be
used as a staging dir (or None); ``clear_tree`` removes the contents of a
directory (and optionally the directory) through directory file descriptors,
never following a symlink and never leaving the staging dir's filesystem, like
``rm -r --one-file-system``. With ``dry_run=True`` it walks the same way and
reports the same counts without touching anything (check mode).
"""

import errno
import os
import shutil
import stat
import time

# The Alation shell: a chroot whose system dirs are as precious as the host's.
ALATION_CHROOT = '/opt/alation/alation'

_SYSTEM_DIRS = (
    '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/lib32', '/lib64', '/libx32',
    '/lost+found', '/media', '/mnt', '/opt', '/proc', '/root', '/run', '/sbin', '/snap',
    '/srv', '/sys', '/tmp', '/usr', '/var',
    '/usr/bin', '/usr/include', '/usr/lib', '/usr/lib32', '/usr/lib64', '/usr/libexec',
    '/usr/local', '/usr/local/bin', '/usr/local/lib', '/usr/local/sbin', '/usr/local/share',
    '/usr/sbin', '/usr/share', '/usr/src',
    '/var/backups', '/var/cache', '/var/lib', '/var/local', '/var/lock', '/var/log',
    '/var/mail', '/var/opt', '/var/run', '/var/spool', '/var/tmp',
    '/opt/alation',
)
# Each system dir also inside the Alation shell, and the shell itself.
SYSTEM_DIRS = frozenset(_SYSTEM_DIRS + tuple(ALATION_CHROOT + d for d in _SYSTEM_DIRS) + (ALATION_CHROOT,))

RULE_HINT = 'use a dedicated staging dir such as /data2/tmp, or list a dir above it in allowed_roots'

_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, 'O_CLOEXEC', 0)
# Directory fds held open at once while descending; deeper levels are
# reopened through '..' (and checked) on the way back up, so any depth works.
MAX_OPEN_DIRS = 64


def _is_below(path, root):
    """True when normalized ``path`` is strictly below normalized ``root``."""
    return root != path and path.startswith(root.rstrip('/') + '/')


def shell_roots(shell_root=None):
    """The Alation shells whose system dirs are guarded: the default one, and the configured one."""
    roots = [ALATION_CHROOT]
    if shell_root and os.path.normpath(shell_root) not in ('/', ALATION_CHROOT):
        roots.append(os.path.normpath(shell_root))
    return roots


def system_dirs(shell_root=None):
    """The host's system dirs, and each of them inside every guarded Alation shell, and the shells themselves."""
    dirs = set(SYSTEM_DIRS)
    for root in shell_roots(shell_root):
        dirs.update(root + d for d in _SYSTEM_DIRS)
        dirs.add(root)
    return dirs


def _default_rule(path, shell_root=None):
    """The rule a normalized absolute ``path`` breaks when no allowed root covers it, or None."""
    # Inside the Alation shell the same rules apply relative to its root.
    guarded = system_dirs(shell_root)
    if path in guarded:
        return 'it is the system directory %s' % path
    scopes = [('', path)]
    for root in shell_roots(shell_root):
        if path == root or _is_below(path, root):
            scopes.append((root, path[len(root):] or '/'))
    for prefix, inner in scopes:
        where = ' of the Alation shell %s' % prefix if prefix else ''
        if inner == '/':
            return 'it is the root directory%s' % where
        if inner.count('/') < 2:
            return 'it has fewer than two path components%s' % where
    parent = os.path.dirname(path)
    if parent in guarded:
        return 'it is directly inside the system directory %s' % parent
    return None


def _normal_roots(allowed_roots):
    """(lexical, resolved) normalized allowed roots; raises ValueError for a bad entry."""
    lexical, resolved = [], []
    for root in allowed_roots or ():
        root = str(root)
        if not os.path.isabs(root) or '..' in root.split('/'):
            raise ValueError("allowed_roots entry '%s' is not an absolute path without '..' components" % root)
        norm = os.path.normpath(root)
        real = os.path.realpath(norm)
        if '/' in (norm, real):
            raise ValueError("allowed_roots entry '%s' is (or resolves to) /, which would allow any path" % root)
        lexical.append(norm)
        resolved.append(real)
    return lexical, resolved


def resolved_path(path):
    """``path`` with every symlink above its last component resolved (the last one is not followed)."""
    parent, name = os.path.split(os.path.normpath(path))
    return os.path.join(os.path.realpath(parent), name)


def refusal(path, allowed_roots=(), shell_root=None):
    """Why ``path`` must not be a staging dir (a message naming the path and the rule), or None.

    Checked: absolute, no '..', not /, at least two components, not a system dir
    nor directly inside one (unless strictly below an entry of ``allowed_roots``),
    both as written and with the symlinks above it resolved; the path itself is
    not a symlink and, when it exists, is a directory. The same rules hold
    inside the Alation shell at /opt/alation/alation and at ``shell_root``.
    """
    def refuse(rule):
        return "refusing staging dir '%s': %s (%s)" % (path, rule, RULE_HINT)

    if not path or not os.path.isabs(path):
        return refuse('it is not an absolute path')
    if '..' in path.split('/'):
        return refuse("it has a '..' component")
    try:
        lexical_roots, resolved_roots = _normal_roots(allowed_roots)
    except ValueError as e:
        return refuse(str(e))
    norm = os.path.normpath(path)
    real = resolved_path(norm)
    for candidate, roots in ((norm, lexical_roots), (real, resolved_roots)):
        shown = '' if candidate == norm else ' (resolves to %s)' % candidate
        if candidate == '/' or candidate in system_dirs(shell_root):
            # Never, whatever allowed_roots says.
            return refuse('%s%s' % (_default_rule(candidate, shell_root), shown))
        if any(_is_below(candidate, root) for root in roots):
            continue
        rule = _default_rule(candidate, shell_root)
        if rule:
            if any(candidate == root for root in roots):
                rule += '; an allowed root itself is never cleared, the staging dir must be strictly below it'
            return refuse(rule + shown)
    try:
        st = os.lstat(norm)
    except FileNotFoundError:
        return None
    except OSError as e:
        return refuse('it cannot be inspected: %s' % e)
    if stat.S_ISLNK(st.st_mode):
        return refuse('it is a symlink; give the real directory')
    if not stat.S_ISDIR(st.st_mode):
        return refuse('it exists and is not a directory')
    return None


def _unescape_mountinfo(field):
    # mountinfo writes space, tab, newline and backslash as \ooo octal escapes.
    out, i = [], 0
    while i < len(field):
        if field[i] == '\\' and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return ''.join(out)


def parse_mount_points(mountinfo_text):
    """The mount points listed in the text of /proc/self/mountinfo."""
    points = set()
    for line in mountinfo_text.splitlines():
        fields = line.split(' ')
        if len(fields) > 4:
            points.add(_unescape_mountinfo(fields[4]))
    return points


def mount_points_below(path, mountinfo='/proc/self/mountinfo'):
    """Mount points strictly below real ``path``.

    Bind mounts of the same filesystem keep st_dev, so st_dev alone would not see them.
    """
    try:
        with open(mountinfo) as f:
            points = parse_mount_points(f.read())
    except OSError:
        return frozenset()
    return frozenset(p for p in points if _is_below(p, path))


class TreeResult:
    """What clear_tree removed (or would remove)."""

    def __init__(self):
        self.files = 0
        self.dirs = 0
        self.bytes = 0
        self.skipped_mounts = []
        self.top_removed = []
        self.top_kept = []
        self.removed_self = False

    def as_dict(self):
        return dict(removed_files=self.files, removed_dirs=self.dirs, removed_bytes=self.bytes,
                    skipped_mounts=sorted(self.skipped_mounts))

    def summary(self):
        return '%d files, %d dirs, %d bytes' % (self.files, self.dirs, self.bytes)


class RemovalError(Exception):
    """Removal stopped at ``path``; ``result`` holds what was already removed."""

    def __init__(self, path, error, result):
        self.path = path
        self.error = error
        self.result = result
        super().__init__("could not remove '%s': %s (already removed: %s)" % (path, error, result.summary()))


class _Frame:
    """One directory being cleared: its fd (None while closed for depth), identity and pending names."""

    __slots__ = ('fd', 'ident', 'real', 'shown', 'name', 'names', 'kept')

    def __init__(self, fd, ident, real, shown, name):
        self.fd = fd
        self.ident = ident
        self.real = real      # for matching mount points
        self.shown = shown    # as the caller wrote it, for messages
        self.name = name      # in its parent
        # Listed up front (sorted, popped from the end) so the fd can be closed
        # and reopened while descending deep trees.
        try:
            self.names = sorted(os.listdir(fd), reverse=True)
        except OSError:
            os.close(fd)
            raise
        self.kept = False


def _open_dir(name, dir_fd, ident, shown):
    """Open directory ``name`` under ``dir_fd`` without following a link; check it is still ``ident``."""
    fd = os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    st = os.fstat(fd)
    if (st.st_dev, st.st_ino) != ident:
        os.close(fd)
        raise OSError(errno.ESTALE, 'directory was replaced while being cleared', shown)
    return fd


def _check(check, result):
    """Call ``check`` (the run's lease check); what it raises carries what was removed so far (``result``)."""
    try:
        check()
    except Exception as e:
        e.result = result
        raise


def clear_tree(path, remove_self=False, dry_run=False, mount_points=frozenset(), check=None, check_every=1.0):
    """Remove everything inside directory ``path`` (and ``path`` itself with ``remove_self``).

    Symlinks are removed, never followed. Directories on another filesystem
    than ``path`` or listed in ``mount_points`` (real paths) are left alone and
    reported in ``skipped_mounts``; the directories above them stay. Returns a
    TreeResult; raises RemovalError (carrying the partial result) on the first
    error.

    ``check`` (the run's lease check) is called before the removal starts and
    again before a top-level entry once ``check_every`` seconds have passed;
    what it raises stops the removal there, with ``result`` set on it.
    """
    result = TreeResult()
    if check is not None and not dry_run:
        _check(check, result)
    checked = time.monotonic()
    norm = os.path.normpath(path)
    real = resolved_path(norm)
    parent, name = os.path.split(real)
    current = norm  # what is being worked on, for the error report
    stack = []
    parent_fd = None
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | getattr(os, 'O_CLOEXEC', 0))
        st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            raise OSError(errno.ENOTDIR, 'not a directory (or a symlink)')
        dev = st.st_dev
        root_is_mount = real in mount_points or os.fstat(parent_fd).st_dev != dev
        ident = (st.st_dev, st.st_ino)
        stack.append(_Frame(_open_dir(name, parent_fd, ident, norm), ident, real, norm, name))
        while stack:
            frame = stack[-1]
            top = len(stack) == 1
            if frame.names:
                if top and check is not None and not dry_run and time.monotonic() - checked >= check_every:
                    _check(check, result)
                    checked = time.monotonic()
                entry = frame.names.pop()
                child_real = os.path.join(frame.real, entry)
                current = os.path.join(frame.shown, entry)
                st = os.stat(entry, dir_fd=frame.fd, follow_symlinks=False)
                is_dir = stat.S_ISDIR(st.st_mode)
                if child_real in mount_points or (is_dir and st.st_dev != dev):
                    result.skipped_mounts.append(current)
                    for f in stack:
                        f.kept = True
                    if top:
                        result.top_kept.append(entry)
                elif is_dir:
                    ident = (st.st_dev, st.st_ino)
                    stack.append(_Frame(_open_dir(entry, frame.fd, ident, current), ident, child_real, current, entry))
                    _limit_open_dirs(stack)
                else:
                    if not dry_run:
                        os.unlink(entry, dir_fd=frame.fd)
                    result.files += 1
                    if stat.S_ISREG(st.st_mode):
                        result.bytes += st.st_size
                    if top:
                        result.top_removed.append(entry)
                continue
            # Directory done: step up to its parent, then remove it there.
            stack.pop()
            current = frame.shown
            if top:
                os.close(frame.fd)
                frame.fd = None
                if remove_self and root_is_mount:
                    result.skipped_mounts.append(norm)
                elif remove_self and not frame.kept:
                    if not dry_run:
                        os.rmdir(name, dir_fd=parent_fd)
                    result.dirs += 1
                    result.removed_self = True
                break
            up = stack[-1]
            if up.fd is None:
                up.fd = _open_dir('..', frame.fd, up.ident, up.shown)
            os.close(frame.fd)
            frame.fd = None
            if frame.kept:
                if len(stack) == 1:
                    result.top_kept.append(frame.name)
                continue
            if not dry_run:
                os.rmdir(frame.name, dir_fd=up.fd)
            result.dirs += 1
            if len(stack) == 1:
                result.top_removed.append(frame.name)
    except OSError as e:
        raise RemovalError(current, e.strerror or str(e), result)
    finally:
        for frame in stack:
            if frame.fd is not None:
                os.close(frame.fd)
        if parent_fd is not None:
            os.close(parent_fd)
    return result


def _limit_open_dirs(stack):
    """Close the fd of the deepest-but-MAX_OPEN_DIRS frame; it is reopened via '..' later."""
    if len(stack) > MAX_OPEN_DIRS:
        frame = stack[-MAX_OPEN_DIRS - 1]
        if frame.fd is not None:
            os.close(frame.fd)
            frame.fd = None


def cut(entries, limit=100):
    """At most ``limit`` entries, then a note of how many more there are."""
    entries = list(entries)
    if len(entries) <= limit:
        return entries
    return entries[:limit] + ['... and %d more' % (len(entries) - limit)]


def dir_state(path):
    """absent | empty | not_empty | symlink | not_dir."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return 'absent'
    if stat.S_ISLNK(st.st_mode):
        return 'symlink'
    if not stat.S_ISDIR(st.st_mode):
        return 'not_dir'
    return 'not_empty' if os.listdir(path) else 'empty'


def fix_dir(path, mode=0o700, uid=None, gid=None):
    """Give directory ``path`` ``mode`` and owner ``uid``/``gid`` (None: as it is) where they differ, never through
    a symlink. True when something changed."""
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise OSError(errno.ENOTDIR, 'not a directory (or a symlink)', path)
    changed = False
    want_uid = st.st_uid if uid in (None, -1) else uid
    want_gid = st.st_gid if gid in (None, -1) else gid
    if (want_uid, want_gid) != (st.st_uid, st.st_gid):
        os.chown(path, want_uid, want_gid, follow_symlinks=False)
        changed = True
    if mode is not None and stat.S_IMODE(st.st_mode) != mode:
        os.chmod(path, mode)
        changed = True
    return changed


def make_dir(path, mode=0o700, uid=None, gid=None):
    """Make directory ``path`` (its missing parents as ``mkdir -p`` makes them) with ``mode`` whatever the umask,
    owned by ``uid``/``gid`` (None: the module user's). An existing one is left as it is. True when made."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        # Private until its owner and mode are set.
        os.mkdir(path, 0o700)
    except FileExistsError:
        return False
    fix_dir(path, mode, uid, gid)
    return True


def empty_dir(path, dry_run=False, check=None, mounts_fail=True):
    """Remove what is in directory ``path`` (kept), as ``clear_tree`` does (never following a link, staying on its
    filesystem); a TreeResult. RemovalError when it fails part way, or (``mounts_fail``) when a mount point inside
    had to stay (the dir is then not empty)."""
    result = clear_tree(path, remove_self=False, dry_run=dry_run, mount_points=mount_points_below(resolved_path(path)),
                        check=check)
    if result.skipped_mounts and mounts_fail:
        raise RemovalError(result.skipped_mounts[0], 'a mount point (another filesystem or a bind mount) is inside; '
                           'it was left alone, so the directory is not empty', result)
    return result


class Refused(ValueError):
    """A path the staging rules refuse (``refusal``'s message)."""


def fresh_dir(path, mode=0o700, uid=None, gid=None, allowed_roots=(), shell_root=None, dry_run=False, check=None,
              mounts_fail=True):
    """Make ``path`` an empty directory with ``mode`` and owner ``uid``/``gid``, as a staging dir's state=empty:
    refused by the staging rules (Refused), emptied when it exists (``empty_dir``; ``check`` is the run's lease
    check), made when it is missing (``make_dir``), its mode and owner set where they differ. With ``dry_run``
    nothing is touched. A mount point inside fails it (RemovalError) unless ``mounts_fail`` is off: it is then
    left alone, in the result's ``skipped_mounts``. Returns (changed, the TreeResult of what was (or would be)
    removed)."""
    why = refusal(path, allowed_roots, shell_root)
    if why:
        raise Refused(why)
    path = os.path.normpath(path)
    if not os.path.lexists(path):
        if not dry_run:
            if check is not None:
                check()
            make_dir(path, mode, uid, gid)
        return True, TreeResult()
    tree = empty_dir(path, dry_run=dry_run, check=check, mounts_fail=mounts_fail)
    changed = bool(tree.files or tree.dirs)
    if dry_run:
        st = os.lstat(path)
        return changed or (mode is not None and stat.S_IMODE(st.st_mode) != mode) or \
            uid not in (None, -1, st.st_uid) or gid not in (None, -1, st.st_gid), tree
    return fix_dir(path, mode, uid, gid) or changed, tree


def remove_dir(path, allowed_roots=(), shell_root=None, dry_run=False, check=None):
    """Remove directory ``path`` with everything in it, as a staging dir's state=absent: refused by the staging rules
    (Refused), never following a link, staying on its filesystem (a mount point inside is left alone with the dirs
    above it, in ``skipped_mounts``). The TreeResult, or None when it is already absent."""
    why = refusal(path, allowed_roots, shell_root)
    if why:
        raise Refused(why)
    path = os.path.normpath(path)
    if not os.path.lexists(path):
        return None
    return clear_tree(path, remove_self=True, dry_run=dry_run, mount_points=mount_points_below(resolved_path(path)),
                      check=check)


EXTRA_PATHS_DIR = 'extra_paths'


def extra_path_target(staging_dir, shell_path, host_path):
    """Where an extra path is staged: ``<staging dir>/extra_paths<dirname(shell_path)>/<its name>``, its own path in
    the Alation shell kept below ``extra_paths/`` so that two files of one name do not collide."""
    parent = os.path.normpath(os.path.join(staging_dir, EXTRA_PATHS_DIR + os.path.dirname(shell_path)))
    return os.path.join(parent, os.path.basename(os.path.normpath(host_path)))


def _copy_tree(src, dst, counts):
    """Copy directory ``src`` into ``dst`` (made, or merged into), modes and times kept; a symlink inside is copied
    as a link (never followed out of the source); sockets, fifos and devices are skipped."""
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        s, d = os.path.join(src, name), os.path.join(dst, name)
        st = os.lstat(s)
        if stat.S_ISLNK(st.st_mode):
            if os.path.lexists(d):
                os.unlink(d)
            os.symlink(os.readlink(s), d)
            counts['files'] += 1
        elif stat.S_ISDIR(st.st_mode):
            _copy_tree(s, d, counts)
        elif stat.S_ISREG(st.st_mode):
            shutil.copy2(s, d)
            counts['files'] += 1
            counts['bytes'] += st.st_size
    shutil.copystat(src, dst)


def stage_extra_paths(staging_dir, extra_paths, dry_run=False):
    """Copy each extra path (``{host_path, shell_path}``, as alation_info returns them; a file or a dir, modes kept)
    to ``extra_path_target``. The path named is followed when it is a link; links inside a dir are copied as links.
    Returns [{host_path, shell_path, dest, files, bytes}] (with ``dry_run``, what would be copied, nothing touched).
    ValueError for an entry without both paths or a host path that is missing."""
    done = []
    for entry in extra_paths or ():
        host_path, shell_path = (entry or {}).get('host_path'), (entry or {}).get('shell_path')
        if not host_path or not shell_path or not os.path.isabs(host_path) or not os.path.isabs(shell_path):
            raise ValueError('extra_paths entry %r needs an absolute host_path and shell_path (as alation_info '
                             'returns them)' % (entry,))
        if not os.path.exists(host_path):
            raise ValueError('extra path %s (%s in the Alation shell) does not exist: create it or take it out of '
                             'extra_paths' % (host_path, shell_path))
        dest = extra_path_target(staging_dir, shell_path, host_path)
        counts = dict(files=0, bytes=0)
        if os.path.isdir(host_path):
            if dry_run:
                for root, dummy, files in os.walk(host_path):
                    counts['files'] += len(files)
                    counts['bytes'] += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
            else:
                _copy_tree(host_path, dest, counts)
        else:
            counts.update(files=1, bytes=os.stat(host_path).st_size)
            if not dry_run:
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                shutil.copy2(host_path, dest)
        done.append(dict(host_path=host_path, shell_path=shell_path, dest=dest, **counts))
    return done
