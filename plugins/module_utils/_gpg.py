# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption at rest with GnuPG: the public key the archive is encrypted to, the encrypting
filter between the compressor and the file, the packet check of an encrypted archive, and the
decrypting stream the restore unpacks from.

gpg runs on the host (the archive module writes and the restore modules read host paths),
always with a private GNUPGHOME made for one module run and removed by ``close()``: the host's
own keyrings are only read (to export a public key), never written, and an agent started for a
secret key is stopped. Nothing secret goes on a command line: the secret key reaches
``gpg --import`` on its stdin, the passphrase ``--passphrase-fd`` through a pipe.

The recipient is named by its full fingerprint only: a name, an e-mail or a short key id could
pick another key that found its way into a keyring. Standard library only; gpg is a program.
"""

import os
import re
import shutil
import subprocess
import tempfile

from ansible_collections.alation.backup.plugins.module_utils._archive_names import ArchiveError
from ansible_collections.alation.backup.plugins.module_utils._gzip import BLOCK_SIZE, PipeCompressor
from ansible_collections.alation.backup.plugins.module_utils._host import command_failure, stderr_summary
from ansible_collections.alation.backup.plugins.module_utils._runner import find_program, join_argv, start

GPG_NAMES = ('gpg', 'gpg2')
INSTALL_HINT = 'install GnuPG on the host (apt-get install gnupg / dnf install gnupg2)'
# v4 keys have 40 hex digits, v5 keys 64.
FPR_RE = re.compile(r'^(?:[0-9A-F]{40}|[0-9A-F]{64})$')
# The session key encrypted to a public key, then the data: tag 1, then tag 18 (with MDC) or 20 (AEAD).
PUBKEY_RE = re.compile(r'^:pubkey enc packet: .*\bkeyid (?P<keyid>[0-9A-F]{16})\b', re.M)
ENCRYPTED_RE = re.compile(r'^:(?:encrypted data packet|aead encrypted packet):', re.M)
# The first packet must be a public-key encrypted session key (old or new packet format, tag 1).
FIRST_TAGS = (0x84, 0x85, 0x86, 0xc1)
# Key validity (field 2 of --with-colons): invalid, revoked, expired.
UNUSABLE = {'i': 'invalid', 'r': 'revoked', 'e': 'expired'}


class GpgError(ArchiveError):
    """Something about GnuPG or a key the user must fix; the message says what and how."""


def normalize_fingerprint(value, what='encrypt_recipient'):
    """``3160 7428 ...`` or ``0x3160...`` -> ``31607428...``; anything but a full fingerprint is refused."""
    text = re.sub(r'\s+', '', str(value or '')).upper()
    if text.startswith('0X'):
        text = text[2:]
    if not FPR_RE.match(text):
        raise GpgError('%s %r must be the full fingerprint of the public key (40 hex digits, as '
                       '"gpg --fingerprint <key>" shows them): a name, an e-mail or a short key id could pick '
                       'another key' % (what, value))
    return text


def find_gpg():
    path = find_program(None, GPG_NAMES)[0]
    if not path:
        raise GpgError('gpg not found on this host (looked for %s on PATH and in the usual dirs): %s'
                       % (', '.join(GPG_NAMES), INSTALL_HINT))
    return path


def temp_parent():
    """Where private keyrings go: /dev/shm (memory) when there is one, so a secret key never reaches a disk."""
    shm = '/dev/shm'
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else None


def parse_keys(colons):
    """The keys of ``gpg --with-colons --with-keygrip --list-keys`` output: one dict per primary key
    (fingerprint, keyid, validity, caps, keygrip, subkeys: [{fingerprint, keyid, validity, caps, keygrip}])."""
    keys = []
    last = None
    for line in colons.splitlines():
        f = line.split(':')
        if f[0] in ('pub', 'sec', 'sub', 'ssb'):
            last = dict(keyid=f[4], validity=f[1], caps=f[11] if len(f) > 11 else '', fingerprint='', keygrip='')
            if f[0] in ('pub', 'sec'):
                last['subkeys'] = []
                keys.append(last)
            elif keys:
                keys[-1]['subkeys'].append(last)
        elif f[0] == 'fpr' and last is not None and not last['fingerprint']:
            last['fingerprint'] = f[9]
        elif f[0] == 'grp' and last is not None and not last['keygrip']:
            last['keygrip'] = f[9]
    return keys


def parse_packets(text):
    """(keyids the session key is encrypted to, whether an encrypted data packet follows) from --list-packets."""
    return [m.group('keyid') for m in PUBKEY_RE.finditer(text)], bool(ENCRYPTED_RE.search(text))


def _failure(what, rc, stderr):
    return command_failure(what, rc, stderr)


class Keyring(object):
    """A private GNUPGHOME for one module run (mode 0700, in memory where /dev/shm is); ``close()`` removes it."""

    def __init__(self, gpg=None, home=None):
        self.gpg = gpg or find_gpg()
        # ``home``: an existing keyring of the host, only read (export), never removed.
        self.owned = home is None
        self.home = tempfile.mkdtemp(prefix='alation-gpg-', dir=temp_parent()) if self.owned else home
        if self.owned:
            os.chmod(self.home, 0o700)
        self.commands = []
        self.agent = False

    def argv(self, *args, **kw):
        """gpg's command line in this keyring; without ``agent`` no gpg-agent is started."""
        base = [self.gpg, '--homedir', self.home, '--batch', '--no-tty', '--trust-model', 'always']
        if not kw.get('agent'):
            base.append('--no-autostart')
        return base + list(args)

    def run(self, args, data=None, agent=False, raw=False):
        """(rc, stdout text (bytes with ``raw``), stderr text) of gpg ``args``; ``data`` (bytes) goes to its
        stdin, never its argv."""
        argv = self.argv(*args, agent=agent)
        self.agent = self.agent or agent
        self.commands.append(join_argv(argv))
        proc = start(argv)
        out, err = proc.communicate(data or b'')
        return proc.returncode, out if raw else out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace')

    def keys(self, secret=False):
        rc, out, err = self.run(['--with-colons', '--with-keygrip', '--fixed-list-mode',
                                 '--list-secret-keys' if secret else '--list-keys'], agent=secret)
        return parse_keys(out) if rc == 0 else []

    def _import(self, data, what, agent=False):
        rc, out, err = self.run(['--status-fd', '1', '--import'], data=data, agent=agent)
        imported = [line.split() for line in out.splitlines() if line.startswith('[GNUPG:] IMPORT_OK ')]
        if rc != 0 or not imported:
            raise GpgError(_failure('importing %s (gpg --import)' % what, rc or 2,
                                    err or 'no OpenPGP key in it') + ': give an ASCII-armored key')
        # IMPORT_OK <flags> <fingerprint>: flag 16 says a secret key came with it.
        return [(int(f[2]), f[3]) for f in imported if len(f) > 3]

    def import_public(self, data, what='the public key'):
        """Import public keys only: a secret key offered to the host that writes archives is refused."""
        if isinstance(data, str):
            if 'PRIVATE KEY BLOCK' in data:
                raise GpgError('%s is a secret key. The host that writes archives must hold only the public key '
                               '(gpg --armor --export <fingerprint>), so a stolen host cannot read them' % what)
            data = data.encode('utf-8')
        return self._import(data, what)

    def import_secret(self, text, what='decrypt_key'):
        """Import the secret key that decrypts (an agent holds it until close())."""
        data = text.encode('utf-8') if isinstance(text, str) else text
        done = self._import(data, what, agent=True)
        if not any(flags & 16 for flags, dummy in done):
            raise GpgError('%s holds no secret key (only a public one): give the ASCII-armored secret key '
                           '(gpg --armor --export-secret-keys <fingerprint>)' % what)
        return [fpr for dummy, fpr in done]

    def recipient(self, fingerprint):
        """The key of ``fingerprint`` (its primary or one of its subkeys) in this keyring, usable to encrypt."""
        for key in self.keys():
            parts = [key] + key['subkeys']
            if fingerprint not in [p['fingerprint'] for p in parts]:
                continue
            if key['validity'] in UNUSABLE:
                raise GpgError('the key %s is %s: encrypt to a valid key (alation_backup_encrypt_recipient)'
                               % (fingerprint, UNUSABLE[key['validity']]))
            usable = [p for p in parts if 'e' in p['caps'].lower() and p['validity'] not in UNUSABLE]
            if not usable:
                raise GpgError('the key %s has no valid encryption (sub)key: give the fingerprint of a key that can '
                               'encrypt (gpg --list-keys shows [E] beside it)' % fingerprint)
            return dict(fingerprint=key['fingerprint'], keyids=[p['keyid'] for p in parts])
        raise GpgError('no public key with fingerprint %s was given: put the ASCII-armored public key in '
                       'alation_backup_encrypt_public_key, or import it into the keyring alation_backup_gpg_homedir'
                       % fingerprint)

    def encrypt_argv(self, fingerprint):
        """gpg as a filter: stdin (the gzip stream, not compressed again) to stdout, encrypted to ``fingerprint``."""
        return self.argv('--quiet', '--compress-algo', 'none', '--recipient', fingerprint, '--encrypt',
                         '--output', '-')

    def check_packets(self, path, keyids=None):
        """Check, without the secret key, that ``path`` is an OpenPGP message encrypted to a public key
        (to one of ``keyids`` when given). Returns the keyids it is encrypted to."""
        with open(path, 'rb') as f:
            first = f.read(1)
        rc, out, err = self.run(['--list-packets', path])
        found, data = parse_packets(out)
        if not first or ord(first) not in FIRST_TAGS or not found or not data:
            raise GpgError('%s is not a GnuPG-encrypted archive (gpg --list-packets found %s): %s'
                           % (path, ', '.join(found) or 'no session key encrypted to a public key',
                              stderr_summary(err) if err.strip() else 'no encrypted data packet'))
        if keyids is not None and set(found).isdisjoint(keyids):
            raise GpgError('%s is encrypted to key id %s, not to the recipient (key ids %s)'
                           % (path, ', '.join(found), ', '.join(keyids)))
        return found

    def decrypt_argv(self, path, passphrase_fd=None):
        args = ['--quiet', '--pinentry-mode', 'loopback']
        if passphrase_fd is not None:
            args += ['--passphrase-fd', str(passphrase_fd)]
        return self.argv(*(args + ['--decrypt', '--output', '-', path]), agent=True)

    def close(self):
        """Stop the agent a secret key started, remove the keyring."""
        if self.agent:
            gpgconf = find_program(None, os.path.join(os.path.dirname(self.gpg), 'gpgconf'))[0] or \
                find_program(None, 'gpgconf')[0]
            if gpgconf:
                start([gpgconf, '--homedir', self.home, '--kill', 'gpg-agent'], stdin=subprocess.DEVNULL,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).wait()
            # Without gpgconf the agent ends by itself once its socket is gone.
        if self.owned:
            shutil.rmtree(self.home, ignore_errors=True)


