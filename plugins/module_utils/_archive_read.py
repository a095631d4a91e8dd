# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reading an Alation backup archive back: find it, read its manifest, check its
sha256, unpack it and check what came out against the manifest.

The cores of archive_info (``ArchiveInfo``) and archive_extract (``Extract``).
Standard library only.
"""

import json
import os
import tarfile
import time

from ansible_collections.alation.backup.plugins.module_utils._archive import MANIFEST_NAME, scan_sources
from ansible_collections.alation.backup.plugins.module_utils._archive_names import (
    is_encrypted, list_archives, newest_good_info, read_sidecar, sha256_of)
from ansible_collections.alation.backup.plugins.module_utils._gpg import Decryption
from ansible_collections.alation.backup.plugins.module_utils._host import check_space, command_failure, free_bytes
from ansible_collections.alation.backup.plugins.module_utils._restore import (
    RestoreError, prepare_target, remove_made)
from ansible_collections.alation.backup.plugins.module_utils._runner import find_program
from ansible_collections.alation.backup.plugins.module_utils._users import Accounts

# Counts the archive module records per source, compared after extracting.
COUNTED = ('entries', 'files', 'dirs', 'symlinks', 'hardlinks', 'bytes')
# GNU tar ends a failure with lines saying only that it gave up; one carries
# the word "Error", which would hide the line that names the cause.
TAR_GAVE_UP = ('Error is not recoverable', 'Exiting with failure status', 'Child returned status')


# -- the archive's head and checksum -------------------------------------------

def read_head(path, count=2, decryption=None):
    """The manifest (a dict) and the TarInfo of the first ``count`` members after it.

    Reads only the start of the gzip stream: the manifest is the first member.
    An encrypted archive is decrypted as it is read (``decryption``, a
    _gpg.Decryption), and gpg stopped once the manifest is read.
    """
    if not is_encrypted(path):
        with open(path, 'rb') as f:
            return _read_head(f, path, count)
    if decryption is None:
        raise RestoreError('%s is encrypted: its manifest can be read only with the secret key its public key '
                           'matches: give decrypt_key (the restore role: alation_restore_decrypt_key)' % path)
    stream = decryption.open(path)
    try:
        return _read_head(stream.stdout, path, count)
    except RestoreError:
        why = stream.failure()  # gpg's own failure is the cause of an unreadable stream
        if why:
            raise RestoreError(why)
        raise
    finally:
        stream.abort()


def _read_head(fileobj, path, count):
    members = []
    try:
        with tarfile.open(fileobj=fileobj, mode='r|gz') as tar:
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
        raise RestoreError('cannot read the manifest of %s: %s' % (path, e))
    if not isinstance(manifest, dict):
        raise RestoreError('the manifest of %s is not a JSON object' % path)
    return manifest, members


def read_sha256_file(path, archive_name):
    """The hex digest recorded in ``path`` (``sha256sum`` format) for ``archive_name``."""
    try:
        return read_sidecar(path, archive_name)[0]
    except ValueError as e:
        if not os.path.exists(path):
            raise RestoreError('%s is missing: the archive module writes it beside every archive; without it the '
                               'archive cannot be checked' % path)
        raise RestoreError(str(e))


def decrypt_argument_spec():
    """The options of the modules that read an encrypted archive (the decrypt doc fragment); open_decryption reads them."""
    return dict(
        decrypt_key=dict(type='str', no_log=True),
        decrypt_passphrase=dict(type='str', no_log=True),
    )


def open_decryption(params):
    """The secret key of ``params['decrypt_key']`` in a private keyring, or None without one (close it after)."""
    if not params.get('decrypt_key'):
        return None
    return Decryption(params['decrypt_key'], params.get('decrypt_passphrase'))


class ArchiveInfo(object):
    """Find the archive (``path``, or the newest in ``storage_dir``), check its sha256, read its manifest.

    ``params``: archive_info's options. Read-only, so check mode changes nothing.
    """

    def __init__(self, params):
        self.p = params
        self.result = dict(changed=False)

    def run(self):
        """The result; raises RestoreError (with what was found so far in ``self.result``)."""
        try:
            return self._run()
        except OSError as e:
            raise RestoreError('reading %s failed: %s' % (self.result.get('path') or self.p['storage_dir'], e))

    def _run(self):
        p, result = self.p, self.result
        path = p['path']
        if p['storage_dir'] and p.get('newest_good'):
            if not os.path.isdir(p['storage_dir']):
                raise RestoreError('the backup storage dir %s does not exist' % p['storage_dir'])
            result.update(newest_good_info(p['storage_dir'], p['suffix'], rehash=p['checksum']))
            path = result['path']
            if not path:
                return result
            result.update(size=os.path.getsize(path), sha256_path=path + '.sha256')
            return result
        if p['storage_dir']:
            if not os.path.isdir(p['storage_dir']):
                raise RestoreError('the backup storage dir %s does not exist' % p['storage_dir'])
            archives = list_archives(p['storage_dir'], p['suffix'])
            result['archives'] = len(archives)
            if not archives:
                raise RestoreError('no archive in %s (looked for <YYYYMMDDHHMM>_<version>_%s.tar.gz[.gpg]): back up '
                                   'first, or name one' % (p['storage_dir'], p['suffix']))
            path = archives[-1]
        if not os.path.isfile(path):
            raise RestoreError('the archive %s does not exist or is not a file' % path)
        result.update(path=path, size=os.path.getsize(path), sha256_path=path + '.sha256',
                      encrypted=is_encrypted(path))
        if p['checksum']:
            recorded = read_sha256_file(path + '.sha256', os.path.basename(path))
            started = time.monotonic()
            actual = sha256_of(path)
            result.update(sha256=actual, sha256_recorded=recorded, duration_s=round(time.monotonic() - started, 2))
            if actual != recorded:
                raise RestoreError('sha256 check failed for %s: its .sha256 records %s, the file hashes to %s. The '
                                   'archive is damaged (or was changed after it was written): restore from another '
                                   'archive' % (path, recorded, actual))
        if p['manifest']:
            decryption = open_decryption(p) if result['encrypted'] else None
            try:
                result['manifest'], dummy = read_head(path, count=0, decryption=decryption)
            finally:
                if decryption:
                    decryption.close()
        return result


# -- unpacking -----------------------------------------------------------------------

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


def decompressor():
    """(name, program for tar): pigz when it is installed, else gzip."""
    pigz, dummy = find_program(None, 'pigz')
    return ('pigz', pigz) if pigz else ('gzip', 'gzip')


def tar_failure(what, run):
    """The message for a failed tar run: the line naming the cause, not tar's giving up."""
    stderr = run['stderr'] or ''
    cause = '\n'.join(line for line in stderr.splitlines() if not any(m in line for m in TAR_GAVE_UP))
    return command_failure(what, run['rc'], cause.strip() or stderr)


