# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The sources of an archive and the tar stream built from them.

The sources are checked and scanned (lstat only) before anything is written;
then a GNU-format tar, the manifest first, is written into whatever file
object compresses it. Links are stored, never followed; FIFOs, sockets and
devices are refused. Standard library only.
"""

import os
import stat
import tarfile
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_names import ArchiveError, MANIFEST_NAME
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

# Python's default PAX format adds ~1 KiB per entry; GNU format is what GNU tar writes.
TAR_FORMAT = tarfile.GNU_FORMAT
TAR_BUFSIZE = 64 * 1024
READ_SIZE = 1024 * 1024


# -- sources -------------------------------------------------------------------

def normalize_sources(sources):
    """Check the ``{path, arcname, optional}`` dicts; return them with absolute paths."""
    if not sources:
        raise ArchiveError('sources is empty: give at least one {path, arcname}')
    result = []
    seen = {}
    for i, src in enumerate(sources):
        if not isinstance(src, dict) or not src.get('path'):
            raise ArchiveError('sources[%d] = %r must be a dict with a path (and an arcname)' % (i, src))
        unknown = set(src) - {'path', 'arcname', 'optional'}
        if unknown:
            raise ArchiveError('sources[%d] has unknown keys %s: only path, arcname, optional'
                               % (i, ', '.join(sorted(unknown))))
        path = os.path.abspath(str(src['path']))
        arcname = str(src.get('arcname') or os.path.basename(path.rstrip('/')))
        norm = os.path.normpath(arcname)
        if os.path.isabs(arcname) or norm.startswith('..') or norm in ('.', '') or norm == MANIFEST_NAME:
            raise ArchiveError('sources[%d].arcname %r must be a relative name inside the archive '
                               '(no leading /, no .., not %s)' % (i, arcname, MANIFEST_NAME))
        for other, j in seen.items():
            if norm == other or norm.startswith(other + '/') or other.startswith(norm + '/'):
                raise ArchiveError('sources[%d].arcname %r clashes with sources[%d].arcname %r: '
                                   'give each source its own top-level name' % (i, norm, j, other))
        seen[norm] = i
        result.append(dict(path=path, arcname=norm, optional=bool(src.get('optional', False))))
    return result


def check_archive_outside_sources(archive_path, sources):
    """The archive (and its temporary file) must not be inside a source: it would pack itself."""
    target = os.path.realpath(os.path.dirname(archive_path))
    for src in sources:
        real = os.path.realpath(src['path'])
        if target == real or target.startswith(real.rstrip('/') + '/'):
            raise ArchiveError(
                'the archive would be written to %s, inside source %s (%s), and would pack itself: '
                'choose a dest outside every source (a parent of a source is fine)'
                % (os.path.dirname(archive_path), src['path'], src['arcname']))


def iter_entries(path, arcname):
    """Yield (path, arcname, lstat) for ``path`` and everything under it, sorted, never following links."""
    stack = [(path, arcname)]
    while stack:
        p, a = stack.pop()
        st = os.lstat(p)
        yield p, a, st
        if stat.S_ISDIR(st.st_mode):
            names = sorted(os.listdir(p), reverse=True)
            stack.extend((os.path.join(p, n), a + '/' + n) for n in names)


def refuse_special(path, st):
    """Raise ArchiveError unless ``path`` (its lstat ``st``) is a file, a directory or a link."""
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode):
        return
    kind = ('FIFO' if stat.S_ISFIFO(mode) else 'socket' if stat.S_ISSOCK(mode)
            else 'character device' if stat.S_ISCHR(mode) else 'block device' if stat.S_ISBLK(mode) else 'special file')
    raise ArchiveError('%s is a %s: a backup archive holds only files, directories and links; '
                       'remove it from the source (or stop what created it) and run again' % (path, kind))


def scan_sources(sources):
    """Walk every source once (lstat only) and count what the archive will hold.

    Refuses special files before anything is written. Returns a list of
    per-source dicts and the totals; a missing optional source is recorded as
    ``present: false``.
    """
    summary = []
    for src in sources:
        entry = dict(path=src['path'], arcname=src['arcname'], present=True,
                     entries=0, files=0, dirs=0, symlinks=0, hardlinks=0, bytes=0)
        try:
            st = os.lstat(src['path'])
        except FileNotFoundError:
            if src['optional']:
                entry['present'] = False
                summary.append(entry)
                continue
            raise ArchiveError('source %s (%s) does not exist: create it, fix the path, or mark the source '
                               'optional: true' % (src['path'], src['arcname']))
        if stat.S_ISLNK(st.st_mode):
            raise ArchiveError('source %s is a symlink (to %s): links are stored, never followed, so this '
                               'would archive only the link; give the real path %s'
                               % (src['path'], os.readlink(src['path']), os.path.realpath(src['path'])))
        seen_inodes = set()
        for p, a, st in iter_entries(src['path'], src['arcname']):
            refuse_special(p, st)
            entry['entries'] += 1
            if stat.S_ISDIR(st.st_mode):
                entry['dirs'] += 1
            elif stat.S_ISLNK(st.st_mode):
                entry['symlinks'] += 1
            elif st.st_nlink > 1 and (st.st_ino, st.st_dev) in seen_inodes:
                entry['hardlinks'] += 1  # stored as a link to the first name: no data
            else:
                if st.st_nlink > 1:
                    seen_inodes.add((st.st_ino, st.st_dev))
                entry['files'] += 1
                entry['bytes'] += st.st_size
        summary.append(entry)
    totals = dict(entries=sum(s['entries'] for s in summary), bytes=sum(s['bytes'] for s in summary))
    # Tar stream bound: a 512-byte header per entry (long names: one more), data padded to 512.
    totals['tar_bytes_max'] = (totals['bytes'] + 1536 * (totals['entries'] + 2)
                               + 512 * sum(s['files'] for s in summary) + 20 * 1024)
    totals['members'] = totals['entries'] + 1  # + the manifest
    return summary, totals


# -- the tar stream ----------------------------------------------------------------

class TarWriter(object):
    """A GNU-format tar stream written straight into ``out``, without following links.

    Headers come from tarfile's own encoder (``TarInfo.tobuf``); file data is
    copied in 1 MiB reads. tarfile's stream writer re-buffers every 16 KiB and
    keeps every member in a list: this does neither, so it is faster and its
    memory does not grow with the number of files (only hard-linked files are
    remembered, to store their second names as links).

    The user and group names in the headers are those of ``accounts``
    (default: this host's), so an archive of the Alation shell can carry the
    shell's names.
    """

    def __init__(self, out, accounts=None):
        self.out = out
        self.accounts = accounts if accounts is not None else Accounts()
        self.offset = 0
        self.members = 0
        self.file_bytes = 0
        self.inodes = {}
        self.names = {}
        self.buf = bytearray(READ_SIZE)

    def _write(self, data):
        self.out.write(data)
        self.offset += len(data)

    def _name(self, kind, ident):
        # '' for an id without a name: tar then stores the number only.
        key = (kind, ident)
        if key not in self.names:
            self.names[key] = (self.accounts.user_name if kind == 'u' else self.accounts.group_name)(ident)
        return self.names[key]

    def owner(self, ti, uid, gid):
        """Set the ids and names of ``ti``'s owner."""
        ti.uid, ti.gid = uid, gid
        ti.uname, ti.gname = self._name('u', uid), self._name('g', gid)

    def tarinfo(self, path, arcname, st):
        """The header of one entry from its lstat (what tarfile.gettarinfo does, with cached names)."""
        ti = tarfile.TarInfo(arcname)
        mode = st.st_mode
        if stat.S_ISREG(mode):
            inode = (st.st_ino, st.st_dev)
            if st.st_nlink > 1 and inode in self.inodes:
                ti.type, ti.linkname = tarfile.LNKTYPE, self.inodes[inode]
            else:
                if st.st_nlink > 1:
                    self.inodes[inode] = arcname
                ti.type, ti.size = tarfile.REGTYPE, st.st_size
        elif stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type, ti.linkname = tarfile.SYMTYPE, os.readlink(path)
        else:
            refuse_special(path, st)
        ti.mode = stat.S_IMODE(mode)
        ti.mtime = st.st_mtime
        self.owner(ti, st.st_uid, st.st_gid)
        return ti

    def add(self, ti, path=None, data=None):
        self._write(ti.tobuf(TAR_FORMAT, 'utf-8', 'surrogateescape'))
        self.members += 1
        if ti.type != tarfile.REGTYPE:
            return
        if data is not None:
            self._write(data)
        else:
            self._copy(path, ti.size)
            self.file_bytes += ti.size
        if ti.size % tarfile.BLOCKSIZE:
            self._write(bytes(tarfile.BLOCKSIZE - ti.size % tarfile.BLOCKSIZE))

    def _copy(self, path, size):
        # O_NOFOLLOW: a file swapped for a link since the lstat is refused, not followed.
        # O_NONBLOCK: should it have become a FIFO, reading it cannot hang.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            view = memoryview(self.buf)
            left = size
            while left:
                n = os.readv(fd, [view[:min(left, len(view))]])
                if not n:
                    raise ArchiveError('%s shrank while it was archived (%d of %d bytes read): stop whatever '
                                       'writes to the sources and run again' % (path, size - left, size))
                self._write(view[:n])
                left -= n
        finally:
            os.close(fd)

    def close(self):
        # End of archive: two zero blocks, padded to a 10 KiB record like GNU tar.
        self._write(bytes(2 * tarfile.BLOCKSIZE))
        if self.offset % tarfile.RECORDSIZE:
            self._write(bytes(tarfile.RECORDSIZE - self.offset % tarfile.RECORDSIZE))


def write_tar(fileobj, manifest_bytes, sources, accounts=None):
    """Write the tar stream (manifest first); return (members, source file bytes) as written.

    ``accounts`` gives the user and group names in the headers (see TarWriter).
    """
    tar = TarWriter(fileobj, accounts)
    info = tarfile.TarInfo(MANIFEST_NAME)
    info.size = len(manifest_bytes)
    info.mtime = int(time.time())
    info.mode = 0o600
    tar.owner(info, os.geteuid(), os.getegid())
    tar.add(info, data=manifest_bytes)
    for src in sources:
        if src['optional'] and not os.path.lexists(src['path']):
            continue
        for path, arcname, st in iter_entries(src['path'], src['arcname']):
            tar.add(tar.tarinfo(path, arcname, st), path)
    tar.close()
    return tar.members, tar.file_bytes