def export_public(homedir, fingerprint, gpg=None):
    """The public key ``fingerprint`` exported from the keyring ``homedir`` on the host (read, never written).

    A keyring that also holds the secret key is refused: whoever takes the host could then read every archive.
    """
    homedir = homedir or os.path.join(os.path.expanduser('~'), '.gnupg')
    if not os.path.isdir(homedir):
        raise GpgError('the keyring %s does not exist: import the public key there (gpg --homedir %s --import '
                       'key.asc), give alation_backup_gpg_homedir, or put the ASCII-armored public key in '
                       'alation_backup_encrypt_public_key' % (homedir, homedir))
    ring = Keyring(gpg, home=homedir)
    rc, out, err = ring.run(['--with-colons', '--with-keygrip', '--fixed-list-mode', '--list-keys', fingerprint])
    keys = [k for k in parse_keys(out) if fingerprint in [p['fingerprint'] for p in [k] + k['subkeys']]]
    if rc != 0 or not keys:
        raise GpgError('no public key with fingerprint %s in the keyring %s: import it there (gpg --homedir %s '
                       '--import key.asc), or put the ASCII-armored public key in alation_backup_encrypt_public_key'
                       % (fingerprint, homedir, homedir))
    grips = [p['keygrip'] for p in [keys[0]] + keys[0]['subkeys'] if p['keygrip']]
    held = [g for g in grips if os.path.exists(os.path.join(homedir, 'private-keys-v1.d', g + '.key'))]
    if held:
        raise GpgError('the keyring %s holds the secret key of %s: whoever takes this host could read every '
                       'archive. Keep only the public key on the host (gpg --homedir %s --delete-secret-keys %s)'
                       % (homedir, fingerprint, homedir, fingerprint))
    rc, out, err = ring.run(['--export', fingerprint], raw=True)
    if rc != 0 or not out:
        raise GpgError(_failure('exporting the public key %s from %s' % (fingerprint, homedir), rc or 2, err))
    return out


