# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack the staging dir and the pg staging dir into one verified .tar.gz.

The archive is one standard gzip stream holding a GNU-format tar, so
``tar -xzf`` and Python's ``tarfile`` read it. Its first member is a JSON
manifest. It is written to a hidden temporary file in the backup storage dir,
read back and checked, and only then given its final name: an archive under
its final name is always complete and verified, with its ``.sha256`` beside it.

Compression uses every core while the output stays one gzip stream. The
fastest compressor present is used: the ``isal`` Python package (ISA-L), the
``igzip`` program, the ``zlib-ng`` Python package, ``pigz``, and always the
standard library's zlib (blocks deflated in parallel threads, as pigz does).

Standard library only, except the optional accelerators imported lazily.
"""

import datetime
import errno
import fcntl
import grp
import hashlib
import importlib
import io
import json
import os
import re
import pwd
import shlex
import socket
import stat
import struct
import tarfile
import tempfile
import threading
import time
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.alation.backup.plugins.module_utils._archive_names import (  # noqa: F401 (re-exported)
    ARCHIVE_RE, DEFAULT_SUFFIX, ArchiveError, archive_name, default_timestamp, find_stale_tmp, host_label,
    normalize_version_tag, tmp_name, tmp_pattern, validate_suffix, validate_timestamp)
from ansible_collections.alation.backup.plugins.module_utils._host import human, is_enospc, write_file
from ansible_collections.alation.backup.plugins.module_utils._host import check_space as _check_space
from ansible_collections.alation.backup.plugins.module_utils._runner import find_program, open_pipe
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

MANIFEST_NAME = 'alation_backup_manifest.json'
MANIFEST_FORMAT_VERSION = 1
# Python's default PAX format adds ~1 KiB per entry; GNU format is what GNU tar writes.
TAR_FORMAT = tarfile.GNU_FORMAT
TAR_BUFSIZE = 64 * 1024
BLOCK_SIZE = 1024 * 1024
DEFLATE_WINDOW = 32 * 1024

# Fastest first: what compressor=auto tries, in order.
COMPRESSORS = ('isal', 'igzip', 'zlib-ng', 'pigz', 'zlib')
INSTALL_HINTS = {
    'isal': 'install the isal Python package into the Python that runs the module '
            '(pip install isal), or use compressor=auto',
    'igzip': 'install the igzip program (Debian/Ubuntu package isal; RHEL/Fedora package isa-l), '
             'or use compressor=auto',
    'zlib-ng': 'install the zlib-ng Python package into the Python that runs the module '
               '(pip install zlib-ng), or use compressor=auto',
    'pigz': 'install pigz (apt-get install pigz / dnf install pigz), or use compressor=auto',
}
# compression_level 1-9 onto ISA-L's 0-3 (its level 0 compresses too poorly to use).
ISAL_LEVELS = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 3}

MODE_RE = re.compile(r'^0?[0-7]{3,4}$')


# -- validation (pure) ---------------------------------------------------------

def parse_mode(value):
    """File mode from ``'0600'``/``'600'`` (octal text) or an int (YAML's 0600 is already 384)."""
    if isinstance(value, int) and not isinstance(value, bool):
        mode = value
    elif isinstance(value, str) and MODE_RE.match(value):
        mode = int(value, 8)
    else:
        raise ArchiveError("mode %r must be an octal string such as '0600' (quote it in YAML)" % (value,))
    if not 0 <= mode <= 0o7777:
        raise ArchiveError('mode %r is out of range (0000-7777 octal)' % (value,))
    return mode


def resolve_owner(owner, group, root=None):
    """uid, gid (-1 for 'leave as is') from names or numeric ids."""
    try:
        return Accounts(root).owner_ids(owner, group)
    except ValueError as e:
        raise ArchiveError(str(e))


def native_level(compressor, level):
    """The level each compressor is given for compression_level 1-9."""
    if not 1 <= int(level) <= 9:
        raise ArchiveError('compression_level %r must be 1 to 9' % (level,))
    if compressor in ('isal', 'igzip'):
        return ISAL_LEVELS[int(level)]
    return int(level)


def _importable(module):
    try:
        importlib.import_module(module)
        return True
    except ImportError:
        return False


def which(name):
    """The path of program ``name`` on this host, or None (the compressors run on the host, never in the shell)."""
    return find_program(None, name)[0]


def available_compressors(which=which, importable=_importable):
    """{name: True/False} for every compressor this host can run."""
    return {
        'isal': importable('isal.igzip_threaded'),
        'igzip': which('igzip') is not None,
        'zlib-ng': importable('zlib_ng.gzip_ng_threaded'),
        'pigz': which('pigz') is not None,
        'zlib': True,
    }


def choose_compressor(requested, available):
    if requested in (None, 'auto'):
        return next(name for name in COMPRESSORS if available.get(name))
    if requested not in COMPRESSORS:
        raise ArchiveError('compressor %r is unknown: use auto or one of %s' % (requested, ', '.join(COMPRESSORS)))
    if not available.get(requested):
        raise ArchiveError('compressor %s was asked for but is not available on this host: %s'
                           % (requested, INSTALL_HINTS[requested]))
    return requested


def default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


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
                'choose a dest_dir outside every source (a parent of a source is fine)'
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


def _refuse_special(path, st):
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
            _refuse_special(p, st)
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


def check_space(dest_dir, needed):
    return _check_space(
        dest_dir, needed, 'the archive (at worst the uncompressed size of the sources)',
        'free some space, choose another dest_dir, or set space_check: false if you know the data compresses well',
        error=ArchiveError)


def build_manifest(timestamp, version_tag, archive, summary, totals, compressor, level, extra=None):
    manifest = dict(
        format_version=MANIFEST_FORMAT_VERSION,
        archive=archive,
        host=socket.gethostname(),
        fqdn=socket.getfqdn(),
        timestamp=timestamp,
        version_tag=version_tag,
        created_utc=datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ'),
        compressor=compressor,
        compression_level=level,
        members=totals['members'],
        source_bytes=totals['bytes'],
        sources=[dict(s) for s in summary],
    )
    for key, value in (extra or {}).items():
        if key in manifest:
            raise ArchiveError('manifest_extra key %r is reserved (the module sets it); rename it' % (key,))
        manifest[key] = value
    return manifest


# -- writing -------------------------------------------------------------------

class HashingFile(object):
    """Write-only file object over an fd: hashes and counts every byte it writes.

    The compressors write their output here, so the sha256 is of the bytes as
    written (no second pass over the file). It also tells a FollowReader how
    far the file is written and when it is finished.
    """

    def __init__(self, fd):
        self.fd = fd
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.finished = False
        self.cond = threading.Condition()

    def write(self, data):
        view = memoryview(data).cast('B')
        self.sha256.update(view)
        done = 0
        while done < len(view):
            done += os.write(self.fd, view[done:])
        with self.cond:
            self.size += done
            self.cond.notify_all()
        return done

    def writable(self):
        return True

    def flush(self):
        pass

    def finish(self):
        """No more writes (success or not): readers stop at the end of the file."""
        with self.cond:
            self.finished = True
            self.cond.notify_all()


class FollowReader(io.RawIOBase):
    """Reads a file while a HashingFile still appends to it, like ``tail -f``.

    At the end of what is written so far it waits for more, and reports the
    end of file only once the writer has finished.
    """

    def __init__(self, path, writer):
        super().__init__()
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.writer = writer
        self.pos = 0

    def readable(self):
        return True

    def readinto(self, b):
        writer = self.writer
        while True:
            n = os.readv(self.fd, [b])
            if n:
                self.pos += n
                return n
            with writer.cond:
                writer.cond.wait_for(lambda: writer.size > self.pos or writer.finished, timeout=1)
                if writer.finished and writer.size <= self.pos:
                    return 0

    def close(self):
        if not self.closed:
            os.close(self.fd)
        super().close()


def _deflate_block(data, zdict, level):
    # A raw deflate of one block, primed with the previous block's last 32 KiB
    # and ended on a byte boundary (sync flush) so blocks simply concatenate.
    c = zlib.compressobj(level, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, zdict) if zdict else \
        zlib.compressobj(level, zlib.DEFLATED, -15, 8)
    return c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)


