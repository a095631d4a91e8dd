# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption at rest with a real gpg and a throwaway key pair made here: names, command lines (no secret
in any), encrypting while archiving, decrypting while reading and unpacking, and no plaintext on disk."""

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _archive as A
from ansible_collections.alation.backup.plugins.module_utils import _archive_names as N
from ansible_collections.alation.backup.plugins.module_utils import _archive_read as R
from ansible_collections.alation.backup.plugins.module_utils import _gpg as G
from ansible_collections.alation.backup.plugins.module_utils import _retention

from .test_archive import params
from .test_tar import TREE_MEMBERS

GPG = shutil.which('gpg')
pytestmark = pytest.mark.skipif(GPG is None, reason='gpg not installed (Debian package gnupg)')
PASSPHRASE = 'correct horse battery staple'


def _gpg(home, *args, **kw):
    return subprocess.run([GPG, '--homedir', home, '--batch', '--no-tty'] + list(args), check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw).stdout


class KeyPair(object):
    """A throwaway key pair: ed25519 to sign, cv25519 to encrypt (fast to make), protected or not."""

    def __init__(self, home, name, passphrase=None):
        pw = ['--pinentry-mode', 'loopback', '--passphrase', passphrase or '']
        _gpg(home, *(pw + ['--quick-gen-key', name, 'future-default', 'default', 'never']))
        listing = _gpg(home, '--with-colons', '--list-keys', name).decode()
        fprs = [line.split(':')[9] for line in listing.splitlines() if line.startswith('fpr:')]
        self.fingerprint, self.keyids = fprs[0], [f[-16:] for f in fprs]
        self.public = _gpg(home, '--armor', '--export', self.fingerprint).decode()
        self.secret = _gpg(home, *(pw + ['--armor', '--export-secret-keys', self.fingerprint])).decode()
        self.passphrase = passphrase


@pytest.fixture(scope='session')
def keys():
    """Two key pairs (one protected by a passphrase, one not), made once; their keyring is removed afterwards."""
    home = tempfile.mkdtemp(prefix='gpg-test-', dir=G.temp_parent())
    try:
        yield dict(plain=KeyPair(home, 'alation backup test <plain@example.com>'),
                   protected=KeyPair(home, 'alation backup test <protected@example.com>', PASSPHRASE))
    finally:
        subprocess.call(['gpgconf', '--homedir', home, '--kill', 'gpg-agent'])
        shutil.rmtree(home, ignore_errors=True)


def encrypted_archive(tree, key, verifier=None, **kw):
    src, dest = tree
    plan = A.Plan(params(src, dest, encrypt_recipient=key.fingerprint, encrypt_public_key=key.public, **kw))
    plan.verifier = verifier or plan.verifier
    try:
        return A.create_archive(plan)
    finally:
        plan.close()


# -- names and fingerprints ------------------------------------------------------------

def test_the_encrypted_name_is_found_everywhere_archives_are(tmp_path):
    name = N.archive_name('202405011230', '5-17-0-116556', encrypted=True)
    assert name == '202405011230_5-17-0-116556_alation_backup.tar.gz.gpg'
    assert N.ARCHIVE_RE.match(name).group('gpg') == '.gpg' and N.is_encrypted(name)
    assert not N.is_encrypted(N.archive_name('202405011230', '5-17-0-116556'))
    assert N.tmp_pattern().match(N.tmp_name(name, 7, 'host')) and N.tmp_pattern().match(N.tmp_name(name + '.sha256'))
    for n in (name, name.replace('30_', '31_')[:-4]):  # one encrypted, one plain: both are archives
        (tmp_path / n).write_bytes(b'x')
        (tmp_path / (n + '.sha256')).write_text(N.sidecar_text(N.sha256_of(str(tmp_path / n)), n, 1))
    assert [os.path.basename(p) for p in N.list_archives(str(tmp_path))] == [name, name.replace('30_', '31_')[:-4]]
    assert N.newest_good(str(tmp_path))[0].endswith('31_5-17-0-116556_alation_backup.tar.gz')
    os.unlink(str(tmp_path / name.replace('30_', '31_')[:-4]))
    assert N.newest_good(str(tmp_path), rehash=True)[0] == str(tmp_path / name)
    # The minute of an encrypted archive is taken for a plain one too, and the other way round.
    assert N.free_timestamp(str(tmp_path), '5-17-0-116556', now=N.utcnow().replace(
        year=2024, month=5, day=1, hour=12, minute=30)) == '202405011231'


@pytest.mark.parametrize('given', ['3160742882FEBD74DF8D4BB7623AF35E24C2D7FD', '3160 7428 82FE BD74 DF8D  4BB7 623A '
                                   'F35E 24C2 D7FD', '0x3160742882febd74df8d4bb7623af35e24c2d7fd'])
def test_fingerprint_accepted(given):
    assert G.normalize_fingerprint(given) == '3160742882FEBD74DF8D4BB7623AF35E24C2D7FD'


@pytest.mark.parametrize('given', ['623AF35E24C2D7FD', 'alation@example.com', 'alation', '', None,
                                   '3160742882FEBD74DF8D4BB7623AF35E24C2D7FG'])
def test_anything_but_a_full_fingerprint_is_refused(given):
    with pytest.raises(G.GpgError, match='must be the full fingerprint'):
        G.normalize_fingerprint(given)


# -- the encrypting side ---------------------------------------------------------------

def test_encrypt_argv_has_the_fingerprint_and_no_secret(keys):
    enc = G.Encryption(keys['plain'].fingerprint, keys['plain'].public)
    try:
        argv = enc.argv
        assert argv[0] == G.find_gpg() and argv[1:3] == ['--homedir', enc.ring.home]
        assert argv[argv.index('--recipient') + 1] == keys['plain'].fingerprint
        for flag in ('--batch', '--no-tty', '--no-autostart', '--encrypt', '--compress-algo'):
            assert flag in argv
        assert argv[-2:] == ['--output', '-']
        # The private keyring holds the one public key, no secret key.
        assert [k['fingerprint'] for k in enc.ring.keys()] == [keys['plain'].fingerprint]
        assert not os.path.exists(os.path.join(enc.ring.home, 'private-keys-v1.d')) or \
            os.listdir(os.path.join(enc.ring.home, 'private-keys-v1.d')) == []
        home = enc.ring.home
    finally:
        enc.close()
    assert not os.path.exists(home)


def test_a_secret_key_is_refused_on_the_host_that_encrypts(keys):
    with pytest.raises(G.GpgError, match='is a secret key. The host that writes archives must hold only the public'):
        G.Encryption(keys['plain'].fingerprint, keys['plain'].secret)


def test_a_key_that_was_not_given_is_refused(keys):
    with pytest.raises(G.GpgError, match='no public key with fingerprint %s' % keys['protected'].fingerprint):
        G.Encryption(keys['protected'].fingerprint, keys['plain'].public)


def test_the_public_key_from_a_keyring_on_the_host(keys, tmp_path):
    home = str(tmp_path / 'gnupg')
    os.mkdir(home, 0o700)
    _gpg(home, '--import', input=keys['plain'].public.encode())
    enc = G.Encryption(keys['plain'].fingerprint, homedir=home)
    try:
        assert enc.fingerprint == keys['plain'].fingerprint and enc.ring.home != home
    finally:
        enc.close()
    # A keyring that also holds the secret key is refused: the host would read its own archives.
    _gpg(home, '--import', input=keys['plain'].secret.encode())
    with pytest.raises(G.GpgError, match='holds the secret key of %s' % keys['plain'].fingerprint):
        G.Encryption(keys['plain'].fingerprint, homedir=home)
    with pytest.raises(G.GpgError, match='does not exist'):
        G.Encryption(keys['plain'].fingerprint, homedir=str(tmp_path / 'absent'))
    subprocess.call(['gpgconf', '--homedir', home, '--kill', 'gpg-agent'])


def test_encrypted_while_written_no_plaintext_on_disk(tree, keys, monkeypatch):
    """The dest holds only the temporary ciphertext while the archive is written, then the .gpg and its .sha256."""
    src, dest = tree
    seen = []
    real_write = A.HashingFile.write

    def watching_write(self, data):
        # Every byte reaching the file comes out of gpg; look at dest each time.
        seen.append(sorted(os.listdir(dest)))
        return real_write(self, data)

    monkeypatch.setattr(A.HashingFile, 'write', watching_write)
    result = encrypted_archive(tree, keys['plain'])
    name = '202405011230_5-17-0-116556_alation_backup.tar.gz.gpg'
    assert seen and all(listing == [N.tmp_name(name)] for listing in seen), seen
    assert result['path'] == os.path.join(dest, name) and result['encrypted'] is True
    assert result['recipient'] == keys['plain'].fingerprint
    assert sorted(os.listdir(dest)) == [name, name + '.sha256']
    assert N.read_sidecar(result['sha256_path'], name) == (N.sha256_of(result['path']), result['size'])
    with open(result['path'], 'rb') as f:
        head = f.read()
    # OpenPGP, not gzip; the manifest is nowhere in the clear.
    assert head[:2] != b'\x1f\x8b' and b'alation_backup_manifest' not in head
    assert result["members"] == TREE_MEMBERS
    assert any('--encrypt' in c for c in result['executed_commands'])
    # Its packets: a session key encrypted to our key, then the data.
    assert G.check_encrypted(result['path']) == [keys['plain'].keyids[1]]  # its encryption subkey


def test_verification_reads_the_compressed_stream_before_gpg(tree, keys, monkeypatch):
    """A broken gzip stream on its way into gpg fails the run; nothing is left in dest."""
    src, dest = tree
    real = A.EncryptTee.write

    def damaging(self, data):
        data = bytes(data)
        if len(data) > 100 and not getattr(self, 'damaged', False):  # deflate data, past the gzip header
            self.damaged = True
            data = data[:50] + bytes(50) + data[100:]
        return real(self, data)

    monkeypatch.setattr(A.EncryptTee, 'write', damaging)
    with pytest.raises(A.ArchiveError, match='verification of .* failed: .*(invalid|Error)'):
        encrypted_archive(tree, keys['plain'], verifier='zlib')
    assert os.listdir(dest) == []


def test_gpg_failing_fails_the_run_and_leaves_nothing(tree, keys, monkeypatch):
    src, dest = tree
    monkeypatch.setattr(G.Keyring, 'encrypt_argv', lambda self, fpr: [G.find_gpg(), '--homedir', self.home, '--batch',
                                                                      '--no-such-option'])
    with pytest.raises(A.ArchiveError, match='failed'):
        encrypted_archive(tree, keys['plain'])
    assert os.listdir(dest) == []


def test_check_mode_preview_says_encrypted(tree, keys):
    src, dest = tree
    plan = A.Plan(params(src, dest, encrypt_recipient=keys['plain'].fingerprint,
                         encrypt_public_key=keys['plain'].public))
    try:
        preview = plan.preview()
        assert preview['path'].endswith('.tar.gz.gpg') and preview['encrypted'] is True
        assert any('--recipient %s' % keys['plain'].fingerprint in c for c in plan.commands())
    finally:
        plan.close()
    assert os.listdir(dest) == []


def test_an_unsealed_encrypted_archive_is_sealed_after_its_packets_are_checked(tree, keys):
    src, dest = tree
    result = encrypted_archive(tree, keys['plain'])
    os.unlink(result['sha256_path'])
    plan = A.Plan(params(src, dest, timestamp='202405011231'))
    assert plan.unsealed == [result['path']]
    later = A.create_archive(plan)
    assert later['completed_sha256'] == [result['path']]
    assert N.read_sidecar(result['sha256_path'], os.path.basename(result['path']))[0] == result['sha256']
    # Not an OpenPGP message: never sealed.
    os.unlink(result['sha256_path'])
    with open(result['path'], 'r+b') as f:
        f.write(b'\x1f\x8b')
    with pytest.raises(G.GpgError, match='is not a GnuPG-encrypted archive'):
        A.seal(result['path'], 'zlib', 0o600, -1, -1)


def test_retention_counts_encrypted_archives(tree, keys):
    src, dest = tree
    first = encrypted_archive(tree, keys['plain'])
    second = encrypted_archive(tree, keys['plain'], timestamp='202405011231')
    planned = _retention.plan(dest, dict(keep_count=1), now=N.utcnow().timestamp())
    assert [e['path'] for e in planned['remove']] == [first['path'], first['sha256_path']]
    assert planned['refused'] is None and [k['path'] for k in planned['kept']] == [second['path']]


# -- the decrypting side -----------------------------------------------------------------

@pytest.mark.parametrize('which', ['plain', 'protected'])
def test_round_trip_decrypt_while_reading_and_unpacking(tree, keys, which, tmp_path):
    key = keys[which]
    result = encrypted_archive(tree, key)
    dec = G.Decryption(key.secret, key.passphrase)
    try:
        manifest, dummy = R.read_head(result['path'], count=0, decryption=dec)
        assert manifest == json.loads(json.dumps(result['manifest']))
        # gpg --decrypt | tar: what comes out is what went in.
        out = str(tmp_path / 'out')
        os.mkdir(out)
        run = dec.pipe_into(result['path'], ['tar', '--extract', '--file', '-', '--use-compress-program=gzip',
                                             '--directory', out])
        assert run['rc'] == 0 and run['decrypt_error'] is None, run
        assert ' | tar --extract --file -' in run['cmd']
        with open(os.path.join(out, 'tmp', 'a.txt'), 'rb') as got, open(os.path.join(tree[0], 'a.txt'), 'rb') as want:
            assert got.read() == want.read()
        # The passphrase never on a command line: only the number of the fd it comes through.
        for cmd in dec.ring.commands + [run['cmd'], dec.preview(result['path'])]:
            assert PASSPHRASE not in cmd and 'PRIVATE KEY' not in cmd
        if key.passphrase:
            assert '--passphrase-fd' in run['cmd']
        home = dec.ring.home
    finally:
        dec.close()
    assert not os.path.exists(home)


def test_wrong_passphrase_and_wrong_key_say_so(tree, keys):
    result = encrypted_archive(tree, keys['protected'])
    dec = G.Decryption(keys['protected'].secret, 'wrong')
    try:
        with pytest.raises(R.RestoreError, match='passphrase is missing or wrong'):
            R.read_head(result['path'], count=0, decryption=dec)
    finally:
        dec.close()
    dec = G.Decryption(keys['plain'].secret)
    try:
        with pytest.raises(R.RestoreError, match='is encrypted to key id [0-9A-F]{16}, not to the key given'):
            R.read_head(result['path'], count=0, decryption=dec)
    finally:
        dec.close()
    with pytest.raises(G.GpgError, match='holds no secret key'):
        G.Decryption(keys['plain'].public)
    with pytest.raises(R.RestoreError, match='is encrypted'):
        R.read_head(result['path'], count=0)


def test_stopping_early_leaves_no_gpg_running(tree, keys):
    result = encrypted_archive(tree, keys['plain'])
    dec = G.Decryption(keys['plain'].secret)
    try:
        stream = dec.open(result['path'])
        stream.stdout.read(10)
        stream.abort()
        assert stream.proc.returncode is not None
    finally:
        dec.close()
    assert threading.active_count() >= 1


def test_tarfile_reads_what_gpg_decrypts(tree, keys):
    result = encrypted_archive(tree, keys['plain'])
    dec = G.Decryption(keys['plain'].secret)
    try:
        stream = dec.open(result['path'])
        with tarfile.open(fileobj=stream.stdout, mode='r|gz') as tar:
            names = [m.name for m in tar]
        assert stream.failure() is None
    finally:
        dec.close()
    assert names[0] == N.MANIFEST_NAME and len(names) == TREE_MEMBERS