class Encryption(object):
    """What the archive is encrypted to: the recipient's public key alone in a private keyring, gpg the filter.

    ``public_key``: ASCII-armored text; else the key is exported from the keyring ``homedir`` on the host.
    """

    def __init__(self, recipient, public_key=None, homedir=None, gpg=None):
        self.fingerprint = normalize_fingerprint(recipient)
        self.ring = Keyring(gpg)
        try:
            if public_key:
                self.ring.import_public(public_key, 'encrypt_public_key')
            else:
                self.ring.import_public(export_public(homedir, self.fingerprint, self.ring.gpg),
                                        'the public key from %s' % (homedir or '~/.gnupg'))
            key = self.ring.recipient(self.fingerprint)
        except BaseException:
            self.ring.close()
            raise
        self.fingerprint = key['fingerprint']  # the primary key's, when a subkey's was given
        self.keyids = key['keyids']
        self.argv = self.ring.encrypt_argv(self.fingerprint)

    def filter(self, out):
        """A writable file object: what is written to it goes through gpg, encrypted, into ``out``."""
        return PipeCompressor(self.argv, out)

    def check_file(self, path):
        """An encrypted archive cannot be read back here: check its packets (encrypted to our key)."""
        return self.ring.check_packets(path, self.keyids)

    def close(self):
        self.ring.close()


