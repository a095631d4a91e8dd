# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The encryption key checked in preflight (archive state=check), with a real gpg and throwaway keys: the key
the archive step would use, checked before the run touches anything, and what is wrong named with its
fingerprint."""

import glob
import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _gpg as G

# keys: test_gpg's session fixture (two throwaway key pairs), used by name.
from .test_gpg import GPG, _gpg, keys  # noqa: F401 pylint: disable=unused-import

pytestmark = pytest.mark.skipif(GPG is None, reason='gpg not installed (Debian package gnupg)')


def fingerprint_of(home, name):
    listing = _gpg(home, '--with-colons', '--list-keys', name).decode()
    return [line.split(':')[9] for line in listing.splitlines() if line.startswith('fpr:')][0]


@pytest.fixture(scope='module')
def odd_keys():
    """Keys the archive must not encrypt to: expired, revoked, sign-only. {kind: (fingerprint, public key)}."""
    home = tempfile.mkdtemp(prefix='gpg-test-odd-', dir=G.temp_parent())
    nopw = ['--pinentry-mode', 'loopback', '--passphrase', '']
    try:
        # Made in 2020 to expire a day later.
        _gpg(home, *(nopw + ['--faked-system-time', '20200101T000000', '--quick-gen-key',
                             'expired <expired@example.com>', 'future-default', 'default', '1d']))
        _gpg(home, *(nopw + ['--quick-gen-key', 'revoked <revoked@example.com>', 'future-default', 'default', 'never']))
        revoked = fingerprint_of(home, 'revoked@example.com')
        # gpg keeps a revocation certificate for each new key, its armor line masked with ':'.
        with open(os.path.join(home, 'openpgp-revocs.d', revoked + '.rev')) as f:
            cert = f.read().replace(':-----BEGIN PGP PUBLIC KEY BLOCK-----', '-----BEGIN PGP PUBLIC KEY BLOCK-----')
        _gpg(home, '--import', input=cert.encode())
        _gpg(home, *(nopw + ['--quick-gen-key', 'signer <signer@example.com>', 'ed25519', 'sign', 'never']))
        found = {}
        for kind in ('expired', 'revoked', 'signer'):
            fpr = fingerprint_of(home, '%s@example.com' % kind)
            found[kind] = (fpr, _gpg(home, '--armor', '--export', fpr).decode())
        yield found
    finally:
        subprocess.call(['gpgconf', '--homedir', home, '--kill', 'gpg-agent'])
        shutil.rmtree(home, ignore_errors=True)


def keyrings():
    return set(glob.glob(os.path.join(G.temp_parent() or tempfile.gettempdir(), 'alation-gpg-*')))


def test_a_good_key_passes_with_a_trial_encryption_and_leaves_no_keyring(keys):
    before = keyrings()
    found = G.check_recipient(keys['plain'].fingerprint, keys['plain'].public)
    assert found['fingerprint'] == keys['plain'].fingerprint and set(keys['plain'].keyids) <= set(found['keyids'])
    assert any('--encrypt' in c for c in found['commands'])
    assert keyrings() <= before


def test_the_fingerprint_of_the_subkey_names_the_primary_key(keys):
    subkey = keys['plain'].keyids[1]
    listing = _gpg_listing(keys['plain'].public)
    sub_fpr = [f for f in listing if f.endswith(subkey)][0]
    assert G.check_recipient(sub_fpr, keys['plain'].public)['fingerprint'] == keys['plain'].fingerprint


def _gpg_listing(public):
    home = tempfile.mkdtemp(prefix='gpg-test-list-', dir=G.temp_parent())
    try:
        _gpg(home, '--import', input=public.encode())
        out = _gpg(home, '--with-colons', '--list-keys').decode()
        return [line.split(':')[9] for line in out.splitlines() if line.startswith('fpr:')]
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_a_mistyped_fingerprint_is_named(keys):
    wrong = keys['plain'].fingerprint[:-1] + ('0' if keys['plain'].fingerprint[-1] != '0' else '1')
    with pytest.raises(G.GpgError) as e:
        G.check_recipient(wrong, keys['plain'].public)
    assert 'no public key with fingerprint %s was given' % wrong in str(e.value)
    assert 'alation_backup_encrypt_public_key' in str(e.value)


def test_not_a_fingerprint_is_refused_before_gpg():
    with pytest.raises(G.GpgError, match="'backup@example.com' must be the full fingerprint"):
        G.check_recipient('backup@example.com', 'whatever')


def test_a_key_missing_from_the_keyring_is_named(keys, tmp_path):
    home = str(tmp_path / 'gnupg')
    os.mkdir(home, 0o700)
    with pytest.raises(G.GpgError) as e:
        G.check_recipient(keys['plain'].fingerprint, homedir=home)
    assert 'no public key with fingerprint %s in the keyring %s' % (keys['plain'].fingerprint, home) in str(e.value)


@pytest.mark.parametrize('kind, says', [
    ('expired', 'is expired'),
    ('revoked', 'is revoked'),
    ('signer', 'has no valid encryption (sub)key'),
])
def test_a_key_that_cannot_take_the_archive_is_named(odd_keys, kind, says):
    fpr, public = odd_keys[kind]
    before = keyrings()
    with pytest.raises(G.GpgError) as e:
        G.check_recipient(fpr, public)
    assert 'the key %s %s' % (fpr, says) in str(e.value)
    assert keyrings() <= before
