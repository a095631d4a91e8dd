# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Preflight catches it first (issue 18), in a real Alation shell: a missing pg_probackup binary, a mistyped
encryption key, an unreachable required copy target and a report path the controller cannot write each
refuse the run before anything on the host is touched - the staging dir keeps what it held, the backup
storage dir gets no lock - instead of failing after staging, after the database backup (hours), or after a
good backup. And encryption, honestly: with incremental backups the pg staging dir keeps the database backup
unencrypted, and the run says so."""

import os
import shutil
import subprocess
import tempfile

import pytest

from ansible_collections.alation.backup.plugins.module_utils._offsite import OWNER_MARKER

from backup_host import SSHD, BackupHost, free_port
from playbook import HOST, run_playbook

GPG = shutil.which('gpg')
SENTINEL = '/data2/tmp/left-by-alations-own-backup'


def role_run(host, **extra):
    return run_playbook('backup.yml', dict(host.role_vars, **extra))


@pytest.fixture
def untouched(alation_host):
    """A file in the staging dir that a run which empties it would remove; returns a check that the staging
    dir and the backup storage dir are as they were (no lock, no pg staging dir, no archive)."""
    host = alation_host
    with open(host.path(SENTINEL), 'w') as f:
        f.write('must survive a refused run')
    storage = host.path('/data2/backup')
    before = sorted(os.listdir(storage))

    def check():
        assert os.path.exists(host.path(SENTINEL)), 'the staging dir was emptied: the run went past preflight'
        assert sorted(os.listdir(storage)) == before, 'the backup storage dir changed (a lock, a catalog, an archive)'
        assert not os.path.exists(os.path.join(storage, '.alation_backup.lock'))
    return check


def refused_in_preflight(run):
    """The record's error, after checking it is a preflight refusal (the step the summary line names)."""
    assert run.rc != 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'failed' and record['error'].startswith('Preflight | '), record['error']
    assert '%s: FAILED preflight: ' % HOST in run.output, run.output
    return record['error']


def test_a_missing_pg_probackup_binary_is_refused_before_staging(alation_host, untouched):
    missing = '/opt/pg_probackup-not-here/bin/pg_probackup'
    run = role_run(alation_host, alation_backup_engine='pg_probackup', alation_backup_pg_probackup_binary=missing)
    error = refused_in_preflight(run)
    assert '%s is not an executable file (looked at %s on the host)' % (missing, alation_host.path(missing)) in error
    assert 'Install pg_probackup inside the Alation shell, or set pg_probackup_binary ' \
        '(alation_backup_pg_probackup_binary) to its path there.' in error
    untouched()


def test_a_pg_probackup_built_for_another_postgresql_is_refused_before_staging(alation_host, untouched):
    # A stand-in that prints what a pg_probackup built for PostgreSQL 14 prints; the shell's server is 15.
    fake = alation_host.path('/usr/local/bin/pg_probackup-14-build')
    with open(fake, 'w') as f:
        f.write('#!/bin/sh\necho "pg_probackup 2.5.15 (PostgreSQL 14.13)"\n')
    os.chmod(fake, 0o755)
    run = role_run(alation_host, alation_backup_engine='pg_probackup',
                   alation_backup_pg_probackup_binary='/usr/local/bin/pg_probackup-14-build')
    error = refused_in_preflight(run)
    assert 'is built for PostgreSQL 14, but the server runs PostgreSQL 15' in error, error
    untouched()