class Extract(object):
    """Unpack an archive (or some of its sources) into ``dest`` and check what came out against the manifest.

    ``params``: archive_extract's options; ``runner`` runs tar. ``warn``
    takes what went wrong only in cleaning up. ``set_mode(path)`` gives
    ``dest`` its mode when the run makes it (the module passes Ansible's own
    mode handling, so symbolic modes work as in the file module).
    """

    def __init__(self, params, runner, check_mode=False, warn=None, set_mode=None):
        self.p = params
        self.runner = runner
        self.check_mode = check_mode
        self.warnings = []
        self.warn = warn or self.warnings.append
        self.set_mode = set_mode
        self.dest = os.path.normpath(params['dest'])
        self.work = None  # with strip: the hidden dir beside dest it is unpacked into
        self.encrypted = is_encrypted(params['path'])
        self.decryption = None  # an encrypted archive: the secret key, in a private keyring until the end
        self.result = dict(changed=False, dest=self.dest, executed_commands=runner.executed_commands,
                           encrypted=self.encrypted)

    def run(self):
        """The result; raises RestoreError (what was done so far is in ``self.result``)."""
        try:
            if self.encrypted:
                self.decryption = open_decryption(self.p)
            return self._run()
        except OSError as e:
            raise RestoreError('unpacking into %s failed: %s' % (self.dest, e))
        finally:
            if self.work:
                remove_made(self.work, self.warn)
            if self.decryption:
                self.decryption.close()

    def _plan(self):
        """Check everything that can be checked before writing; return the tar argv without its target."""
        p, result = self.p, self.result
        if p['strip'] and len(p['members']) != 1:
            raise RestoreError('strip needs exactly one source in members (got %s): name the one source that '
                               'becomes dest' % (p['members'] or 'none'))
        manifest, dummy = read_head(p['path'], count=0, decryption=self.decryption)
        sources = members_to_extract(manifest, p['members'])
        needed = space_needed(sources, p['extra_space'])
        name, program = decompressor()
        result.update(sources=[dict(s) for s in sources], bytes=sum(int(s.get('bytes', 0)) for s in sources),
                      space_needed=needed, decompressor=name)
        if p['space_check']:
            # Said before the check fails: a caller tells a short filesystem from a broken archive by it.
            result['space_free'] = free_bytes(self.dest)
            check_space(self.dest, needed, 'unpacking %s' % os.path.basename(p['path']),
                        'free space there or choose another place', error=RestoreError)
        result['moved_aside'] = prepare_target(self.dest, p['force'], 'dest', dry_run=self.check_mode)
        result['changed'] = True
        # An encrypted archive reaches tar on its stdin, from gpg --decrypt: no plaintext copy on disk.
        argv = ['tar', '--extract', '--file', '-' if self.encrypted else p['path'],
                '--use-compress-program=%s' % program]
        if Accounts(p.get('chroot')).root:
            # The archive's numeric ids are the shell's; its names would be looked up on the host.
            argv.append('--numeric-owner')
        return argv

    def _target(self):
        """Make the directory tar unpacks into: dest itself, or with strip a hidden one beside it."""
        p = self.p
        if p['strip']:
            # Unpacked beside dest and renamed into place when complete.
            parent, name = os.path.split(self.dest)
            os.makedirs(parent, exist_ok=True)
            self.work = os.path.join(parent, '.%s.extract-%d' % (name, os.getpid()))
            remove_made(self.work, self.warn)
            os.mkdir(self.work, 0o700)
            return self.work
        uid, gid = Accounts(p.get('chroot')).user(p['owner'], 'owner') if p['owner'] else (os.geteuid(), os.getegid())
        os.makedirs(self.dest, exist_ok=True)
        os.chown(self.dest, uid, gid)
        if self.set_mode:
            self.set_mode(self.dest)
        return self.dest

    def _run(self):
        p, result = self.p, self.result
        argv = self._plan()
        if self.check_mode:
            preview = self.runner.preview(argv + ['--directory', self.dest, '--'] + p['members'])
            if self.encrypted:
                preview = '%s | %s' % (self.decryption.preview(p['path']), preview)
            result['executed_commands'] = [preview]
            return result
        target = self._target()
        started = time.monotonic()
        if self.encrypted:
            run = self.decryption.pipe_into(p['path'], argv + ['--directory', target, '--'] + p['members'])
            self.runner.executed_commands.append(run['cmd'])
            if run['decrypt_error']:
                raise RestoreError(run['decrypt_error'])
        else:
            run = self.runner.run(argv + ['--directory', target, '--'] + p['members'])
        result['duration_s'] = round(time.monotonic() - started, 2)
        if run['rc'] != 0:
            raise RestoreError(tar_failure('tar unpacking %s' % p['path'], run))
        problems = []
        for src in result['sources']:
            found = scan_extracted(os.path.join(target, src['arcname']), src['arcname'])
            src['found'] = dict((k, found[k]) for k in COUNTED)
            problems += count_mismatches(src, found)
        if problems:
            raise RestoreError('what was unpacked from %s does not match its manifest: %s'
                               % (p['path'], '; '.join(problems)))
        if p['strip']:
            if os.path.isdir(self.dest) and not os.path.islink(self.dest):
                os.rmdir(self.dest)  # empty: prepare_target refused or moved a non-empty one
            os.rename(os.path.join(self.work, p['members'][0]), self.dest)
        if result['duration_s']:
            result['throughput_mb_s'] = round(result['bytes'] / 1e6 / result['duration_s'], 1)
        return result