class ZlibBlockWriter(object):
    """One gzip stream from the standard library's zlib, using ``threads`` cores.

    pigz's technique: the input is cut into 1 MiB blocks deflated in parallel
    (zlib releases the GIL), each primed with the previous block's last 32 KiB
    so the ratio stays that of plain gzip; outputs are written in order and the
    CRC-32 is computed as they are.
    """

    def __init__(self, out, level, threads):
        self.out = out
        self.closed = False
        self.level = level
        self.threads = max(1, threads)
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.pending = deque()
        self.buf = bytearray()
        self.prev_tail = b''
        self.crc = 0
        self.length = 0
        # gzip header: no name, mtime 0, OS unknown (like isal's).
        self.out.write(b'\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff')

    def writable(self):
        return True

    def write(self, data):
        self.buf += data
        while len(self.buf) >= BLOCK_SIZE:
            self._submit(bytes(self.buf[:BLOCK_SIZE]))
            del self.buf[:BLOCK_SIZE]
        return len(data)

    def _submit(self, block):
        zdict, self.prev_tail = self.prev_tail, block[-DEFLATE_WINDOW:]
        if self.pool is None:
            self._emit(_deflate_block(block, zdict, self.level), block)
            return
        self.pending.append((self.pool.submit(_deflate_block, block, zdict, self.level), block))
        while len(self.pending) > 2 * self.threads:
            self._drain_one()

    def _drain_one(self):
        future, block = self.pending.popleft()
        self._emit(future.result(), block)

    def _emit(self, compressed, block):
        self.crc = zlib.crc32(block, self.crc)
        self.length += len(block)
        self.out.write(compressed)

    def close(self):
        if self.closed:
            return
        try:
            if self.buf:
                self._submit(bytes(self.buf))
                self.buf = bytearray()
            while self.pending:
                self._drain_one()
            final = zlib.compressobj(self.level, zlib.DEFLATED, -15)
            self.out.write(final.compress(b'') + final.flush())
            self.out.write(struct.pack('<II', self.crc, self.length & 0xFFFFFFFF))
        finally:
            self.abort()

    def abort(self):
        if self.pool:
            for pending in self.pending:  # (shutdown's cancel_futures needs Python 3.9)
                pending[0].cancel()
            self.pending.clear()
            self.pool.shutdown(wait=True)
        self.closed = True