def check_recipient(recipient, public_key=None, homedir=None, gpg=None):
    """The archive step's key, checked before the run touches anything: imported from ``public_key`` or the
    keyring ``homedir`` as the archive imports it, of the fingerprint ``recipient``, neither expired nor revoked,
    with a key that can encrypt, and a trial message encrypted to it. Returns {fingerprint, keyids, commands};
    GpgError naming the fingerprint and what is wrong."""
    enc = Encryption(recipient, public_key, homedir, gpg)
    try:
        rc, out, err = enc.ring.run(['--quiet', '--compress-algo', 'none', '--recipient', enc.fingerprint,
                                     '--encrypt', '--output', '-'], data=b'alation.backup preflight\n', raw=True)
        if rc != 0 or not out:
            raise GpgError('%s: the archive could not be encrypted to it; give the fingerprint of a valid key '
                           'that can encrypt (alation_backup_encrypt_recipient)'
                           % _failure('a trial encryption to %s (gpg --encrypt)' % enc.fingerprint, rc or 2, err))
        return dict(fingerprint=enc.fingerprint, keyids=enc.keyids, commands=list(enc.ring.commands))
    finally:
        enc.close()


def check_encrypted(path, gpg=None):
    """check_packets without a recipient: an encrypted archive's structure, whoever it was encrypted to."""
    ring = Keyring(gpg)
    try:
        return ring.check_packets(path)
    finally:
        ring.close()


