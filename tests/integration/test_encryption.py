# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Encryption at rest end to end, in a real Alation shell with a real gpg and a throwaway key pair: the
backup role encrypts to the public key while it writes (.tar.gz.gpg and its .sha256), the host keeps no
secret key and no plaintext, and the restore drill, given the secret key and its passphrase, restores it."""

import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from playbook import HOST, run_playbook
from restoring import restore_vars, run_restore_playbook

GPG = shutil.which('gpg')
pytestmark = pytest.mark.skipif(GPG is None, reason='gpg not installed (Debian package gnupg; make test installs it)')
ENCRYPTED_RE = re.compile(r'^\d{12}_5-17-0-116556_alation_backup\.tar\.gz\.gpg$')
PASSPHRASE = 'drill passphrase'
CHECKS = ['sha256', 'extract', 'rebuild', 'consistent', 'databases', 'amcheck', 'table_counts']


def _gpg(home, *args, **kw):
    return subprocess.run([GPG, '--homedir', home, '--batch', '--no-tty', '--pinentry-mode', 'loopback']
                          + list(args), check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw).stdout


@pytest.fixture(scope='module')
def key_pair():
    """(fingerprint, public key, secret key file on the controller, encryption subkey id), protected by PASSPHRASE."""
    home = tempfile.mkdtemp(prefix='gpg-it-')
    try:
        _gpg(home, '--passphrase', PASSPHRASE, '--quick-gen-key', 'alation drill <drill@example.com>',
             'future-default', 'default', 'never')
        fprs = [line.split(':')[9] for line in _gpg(home, '--with-colons', '--list-keys').decode().splitlines()
                if line.startswith('fpr:')]
        secret = os.path.join(home, 'secret.asc')
        with open(secret, 'wb') as f:
            f.write(_gpg(home, '--passphrase', PASSPHRASE, '--armor', '--export-secret-keys', fprs[0]))
        yield fprs[0], _gpg(home, '--armor', '--export', fprs[0]).decode(), secret, fprs[1][-16:]
    finally:
        subprocess.call(['gpgconf', '--homedir', home, '--kill', 'gpg-agent'])
        shutil.rmtree(home, ignore_errors=True)


def private_keyrings():
    return set(glob.glob('/dev/shm/alation-gpg-*') + glob.glob('/tmp/alation-gpg-*'))


def test_encrypted_backup_restored_by_the_drill(alation_host, key_pair):
    fingerprint, public, secret_file, subkey_id = key_pair
    keyrings_before = private_keyrings()
    run = run_playbook('backup.yml', dict(alation_host.role_vars, alation_backup_engine='pg_basebackup',
                                          alation_backup_encrypt_recipient=fingerprint,
                                          alation_backup_encrypt_public_key=public))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    archive = record['archive']
    assert record['result'] == 'ok' and ENCRYPTED_RE.match(os.path.basename(archive)), record
    storage = os.path.dirname(archive)
    # Only the ciphertext and its .sha256: no plaintext archive, no temporary file.
    assert sorted(n for n in os.listdir(storage) if not n.startswith('.alation_backup')) == \
        sorted([os.path.basename(archive), os.path.basename(archive) + '.sha256']), os.listdir(storage)
    with open(archive, 'rb') as f:
        data = f.read()
    assert data[:2] != b'\x1f\x8b' and b'alation_backup_manifest' not in data
    with open(archive + '.sha256') as f:
        assert f.readline().split()[0] == hashlib.sha256(data).hexdigest() == record['sha256']
    # Encrypted to our key's encryption subkey, as gpg itself reads the packets (it has no secret key here).
    home = tempfile.mkdtemp(prefix='gpg-it-empty-')
    try:
        packets = subprocess.run([GPG, '--homedir', home, '--batch', '--list-packets', archive],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert ':pubkey enc packet:' in packets.stdout and 'keyid %s' % subkey_id in packets.stdout, packets.stdout
    assert ':encrypted data packet:' in packets.stdout
    assert 'No secret key' in packets.stderr
    # The host kept no keyring: the one with the public key was made for the run and removed.
    assert private_keyrings() <= keyrings_before

    # Without the secret key the drill cannot read the archive, and says why.
    run = run_restore_playbook('verify_backup.yml', restore_vars(alation_host.role_vars))
    assert run.rc != 0
    record = run.records[HOST]
    assert record['failed_check'] == 'extract', record
    assert 'is encrypted' in record['checks']['extract']['detail'] and 'alation_restore_decrypt_key' in \
        record['checks']['extract']['detail']

    # With it (a file on the controller) and its passphrase: the drill decrypts while it unpacks and restores.
    run = run_restore_playbook('verify_backup.yml', restore_vars(
        alation_host.role_vars, alation_restore_decrypt_key=secret_file,
        alation_restore_decrypt_passphrase=PASSPHRASE))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['archive'] == archive, record
    assert {k: v['result'] for k, v in record['checks'].items()} == dict.fromkeys(CHECKS, 'ok'), record['checks']
    assert PASSPHRASE not in run.output and 'PRIVATE KEY' not in run.output
    assert private_keyrings() <= keyrings_before
    # The drill's scratch dir is gone; the storage dir still holds only the ciphertext.
    assert not os.path.exists(os.path.join(alation_host.root, 'data2/restore_drill'))
    assert not [n for n in os.listdir(storage) if n.endswith('.tar.gz')]


def test_the_scheduled_drill_decrypts_the_archive_the_run_just_encrypted(alation_host, key_pair):
    # The backup role's drill (alation_backup_drill_every_days) takes the restore role's decrypt key and passphrase,
    # as README's "Encryption at rest" says: the hosts that drill an encrypted archive need them.
    fingerprint, public, secret_file, dummy = key_pair
    keyrings_before = private_keyrings()
    run = run_playbook('backup.yml', dict(alation_host.role_vars, alation_backup_engine='pg_basebackup',
                                          alation_backup_encrypt_recipient=fingerprint,
                                          alation_backup_encrypt_public_key=public,
                                          alation_backup_drill_every_days=7,
                                          alation_restore_decrypt_key=secret_file,
                                          alation_restore_decrypt_passphrase=PASSPHRASE))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and ENCRYPTED_RE.match(os.path.basename(record['archive'])), record
    drill = record['drill']
    assert drill['result'] == 'ok' and drill['archive'] == record['archive'], drill
    assert PASSPHRASE not in run.output and 'PRIVATE KEY' not in run.output
    assert private_keyrings() <= keyrings_before
    # Nothing decrypted is left: no scratch dir, no plaintext archive beside the ciphertext.
    assert not os.path.exists(alation_host.path('/data2/backup_drill'))
    assert not [n for n in os.listdir(os.path.dirname(record['archive'])) if n.endswith('.tar.gz')]