@pytest.fixture(scope='module')
def public_key():
    """(fingerprint, ASCII-armored public key) of a throwaway key pair."""
    if GPG is None:
        pytest.skip('gpg not installed (Debian package gnupg; make test installs it)')
    home = tempfile.mkdtemp(prefix='gpg-it-preflight-')
    gpg = [GPG, '--homedir', home, '--batch', '--no-tty', '--pinentry-mode', 'loopback', '--passphrase', '']
    try:
        subprocess.run(gpg + ['--quick-gen-key', 'preflight <preflight@example.com>', 'future-default', 'default',
                              'never'], check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        listing = subprocess.run(gpg + ['--with-colons', '--list-keys'], check=True, stdout=subprocess.PIPE,
                                 universal_newlines=True).stdout
        fpr = [line.split(':')[9] for line in listing.splitlines() if line.startswith('fpr:')][0]
        public = subprocess.run(gpg + ['--armor', '--export', fpr], check=True, stdout=subprocess.PIPE,
                                universal_newlines=True).stdout
        yield fpr, public
    finally:
        subprocess.call(['gpgconf', '--homedir', home, '--kill', 'gpg-agent'])
        shutil.rmtree(home, ignore_errors=True)


def test_a_mistyped_encryption_fingerprint_is_refused_before_staging(alation_host, untouched, public_key):
    fpr, public = public_key
    wrong = fpr[:-4] + ('0000' if not fpr.endswith('0000') else '1111')
    run = role_run(alation_host, alation_backup_engine='pg_basebackup', alation_backup_encrypt_recipient=wrong,
                   alation_backup_encrypt_public_key=public)
    error = refused_in_preflight(run)
    assert 'no public key with fingerprint %s was given' % wrong in error, error
    untouched()


def test_an_unreachable_required_copy_target_is_refused_before_staging(alation_host, untouched):
    port = free_port()  # nothing listens there
    run = role_run(alation_host, alation_backup_engine='pg_basebackup', alation_backup_copy_required=True,
                   alation_backup_copy_to={'host': '127.0.0.1', 'port': port, 'user': 'backup',
                                           'path': '/srv/alation-backups'})
    error = refused_in_preflight(run)
    assert 'alation_backup_copy_required is on and the backup host cannot take the copy' in error, error
    assert 'ssh to 127.0.0.1 port %d failed' % port in error and 'refused' in error, error
    untouched()


def test_a_report_path_the_controller_cannot_write_is_refused_before_staging(alation_host, untouched):
    report = os.path.join(tempfile.gettempdir(), 'alation-backup-no-such-dir', 'report.json')
    run = role_run(alation_host, alation_backup_engine='pg_basebackup', alation_backup_report_path=report)
    assert run.rc != 0, run.output
    assert 'refusing the run, nothing was touched: the controller cannot write alation_backup_report_path %s' \
        % report in run.output, run.output
    assert 'does not exist' in run.output
    assert '%s: FAILED preflight: ' % HOST in run.output, 'the summary line still comes'
    assert not os.path.exists(os.path.dirname(report))
    untouched()


@pytest.mark.parametrize('engine', ['pg_basebackup', 'pg_probackup'])
def test_encryption_with_incremental_backups_warns_of_the_plain_pg_staging_dir(alation_host, public_key, engine):
    if engine == 'pg_probackup' and not alation_host.has_pg_probackup:
        pytest.skip('pg_probackup not found ($PG_PROBACKUP unset and none on PATH)')
    fpr, public = public_key
    run = role_run(alation_host, alation_backup_engine=engine, alation_backup_incremental=True,
                   alation_backup_encrypt_recipient=fpr, alation_backup_encrypt_public_key=public)
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['archive'].endswith('.tar.gz.gpg')
    [warning] = record['warnings']
    assert 'the pg staging dir /data2/backup/pgbackup is kept between runs' in warning
    assert 'holds the database backup unencrypted' in warning
    assert '; WARNING: the archive is encrypted, but the pg staging dir' in run.output
    # What the warning says is so: the backup, in plain files, beside the encrypted archive.
    kept = alation_host.path('/data2/backup/pgbackup')
    assert os.listdir(kept), 'the pg staging dir is kept, with the backup'
    if engine == 'pg_probackup':
        # The catalog, its data files readable as they are: PG_VERSION of the backed-up cluster among them.
        found = [os.path.join(top, 'PG_VERSION') for top, dirs, files in os.walk(kept) if 'PG_VERSION' in files]
        assert found, 'a plain PGDATA copy in the catalog'
        with open(found[0]) as f:
            assert f.read().strip() == '15'
    # Without incremental backups there is nothing to warn of.
    run = role_run(alation_host, alation_backup_engine=engine, alation_backup_encrypt_recipient=fpr,
                   alation_backup_encrypt_public_key=public)
    assert run.rc == 0, run.output
    assert run.records[HOST]['warnings'] == [] and 'WARNING: the archive' not in run.output
    assert not os.path.exists(alation_host.path('/data2/backup/pgbackup'))


@pytest.mark.skipif(not os.access(SSHD, os.X_OK), reason='needs the OpenSSH server (make deps installs openssh-server)')
def test_a_required_copy_to_a_good_backup_host_passes_preflight_and_leaves_no_probe(alation_host):
    workdir = tempfile.mkdtemp(prefix='alation-backup-sshd-')
    server = BackupHost(workdir)
    try:
        run = role_run(alation_host, alation_backup_engine='pg_basebackup', alation_backup_copy_required=True,
                       alation_backup_copy_to=server.dest(), alation_backup_copy_ssh_key=server.user_key,
                       alation_backup_copy_known_hosts=server.known_hosts)
        assert run.rc == 0, run.output
        assert run.records[HOST]['copy']['result'] == 'ok'
        far = server.host_dir(HOST)
        # The owner marker claims the dir for this machine; no probe file is left.
        assert sorted(n for n in os.listdir(far) if n.startswith('.')) == [OWNER_MARKER], 'the probe file was removed'
        assert len(os.listdir(far)) == 3, 'the archive, its .sha256 and the owner marker'
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