class DecryptStream(object):
    """``gpg --decrypt`` of one archive: ``stdout`` gives the gzip stream; ``failure()`` says why gpg failed."""

    def __init__(self, ring, path, passphrase=None, keyids=()):
        self.path = path
        self.ring, self.keyids = ring, keyids
        rfd = None
        if passphrase:
            # The passphrase reaches gpg through a pipe (--passphrase-fd), never its argv or environment.
            rfd, wfd = os.pipe()
            try:
                os.write(wfd, passphrase.encode('utf-8') + b'\n')
            finally:
                os.close(wfd)
        self.argv = ring.decrypt_argv(path, rfd)
        self.cmd = join_argv(self.argv)
        ring.commands.append(self.cmd)
        ring.agent = True
        self.stderr = tempfile.TemporaryFile()
        try:
            self.proc = start(self.argv, stdin=subprocess.DEVNULL, stderr=self.stderr,
                              pass_fds=(rfd,) if rfd else (), bufsize=BLOCK_SIZE)
        finally:
            if rfd is not None:
                os.close(rfd)
        self.stdout = self.proc.stdout

    def failure(self):
        """Stop reading, wait for gpg; the message when it failed (not when it was only cut short), else None."""
        if not self.stdout.closed:
            self.stdout.close()
        rc = self.proc.wait()
        if rc in (0, -13):  # -13: SIGPIPE, the reader stopped early on purpose (or failed first)
            return None
        self.stderr.seek(0)
        err = self.stderr.read().decode('utf-8', 'replace')
        return _failure('decrypting %s (gpg --decrypt)' % self.path, rc, err) + self._hint(err)

    def _hint(self, err):
        # gpg says "No secret key" for a wrong passphrase too: the key ids the archive is encrypted to tell which.
        if 'passphrase' not in err.lower() and 'No secret key' not in err:
            return ''
        try:
            to = self.ring.check_packets(self.path)
        except GpgError as e:
            return ': %s' % e
        if set(to) & set(self.keyids):
            return ': the secret key is protected and its passphrase is missing or wrong (decrypt_passphrase)'
        return ': the archive is encrypted to key id %s, not to the key given (decrypt_key, key ids %s); give the ' \
               'secret key whose public key the backup used (alation_backup_encrypt_recipient)' \
               % (', '.join(to), ', '.join(self.keyids))

    def abort(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.failure()


class Decryption(object):
    """The secret key (ASCII-armored text) in a private keyring; decrypting streams of archives from it."""

    def __init__(self, key_text, passphrase=None, gpg=None):
        self.ring = Keyring(gpg)
        self.passphrase = passphrase or None
        try:
            self.fingerprints = self.ring.import_secret(key_text)
            self.keyids = [p['keyid'] for k in self.ring.keys() for p in [k] + k['subkeys']]
        except BaseException:
            self.ring.close()
            raise

    def open(self, path):
        return DecryptStream(self.ring, path, self.passphrase, self.keyids)

    def preview(self, path):
        """The decrypting command line for ``path`` (the passphrase only ever as an fd number)."""
        return join_argv(self.ring.decrypt_argv(path, 3 if self.passphrase else None))

    def pipe_into(self, path, argv):
        """Run ``gpg --decrypt path | argv``; a dict as Runner.run's, plus decrypt_error (gpg's failure, or None)."""
        stream = self.open(path)
        try:
            proc = start(argv, stdin=stream.stdout)
        except BaseException:
            stream.abort()
            raise
        stream.stdout.close()  # the program reads it now
        out, err = proc.communicate()
        why = stream.failure()
        return dict(cmd='%s | %s' % (stream.cmd, join_argv(argv)), rc=proc.returncode,
                    stdout=out.decode('utf-8', 'replace'), stderr=err.decode('utf-8', 'replace'),
                    timed_out=False, decrypt_error=why)

    def close(self):
        self.ring.close()
