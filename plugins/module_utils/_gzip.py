# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The gzip back ends: which compressor runs, at which level, and the reader that checks the result.

Every back end writes one standard gzip stream using every core. The fastest
present is used: the ``isal`` Python package (ISA-L, in-process threads), the
``igzip`` program, ``pigz``, and always the standard library's zlib (blocks
deflated in parallel threads, as pigz does). Programs run on the host, fed
through pipes.

Each back end earns its place against the benchmark (bench/archive_bench.py,
2 CPUs, speed against ``tar -czf``): isal 9.4x, igzip 8.4x, threaded zlib
2.1x, pigz 2.0x. igzip and pigz are programs admins have; zlib is always
there. (zlib-ng, 3.4x, was dropped: like isal it needs a pip package on the
managed host, and isal is faster at a similar size.)

Standard library only, except ``isal``, imported lazily.
"""

import importlib
import os
import struct
import tempfile
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.alation.backup.plugins.module_utils._archive_names import ArchiveError
from ansible_collections.alation.backup.plugins.module_utils._host import command_failure
from ansible_collections.alation.backup.plugins.module_utils._runner import find_program, join_argv, open_pipe

BLOCK_SIZE = 1024 * 1024
DEFLATE_WINDOW = 32 * 1024

# Fastest first: what compressor=auto tries, in order.
COMPRESSORS = ('isal', 'igzip', 'pigz', 'zlib')
PROGRAMS = ('igzip', 'pigz')
INSTALL_HINTS = {
    'isal': 'install the isal Python package into the Python that runs the module '
            '(pip install isal), or use compressor=auto',
    'igzip': 'install the igzip program (Debian/Ubuntu package isal; RHEL/Fedora package isa-l), '
             'or use compressor=auto',
    'pigz': 'install pigz (apt-get install pigz / dnf install pigz), or use compressor=auto',
}
# compression_level 1-9 onto ISA-L's 0-3 (its level 0 compresses too poorly to use).
ISAL_LEVELS = {1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 3, 8: 3, 9: 3}


# -- choice (pure) -----------------------------------------------------------------

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


def verifier_for(available):
    """How to read an archive back: in-process ISA-L, else a program, else zlib."""
    if available.get('isal'):
        return 'isal'
    for prog in PROGRAMS:
        if available.get(prog):
            return prog
    return 'zlib'


def default_threads():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def program_argv(name, level=None, threads=None):
    """The command line of a compressor program, or of a decompressor (no level) reading stdin."""
    if level is None:
        return [which(name), '-dc']
    if name == 'igzip':
        return [which('igzip'), '-c', '-%d' % level, '-T', str(threads)]
    return [which('pigz'), '-c', '-n', '-%d' % level, '-p', str(threads)]


# -- stdlib zlib, in parallel blocks ---------------------------------------------------

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


# -- igzip and pigz through pipes ------------------------------------------------------

class _Program(object):
    """A gzip program between two pipes, with a thread moving data on one side of it."""

    def __init__(self, argv, mover):
        self.argv = argv
        self.error = None
        self.stderr = tempfile.TemporaryFile()
        self.proc = open_pipe(argv, self.stderr, BLOCK_SIZE)
        self.thread = threading.Thread(target=mover, daemon=True)
        self.thread.start()

    def failure(self):
        """What went wrong: the mover's own error, else the program's exit and stderr."""
        if self.error is not None:
            return self.error
        self.stderr.seek(0)
        return ArchiveError(command_failure(join_argv(self.argv), self.proc.returncode, self.stderr.read()))

    def abort(self):
        self.proc.kill()
        self.proc.wait()
        self.thread.join()
        self.proc.stdout.close()


class PipeCompressor(_Program):
    """A compressor program fed through a pipe; Python reads, hashes and writes its output."""

    def __init__(self, argv, out):
        self.out = out
        super(PipeCompressor, self).__init__(argv, self._pump)

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
            self.thread.join()
            raise self.failure()

    def flush(self):
        pass

    def close(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.thread.join()
        self.proc.wait()
        if self.error is not None or self.proc.returncode != 0:
            raise self.failure()


class PipeDecompressor(_Program):
    """A decompressor program (``-dc``) fed ``raw`` through a pipe; read() gives the data."""

    def __init__(self, argv, raw):
        self.raw = raw
        super(PipeDecompressor, self).__init__(argv, self._feed)

    def _feed(self):
        buf = memoryview(bytearray(BLOCK_SIZE))
        stdin = self.proc.stdin
        try:
            while True:
                n = self.raw.readinto(buf)
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

    def read(self, size=-1):
        return self.proc.stdout.read(size)

    def close(self):
        self.proc.stdout.close()
        self.proc.wait()
        self.thread.join()
        if self.proc.returncode != 0:
            raise self.failure()


# -- one entry point each way ----------------------------------------------------------

def open_compressor(name, level, threads, out):
    """A writable file object that compresses into ``out``; close() ends the gzip stream."""
    if name == 'isal':
        from isal import igzip_threaded
        return igzip_threaded.open(out, 'wb', compresslevel=level, threads=threads)
    if name in PROGRAMS:
        return PipeCompressor(program_argv(name, level, threads), out)
    return ZlibBlockWriter(out, level, threads)


def open_decompressor(name, raw):
    """A readable file object of what ``raw`` decompresses to.

    Reading to the end checks the gzip CRC and length; close() raises
    ArchiveError when the program (igzip, pigz) failed.
    """
    if name == 'isal':
        from isal import igzip
        return igzip.IGzipFile(fileobj=raw, mode='rb')
    if name in PROGRAMS:
        return PipeDecompressor(program_argv(name), raw)
    import gzip
    return gzip.GzipFile(fileobj=raw, mode='rb')


def abort(stream):
    """Stop a compressor or decompressor after a failure, whatever state it is in."""
    try:
        if hasattr(stream, 'abort'):
            stream.abort()
        else:
            stream.close()
    except Exception:
        pass