class PipeCompressor(object):
    """A compressor program fed through a pipe; Python reads, hashes and writes its output."""

    def __init__(self, argv, out):
        self.argv = argv
        self.out = out
        self.error = None
        self.stderr = tempfile.TemporaryFile()
        self.proc = open_pipe(argv, self.stderr, BLOCK_SIZE)
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self):
        try:
            while True:
                chunk = self.proc.stdout.read(BLOCK_SIZE)
                if not chunk:
                    return
                self.out.write(chunk)
        except BaseException as e:  # e.g. ENOSPC: stop the program so our writes fail too
            self.error = e
            self.proc.kill()

    def _failure(self):
        if self.error is not None:
            return self.error
        self.stderr.seek(0)
        err = self.stderr.read().decode('utf-8', 'replace').strip()
        return ArchiveError('%s failed (exit code %s): %s' % (shlex.join(self.argv), self.proc.returncode, err))

    def writable(self):
        return True

    def write(self, data):
        view = memoryview(data).cast('B')
        done = 0
        try:
            while done < len(view):
                done += self.proc.stdin.write(view[done:])
            return done
        except BrokenPipeError:
            self.proc.wait()
            self.pump.join()
            raise self._failure()

    def flush(self):
        pass

    def close(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.pump.join()
        self.proc.wait()
        if self.error is not None or self.proc.returncode != 0:
            raise self._failure()

    def abort(self):
        self.proc.kill()
        self.proc.wait()
        self.pump.join()


def program_argv(name, level=None, threads=None):
    """The command line of a compressor program, or of a decompressor (no level) reading stdin."""
    if level is None:
        return [which(name), '-dc']
    if name == 'igzip':
        return [which('igzip'), '-c', '-%d' % level, '-T', str(threads)]
    return [which('pigz'), '-c', '-n', '-%d' % level, '-p', str(threads)]


def open_compressor(name, level, threads, out):
    """A writable file object that compresses into ``out``; close() ends the gzip stream."""
    if name == 'isal':
        from isal import igzip_threaded
        return igzip_threaded.open(out, 'wb', compresslevel=level, threads=threads)
    if name == 'zlib-ng':
        from zlib_ng import gzip_ng_threaded
        return gzip_ng_threaded.open(out, 'wb', compresslevel=level, threads=threads)
    if name in ('igzip', 'pigz'):
        return PipeCompressor(program_argv(name, level, threads), out)
    return ZlibBlockWriter(out, level, threads)


def _abort(compressed):
    """Stop a compressor after a failure, whatever state it is in."""
    try:
        if hasattr(compressed, 'abort'):
            compressed.abort()
        else:
            compressed.close()
    except Exception:
        pass


class TarWriter(object):
    """A GNU-format tar stream written straight into ``out``, without following links.

    Headers come from tarfile's own encoder (``TarInfo.tobuf``); file data is
    copied in 1 MiB reads. tarfile's stream writer re-buffers every 16 KiB and
    keeps every member in a list: this does neither, so it is faster and its
    memory does not grow with the number of files (only hard-linked files are
    remembered, to store their second names as links).
    """

    def __init__(self, out):
        self.out = out
        self.offset = 0
        self.members = 0
        self.file_bytes = 0
        self.inodes = {}
        self.names = {}
        self.buf = bytearray(BLOCK_SIZE)

    def _write(self, data):
        self.out.write(data)
        self.offset += len(data)

    def _name(self, kind, ident):
        key = (kind, ident)
        if key not in self.names:
            try:
                self.names[key] = pwd.getpwuid(ident).pw_name if kind == 'u' else grp.getgrgid(ident).gr_name
            except KeyError:
                self.names[key] = ''  # an id without a name: tar stores the number only
        return self.names[key]

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
            _refuse_special(path, st)
        ti.mode = stat.S_IMODE(mode)
        ti.uid, ti.gid, ti.mtime = st.st_uid, st.st_gid, st.st_mtime
        ti.uname, ti.gname = self._name('u', st.st_uid), self._name('g', st.st_gid)
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


def write_tar(fileobj, manifest_bytes, sources):
    """Write the tar stream (manifest first); return (members, source file bytes) as written."""
    tar = TarWriter(fileobj)
    info = tarfile.TarInfo(MANIFEST_NAME)
    info.size = len(manifest_bytes)
    info.mtime = int(time.time())
    info.mode = 0o600
    info.uid, info.gid = os.geteuid(), os.getegid()
    info.uname, info.gname = tar._name('u', info.uid), tar._name('g', info.gid)
    tar.add(info, data=manifest_bytes)
    for src in sources:
        if src['optional'] and not os.path.lexists(src['path']):
            continue
        for path, arcname, st in iter_entries(src['path'], src['arcname']):
            tar.add(tar.tarinfo(path, arcname, st), path)
    tar.close()
    return tar.members, tar.file_bytes


# -- verification --------------------------------------------------------------

def verifier_for(available):
    """How to read the archive back: in-process ISA-L, else a program, else zlib."""
    if available.get('isal'):
        return 'isal'
    for prog in ('igzip', 'pigz'):
        if available.get(prog):
            return prog
    return 'zlib'


def _feed(raw, stdin):
    """Copy a reader into a program's stdin (the decompressor programs read the archive this way)."""
    buf = memoryview(bytearray(BLOCK_SIZE))
    try:
        while True:
            n = raw.readinto(buf)
            if not n:
                break
            stdin.write(buf[:n])
    except (BrokenPipeError, ValueError):
        pass  # the program stopped early: its exit code tells why
    finally:
        try:
            stdin.close()
        except BrokenPipeError:
            pass


def verify_stream(raw, verifier, name):
    """Decompress ``raw`` to its end (gzip CRC and length checked) and index the tar in it.

    Returns (members, source file bytes, first member name); the manifest's
    bytes are not counted. The index is read by tarfile in stream mode.
    """
    proc = feeder = None
    if verifier == 'isal':
        from isal import igzip
        stream = igzip.IGzipFile(fileobj=raw, mode='rb')
    elif verifier in ('igzip', 'pigz'):
        stderr = tempfile.TemporaryFile()
        proc = open_pipe(program_argv(verifier), stderr, BLOCK_SIZE)
        feeder = threading.Thread(target=_feed, args=(raw, proc.stdin), daemon=True)
        feeder.start()
        stream = proc.stdout
    else:
        import gzip
        stream = gzip.GzipFile(fileobj=raw, mode='rb')
    members, file_bytes, first = 0, 0, None
    try:
        with tarfile.open(fileobj=stream, mode='r|', bufsize=TAR_BUFSIZE) as tar:
            for member in tar:
                members += 1
                if first is None:
                    first = member.name
                elif member.isreg():  # file data of the sources: the manifest is not counted
                    file_bytes += member.size
        # The tar index ends before the gzip trailer: read on so the CRC and length are checked.
        while stream.read(BLOCK_SIZE):
            pass
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        if proc:
            proc.kill()
        raise ArchiveError('verification of %s failed: %s' % (name, e))
    finally:
        stream.close()
        if proc:
            proc.wait()
            feeder.join()
    if proc and proc.returncode != 0:
        stderr.seek(0)
        raise ArchiveError('verification of %s failed: %s -dc exited %d: %s' % (
            name, verifier, proc.returncode, stderr.read().decode('utf-8', 'replace').strip()))
    return members, file_bytes, first


def verify_archive(path, verifier):
    """Verify a complete archive file (see verify_stream)."""
    with io.FileIO(path, 'rb') as raw:
        return verify_stream(raw, verifier, path)


class Verifier(threading.Thread):
    """Reads the temporary archive back while it is being written.

    On a host with spare cores the read-back then costs almost no extra
    time; it still reads every byte from the file, and its result counts only
    once the writer has finished and the reader has reached the end.
    """

    def __init__(self, path, verifier, writer):
        super().__init__(daemon=True)
        self.path, self.verifier, self.writer = path, verifier, writer
        self.result = self.error = None
        self.bytes_read = 0

    def run(self):
        try:
            reader = FollowReader(self.path, self.writer)
            try:
                self.result = verify_stream(reader, self.verifier, self.path)
            finally:
                self.bytes_read = reader.pos
                reader.close()
        except BaseException as e:
            self.error = e


# -- the whole operation -------------------------------------------------------

class Plan(object):
    """Everything decided before writing: validated options, names, the source scan."""

    def __init__(self, params, available=None):
        self.sources = normalize_sources(params['sources'])
        self.dest_dir = os.path.abspath(params['dest_dir'])
        if not os.path.isdir(self.dest_dir):
            raise ArchiveError('dest_dir %s is not an existing directory: create the backup storage dir first'
                               % self.dest_dir)
        self.version_tag = normalize_version_tag(params['version_tag'])
        self.timestamp = validate_timestamp(params.get('timestamp') or default_timestamp())
        self.suffix = validate_suffix(params.get('suffix') or DEFAULT_SUFFIX)
        self.level = 6 if params.get('compression_level') is None else int(params['compression_level'])
        native_level('zlib', self.level)  # validates 1-9
        self.threads = default_threads() if params.get('threads') is None else int(params['threads'])
        if self.threads < 1:
            raise ArchiveError('threads %r must be at least 1' % (params.get('threads'),))
        self.mode = parse_mode(params.get('mode') if params.get('mode') is not None else '0600')
        self.uid, self.gid = resolve_owner(params.get('owner'), params.get('group'))
        self.available = available if available is not None else available_compressors()
        self.compressor = choose_compressor(params.get('compressor') or 'auto', self.available)
        self.native_level = native_level(self.compressor, self.level)
        self.name = archive_name(self.timestamp, self.version_tag, self.suffix)
        self.path = os.path.join(self.dest_dir, self.name)
        self.sha256_path = self.path + '.sha256'
        if os.path.lexists(self.path):
            raise ArchiveError('archive %s already exists and is never overwritten: use another timestamp or '
                               'suffix, or move the existing archive away' % self.path)
        check_archive_outside_sources(self.path, self.sources)
        self.summary, self.totals = scan_sources(self.sources)
        self.manifest = build_manifest(self.timestamp, self.version_tag, self.name, self.summary, self.totals,
                                       self.compressor, self.native_level, params.get('manifest_extra'))
        self.space_check = params.get('space_check', True) is not False
        self.free = check_space(self.dest_dir, self.totals['tar_bytes_max']) if self.space_check else None
        self.stale_tmp = find_stale_tmp(self.dest_dir, self.suffix)
        # The read-back follows the write only where cores are to spare: with 2 CPUs
        # the two Python threads contend (measured slower); afterwards it is ~1 s per GB.
        self.verify_alongside = default_threads() >= 4
        self.verifier = verifier_for(self.available)

    def commands(self):
        """The programs a run starts (none when the compressor and the verifier are in-process)."""
        cmds = []
        if self.compressor in ('igzip', 'pigz'):
            cmds.append(shlex.join(program_argv(self.compressor, self.native_level, self.threads)))
        if self.verifier in ('igzip', 'pigz'):
            cmds.append(shlex.join(program_argv(self.verifier)))
        return cmds

    def preview(self):
        """The result of a check-mode run: what a real run would do."""
        return dict(changed=True, path=self.path, sha256_path=self.sha256_path, members=self.totals['members'],
                    source_bytes=self.totals['bytes'], sources=self.summary, compressor=self.compressor,
                    compression_level=self.native_level, threads=self.threads, manifest=self.manifest,
                    removed_stale_tmp=self.stale_tmp)


def create_archive(plan, log=None):
    """Write, verify and publish the archive described by ``plan``; return the module result."""
    started = time.monotonic()
    removed = []
    for path in plan.stale_tmp:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    tmp = os.path.join(plan.dest_dir, tmp_name(plan.name))
    tmp_sha = os.path.join(plan.dest_dir, tmp_name(plan.name + '.sha256'))
    manifest_bytes = (json.dumps(plan.manifest, indent=2, sort_keys=True) + '\n').encode('utf-8')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    out = HashingFile(fd)
    check = Verifier(tmp, plan.verifier, out)
    if plan.verify_alongside:
        check.start()
    done = False
    try:
        try:
            compressed = open_compressor(plan.compressor, plan.native_level, plan.threads, out)
            try:
                members, file_bytes = write_tar(compressed, manifest_bytes, plan.sources)
                compressed.close()
            except BaseException:
                _abort(compressed)
                raise
        finally:
            out.finish()  # on failure too, so the verifier stops at the end of the file
        written_at = time.monotonic()
        if os.fstat(fd).st_size != out.size:
            raise ArchiveError('%s holds %d bytes but %d were written' % (tmp, os.fstat(fd).st_size, out.size))
        if (members, file_bytes) != (plan.totals['members'], plan.totals['bytes']):
            raise ArchiveError(
                'the sources changed while they were archived (scanned %d members / %d bytes, archived %d / %d): '
                'stop whatever writes to them and run again'
                % (plan.totals['members'], plan.totals['bytes'], members, file_bytes))
        os.fchmod(fd, plan.mode)
        if plan.uid != -1 or plan.gid != -1:
            os.fchown(fd, plan.uid, plan.gid)
        if not plan.verify_alongside:
            check.start()
        os.fsync(fd)  # while the verifier reads (the rest) from the page cache
        check.join()
        verified_at = time.monotonic()
        if check.error is not None:
            raise check.error
        if check.result != (members, file_bytes, MANIFEST_NAME) or check.bytes_read != out.size:
            got = tuple(check.result)
            raise ArchiveError('verification of %s failed: read back %d bytes, %d members / %d file bytes (first '
                               '%r); wrote %d bytes, %d members / %d file bytes (first %s)'
                               % (tmp, check.bytes_read, got[0], got[1], got[2], out.size, members, file_bytes,
                                  MANIFEST_NAME))
        digest = out.sha256.hexdigest()
        write_file(tmp_sha, '%s  %s\n' % (digest, plan.name), plan.mode, plan.uid, plan.gid, replace=False)
        _publish(plan, tmp, tmp_sha)
        done = True
    except OSError as e:
        if is_enospc(e):
            raise ArchiveError('no space left in %s while writing the archive (%d compressed bytes written, '
                               '%s of sources): the temporary file was removed; free space or choose another '
                               'dest_dir' % (plan.dest_dir, out.size, human(plan.totals['bytes'])))
        raise
    finally:
        out.finish()
        if check.ident is not None:
            check.join()
        os.close(fd)
        if not done:
            for p in (tmp, tmp_sha):
                try:
                    os.unlink(p)
                except FileNotFoundError:
                    pass
    duration = time.monotonic() - started
    return dict(changed=True, path=plan.path, size=out.size, sha256=digest, sha256_path=plan.sha256_path,
                members=members, source_bytes=file_bytes, sources=plan.summary, compressor=plan.compressor,
                compression_level=plan.native_level, threads=plan.threads, verified_with=check.verifier,
                executed_commands=plan.commands(),
                duration_s=round(duration, 3),
                # The read-back runs alongside the write: 'verify' is only the part left after it.
                phases_s=dict(write=round(written_at - started, 3), verify=round(verified_at - written_at, 3),
                              publish=round(duration - (verified_at - started), 3)),
                throughput_mb_s=round(file_bytes / duration / 1e6, 1) if duration > 0 else None,
                manifest=plan.manifest, removed_stale_tmp=removed)


def _publish(plan, tmp, tmp_sha):
    """Give both files their final names: the .sha256 first, the archive last.

    So an archive under its final name always has its checksum beside it. A
    lock on dest_dir makes the existence check and the renames one step for
    concurrent runs; the archive is hard-linked (fails if the name exists, never
    overwrites), with rename as the fallback on filesystems without links.
    """
    dfd = os.open(plan.dest_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)
        except OSError:
            pass  # NFS cannot lock a directory: the no-replace link below still guards the archive
        appeared = ArchiveError('archive %s appeared while this one was written (another run?); it is never '
                                'overwritten: use another timestamp or suffix' % plan.path)
        if os.path.lexists(plan.path):
            raise appeared
        # A .sha256 without its archive is a leftover of an interrupted run: replaced.
        os.rename(tmp_sha, plan.sha256_path)
        try:
            os.link(tmp, plan.path)
            os.unlink(tmp)
        except FileExistsError:
            raise appeared
        except OSError:
            os.rename(tmp, plan.path)  # no hard links here (some network filesystems)
        os.fsync(dfd)
    finally:
        os.close(dfd)  # releases the lock
