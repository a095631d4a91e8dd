# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Pack the staging dir and the pg staging dir into one verified .tar.gz: plan, write, verify, publish.

The archive is one standard gzip stream (see _gzip) holding a GNU-format tar
(see _tar), so ``tar -xzf`` and Python's ``tarfile`` read it. Its first member
is a JSON manifest. It is written to a hidden temporary file in the backup
storage dir, read back and checked, and only then given its final name: an
archive under its final name is always complete and verified, with its
``.sha256`` beside it.

Standard library only, except the optional accelerators _gzip imports lazily.
"""

import datetime
import fcntl
import hashlib
import io
import json
import os
import re
import socket
import tarfile
import threading
import time
import zlib

from ansible_collections.alation.backup.plugins.module_utils._archive_names import (  # noqa: F401 (re-exported)
    DEFAULT_SUFFIX, MANIFEST_NAME, ArchiveError, archive_name, find_stale_tmp, free_timestamp, is_encrypted,
    list_archives, normalize_version_tag, seconds_until, sha256_of, sidecar_text, tmp_name, validate_suffix,
    validate_timestamp)
from ansible_collections.alation.backup.plugins.module_utils._gzip import (
    BLOCK_SIZE, PROGRAMS, abort, available_compressors, choose_compressor, default_threads, native_level,
    open_compressor, open_decompressor, program_argv, verifier_for)
from ansible_collections.alation.backup.plugins.module_utils._gpg import Encryption, check_encrypted, check_recipient
from ansible_collections.alation.backup.plugins.module_utils._host import fsync_dir, human, is_enospc, write_file
from ansible_collections.alation.backup.plugins.module_utils._host import check_space as _check_space
from ansible_collections.alation.backup.plugins.module_utils._runner import F_SETPIPE_SZ, join_argv
from ansible_collections.alation.backup.plugins.module_utils._tar import (  # noqa: F401 (scan_sources re-exported)
    TAR_BUFSIZE, check_archive_outside_sources, normalize_sources, scan_sources, write_tar)
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

MANIFEST_FORMAT_VERSION = 1
# timestamp=auto waits at most for the next minute to start.
MAX_WAIT_S = 61
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


def resolve_owner(owner, group, accounts=None):
    """uid, gid (-1 for 'leave as is') from names or numeric ids, as ``accounts`` (default: this host) knows them."""
    try:
        return (accounts if accounts is not None else Accounts()).owner_ids(owner, group)
    except ValueError as e:
        raise ArchiveError(str(e))


def check_space(dest, needed):
    return _check_space(
        dest, needed, 'the archive (at worst the uncompressed size of the sources)',
        'free some space, choose another storage_dir, or set space_check: false if you know the data compresses well',
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


# -- verification --------------------------------------------------------------

def verify_stream(raw, verifier, name):
    """Decompress ``raw`` to its end (gzip CRC and length checked) and index the tar in it.

    Returns (members, source file bytes, first member name); the manifest's
    bytes are not counted. The index is read by tarfile in stream mode.
    """
    stream = open_decompressor(verifier, raw)
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
        abort(stream)
        raise ArchiveError('verification of %s failed: %s' % (name, e))
    except BaseException:
        abort(stream)
        raise
    try:
        stream.close()
    except ArchiveError as e:  # the decompressor program failed
        raise ArchiveError('verification of %s failed: %s' % (name, e))
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

    def __init__(self, path, verifier, writer, reader=None):
        super().__init__(daemon=True)
        self.path, self.verifier, self.writer = path, verifier, writer
        self.reader = reader  # an encrypted archive's compressed stream comes from a pipe (see EncryptTee)
        self.result = self.error = None
        self.bytes_read = 0

    def run(self):
        try:
            reader = self.reader or FollowReader(self.path, self.writer)
            try:
                self.result = verify_stream(reader, self.verifier, self.path)
            finally:
                self.bytes_read = reader.pos
                reader.close()
        except BaseException as e:
            self.error = e


class PipeReader(io.RawIOBase):
    """The read end of a pipe, counting what it reads."""

    def __init__(self, fd):
        super().__init__()
        self.fd = fd
        self.pos = 0

    def readable(self):
        return True

    def readinto(self, b):
        n = os.readv(self.fd, [b])
        self.pos += n
        return n

    def close(self):
        if not self.closed:
            os.close(self.fd)  # a writer still writing then gets EPIPE instead of waiting forever
        super().close()


class EncryptTee(object):
    """Where the compressor writes when the archive is encrypted: into gpg (``sink``), and a copy into a pipe.

    The Verifier reads that pipe, so the gzip stream and its tar are checked as
    they are made, in memory: no plaintext byte reaches the disk, and the file
    (ciphertext) is checked by its sha256 and its packets.
    """

    def __init__(self, sink, check):
        self.sink = sink
        self.check = check  # the Verifier: when it stops reading, its error is the one to report
        rfd, self.wfd = os.pipe()
        try:
            fcntl.fcntl(self.wfd, F_SETPIPE_SZ, BLOCK_SIZE)
        except OSError:
            pass
        self.reader = check.reader = PipeReader(rfd)
        self.size = 0

    def writable(self):
        return True

    def flush(self):
        pass

    def write(self, data):
        view = memoryview(data).cast('B')
        self.sink.write(view)
        done = 0
        try:
            while done < len(view):
                done += os.write(self.wfd, view[done:])
        except BrokenPipeError:
            self.check.join()
            raise self.check.error or ArchiveError('verification stopped reading the compressed stream after %d '
                                                   'bytes' % (self.size + done))
        self.size += done
        return done

    def _end(self):
        if self.wfd is not None:
            os.close(self.wfd)  # the verifier sees the end of the stream
            self.wfd = None

    def close(self):
        try:
            self.sink.close()  # gpg ends the message and exits; its failure is raised here
        finally:
            self._end()

    def abort(self):
        abort(self.sink)
        self._end()


# -- the whole operation -------------------------------------------------------

def wait_for_minute(timestamp, now=None, sleep=time.sleep):
    """Sleep from ``now`` until the minute ``timestamp`` (UTC) starts, MAX_WAIT_S at most; return the seconds slept."""
    wait = min(seconds_until(timestamp, now), MAX_WAIT_S)
    if wait > 0:
        sleep(wait)
    return wait


class Plan(object):
    """Everything decided before writing: validated options, names, the source scan.

    ``now`` (UTC, aware) is the time timestamp=auto is taken from.
    """

    def __init__(self, params, available=None, now=None):
        self.sources = normalize_sources(params['sources'])
        self.dest = os.path.abspath(params['storage_dir'])
        if not os.path.isdir(self.dest):
            raise ArchiveError('storage_dir %s is not an existing directory: create the backup storage dir first'
                               % self.dest)
        self.version_tag = normalize_version_tag(params['version_tag'])
        self.suffix = validate_suffix(params.get('suffix') or DEFAULT_SUFFIX)
        self.auto_timestamp = params.get('timestamp') in (None, '', 'auto')
        if self.auto_timestamp:
            self.timestamp = free_timestamp(self.dest, self.version_tag, self.suffix, now)
        else:
            self.timestamp = validate_timestamp(params['timestamp'])
        self.level = 6 if params.get('compression_level') is None else int(params['compression_level'])
        native_level('zlib', self.level)  # validates 1-9
        self.threads = default_threads() if params.get('threads') is None else int(params['threads'])
        if self.threads < 1:
            raise ArchiveError('threads %r must be at least 1' % (params.get('threads'),))
        self.mode = parse_mode(params.get('mode') if params.get('mode') is not None else '0600')
        # The one place users and groups are looked up: the owner here, the names in the tar headers.
        self.accounts = Accounts(params.get('chroot'))
        self.uid, self.gid = resolve_owner(params.get('owner'), params.get('group'), self.accounts)
        self.available = available if available is not None else available_compressors()
        self.compressor = choose_compressor(params.get('compressor') or 'auto', self.available)
        self.native_level = native_level(self.compressor, self.level)
        self.name = archive_name(self.timestamp, self.version_tag, self.suffix,
                                 encrypted=bool(params.get('encrypt_recipient')))
        self.path = os.path.join(self.dest, self.name)
        self.sha256_path = self.path + '.sha256'
        if os.path.lexists(self.path):
            raise ArchiveError('archive %s already exists and is never overwritten: use another timestamp or '
                               'suffix, or move the existing archive away' % self.path)
        check_archive_outside_sources(self.path, self.sources)
        self.summary, self.totals = scan_sources(self.sources)
        self.manifest = build_manifest(self.timestamp, self.version_tag, self.name, self.summary, self.totals,
                                       self.compressor, self.native_level, params.get('manifest_extra'))
        self.space_check = params.get('space_check', True) is not False
        self.free = check_space(self.dest, self.totals['tar_bytes_max']) if self.space_check else None
        self.stale_tmp = find_stale_tmp(self.dest, self.suffix)
        self.unsealed = unsealed_archives(self.dest, self.suffix)
        # The read-back follows the write only where cores are to spare: with 2 CPUs
        # the two Python threads contend (measured slower); afterwards it is ~1 s per GB.
        self.verify_alongside = default_threads() >= 4
        self.verifier = verifier_for(self.available)
        # Last, as it makes a private keyring to check the key in (close() removes it).
        self.encryption = None
        if params.get('encrypt_recipient'):
            self.encryption = Encryption(params['encrypt_recipient'], params.get('encrypt_public_key'),
                                         params.get('gpg_homedir'))

    def close(self):
        """Remove the private keyring of the encryption (when there is one)."""
        if self.encryption:
            self.encryption.close()

    def commands(self):
        """The programs a run starts (none when the compressor and the verifier are in-process)."""
        cmds = []
        if self.compressor in PROGRAMS:
            cmds.append(join_argv(program_argv(self.compressor, self.native_level, self.threads)))
        if self.encryption:
            cmds.append(join_argv(self.encryption.argv))
        if self.verifier in PROGRAMS:
            cmds.append(join_argv(program_argv(self.verifier)))
        return cmds

    def preview(self):
        """The result of a check-mode run: what a real run would do."""
        return dict(changed=True, path=self.path, timestamp=self.timestamp, sha256_path=self.sha256_path,
                    members=self.totals['members'], source_bytes=self.totals['bytes'], sources=self.summary,
                    compressor=self.compressor, compression_level=self.native_level, threads=self.threads,
                    manifest=self.manifest, removed_stale_tmp=self.stale_tmp, completed_sha256=self.unsealed,
                    **self.encryption_result())

    def encryption_result(self):
        return dict(encrypted=bool(self.encryption),
                    recipient=self.encryption.fingerprint if self.encryption else None)


def check_before_run(params, available=None):
    """state=check: what the archive step needs that can be known before the run touches anything, checked as
    the step will take it. {encrypted, recipient, compressor}; ArchiveError (GpgError) saying what is wrong."""
    found = dict(encrypted=False, recipient=None)
    found['compressor'] = choose_compressor(params.get('compressor') or 'auto',
                                            available if available is not None else available_compressors())
    if params.get('encrypt_recipient'):
        key = check_recipient(params['encrypt_recipient'], params.get('encrypt_public_key'), params.get('gpg_homedir'))
        found.update(encrypted=True, recipient=key['fingerprint'])
    return found


def unsealed_archives(dest, suffix=DEFAULT_SUFFIX):
    """Archives without their .sha256: a run stopped between the two renames of the publish left them."""
    return [path for path in list_archives(dest, suffix) if not os.path.lexists(path + '.sha256')]


def seal(path, verifier, mode, uid, gid):
    """Write the .sha256 an archive under its final name lacks, after reading it all back (its gzip CRC, its tar).

    The archive was verified before its rename; it is read again because it
    has lain there since, and a damaged one gets no .sha256 (the freshness
    guard then never counts it). An encrypted one cannot be read here: its
    packets are checked instead.
    """
    if is_encrypted(path):
        check_encrypted(path)
    else:
        verify_archive(path, verifier)
    name = os.path.basename(path)
    tmp = os.path.join(os.path.dirname(path), tmp_name(name + '.sha256'))
    write_file(tmp, sidecar_text(sha256_of(path), name, os.path.getsize(path)), mode, uid, gid, replace=False)
    os.rename(tmp, path + '.sha256')
    fsync_dir(os.path.dirname(path))


def create_archive(plan, sleep=time.sleep, lease_check=None):
    """Write, verify and publish the archive described by ``plan``; return the module result.

    With timestamp=auto, first wait for the archive's minute to start (``sleep`` does the waiting).
    ``lease_check`` (the run's lease check) is called before the stale temporary files go and before the
    publish: what it raises stops the run there, its own temporary files removed.
    """
    waited = wait_for_minute(plan.timestamp, sleep=sleep) if plan.auto_timestamp else 0
    started = time.monotonic()
    removed = []
    if plan.stale_tmp and lease_check:
        lease_check()
    for path in plan.stale_tmp:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    completed = []
    for path in plan.unsealed:
        try:
            seal(path, plan.verifier, plan.mode, plan.uid, plan.gid)
            completed.append(path)
        except ArchiveError:
            pass  # damaged: it stays without a .sha256, so nothing counts it as a backup
    tmp = os.path.join(plan.dest, tmp_name(plan.name))
    tmp_sha = os.path.join(plan.dest, tmp_name(plan.name + '.sha256'))
    manifest_bytes = (json.dumps(plan.manifest, indent=2, sort_keys=True) + '\n').encode('utf-8')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    out = HashingFile(fd)
    check = Verifier(tmp, plan.verifier, out)
    tee = None
    done = False
    try:
        if plan.encryption:
            # gpg between the compressor and the file; the verifier reads the compressed stream from a pipe.
            tee = EncryptTee(plan.encryption.filter(out), check)
        if plan.verify_alongside or tee:
            check.start()
        try:
            compressed = open_compressor(plan.compressor, plan.native_level, plan.threads, tee or out)
            try:
                members, file_bytes = write_tar(compressed, manifest_bytes, plan.sources, plan.accounts)
                compressed.close()
                if tee:
                    tee.close()
            except BaseException:
                abort(compressed)
                raise
        finally:
            out.finish()  # on failure too, so the verifier stops at the end of the file
            if tee:
                tee.abort()  # (after close, only reaps gpg) the verifier sees the end of the stream
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
        if check.ident is None:
            check.start()
        os.fsync(fd)  # while the verifier reads (the rest) from the page cache
        check.join()
        verified_at = time.monotonic()
        if check.error is not None:
            raise check.error
        compressed_size = tee.size if tee else out.size
        if check.result != (members, file_bytes, MANIFEST_NAME) or check.bytes_read != compressed_size:
            got = tuple(check.result)
            raise ArchiveError('verification of %s failed: read back %d bytes, %d members / %d file bytes (first '
                               '%r); wrote %d bytes, %d members / %d file bytes (first %s)'
                               % (tmp, check.bytes_read, got[0], got[1], got[2], compressed_size, members,
                                  file_bytes, MANIFEST_NAME))
        digest = out.sha256.hexdigest()
        if tee:
            # The file holds ciphertext only: read back, it must hash as written and be a message to our key.
            if sha256_of(tmp) != digest:
                raise ArchiveError('verification of %s failed: read back, it does not hash to what was written'
                                   % tmp)
            plan.encryption.check_file(tmp)
            verified_at = time.monotonic()
        write_file(tmp_sha, sidecar_text(digest, plan.name, out.size), plan.mode, plan.uid, plan.gid, replace=False)
        if lease_check:
            lease_check()
        _publish(plan, tmp, tmp_sha)
        done = True
    except OSError as e:
        if is_enospc(e):
            raise ArchiveError('no space left in %s while writing the archive (%d compressed bytes written, '
                               '%s of sources): the temporary file was removed; free space or choose another '
                               'storage_dir' % (plan.dest, out.size, human(plan.totals['bytes'])))
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
    return dict(changed=True, path=plan.path, timestamp=plan.timestamp, waited_s=round(waited, 3), size=out.size,
                sha256=digest, sha256_path=plan.sha256_path, members=members, source_bytes=file_bytes,
                sources=plan.summary, compressor=plan.compressor, compression_level=plan.native_level,
                threads=plan.threads, verified_with=check.verifier,
                executed_commands=plan.commands(),
                duration_s=round(duration, 3),
                # The read-back runs alongside the write: 'verify' is only the part left after it.
                phases_s=dict(write=round(written_at - started, 3), verify=round(verified_at - written_at, 3),
                              publish=round(duration - (verified_at - started), 3)),
                throughput_mb_s=round(file_bytes / duration / 1e6, 1) if duration > 0 else None,
                manifest=plan.manifest, removed_stale_tmp=removed, completed_sha256=completed,
                **plan.encryption_result())


def _publish(plan, tmp, tmp_sha):
    """Give both files their final names: the archive first, its .sha256 last, the dir fsynced after each.

    A crash between the two leaves an archive without its .sha256, which
    the next run reads back and completes (seal); never a .sha256 without
    its archive. A lock on dest makes the existence check and the renames
    one step for concurrent runs; the archive is hard-linked (fails if the
    name exists, never overwrites), with rename as the fallback on
    filesystems without links.
    """
    dfd = os.open(plan.dest, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(dfd, fcntl.LOCK_EX)
        except OSError:
            pass  # NFS cannot lock a directory: the no-replace link below still guards the archive
        appeared = ArchiveError('archive %s appeared while this one was written (another run?); it is never '
                                'overwritten: use another timestamp or suffix' % plan.path)
        if os.path.lexists(plan.path):
            raise appeared
        try:
            os.link(tmp, plan.path)
            os.unlink(tmp)
        except FileExistsError:
            raise appeared
        except OSError:
            os.rename(tmp, plan.path)  # no hard links here (some network filesystems)
        os.fsync(dfd)
        # A .sha256 of that name without its archive was a leftover: replaced.
        os.rename(tmp_sha, plan.sha256_path)
        os.fsync(dfd)
    finally:
        os.close(dfd)  # releases the lock
