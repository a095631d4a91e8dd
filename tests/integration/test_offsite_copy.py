# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The off-host copy against a real OpenSSH server on loopback.

The test starts its own sshd (tests/support/backup_host.py: as root, on a free port, ``-f <config> -D``)
with a throwaway host key, and a throwaway user (useradd, removed afterwards)
that logs in with a throwaway key pair. The backup role runs in a real
Alation shell and copies from the host (the module runs outside the shell)
to that user's backup dir; the module alone is run for the stream method.
"""

import glob
import os
import shutil
import subprocess

import pytest

from ansible_collections.alation.backup.plugins.module_utils._host import pid_alive
from ansible_collections.alation.backup.plugins.module_utils._offsite import KEY_DIR_PARENTS, KEY_DIR_PREFIX, OWNER_MARKER

from archives import publish
from backup_host import SSHD
from modrun import run_module
from playbook import HOST, run_playbook


pytestmark = pytest.mark.skipif(not os.access(SSHD, os.X_OK) or os.geteuid() != 0,
                                reason='needs root and the OpenSSH server (make deps installs openssh-server)')


def listing(directory):
    """The dir's files but the owner marker (the first copy there makes it: test_far_side.py tests it)."""
    return sorted(n for n in os.listdir(directory) if n != OWNER_MARKER) if os.path.isdir(directory) else []


def copy_vars(host, sshd, **extra):
    found = dict(host.role_vars, alation_backup_engine='pg_basebackup', alation_backup_copy_to=sshd.dest(),
                 alation_backup_copy_ssh_key=sshd.user_key, alation_backup_copy_known_hosts=sshd.known_hosts)
    found.update(extra)
    return found


def local_archives(host):
    return sorted(glob.glob(host.path('/data2/backup/*_alation_backup.tar.gz')))


def key_dirs():
    """The copy's key dirs on tmpfs whose copy is over (<prefix>.<host label>.<pid>.<random>, that pid dead):
    another test's copy may hold a live one meanwhile."""
    found = set()
    for parent in KEY_DIR_PARENTS:
        for path in glob.glob(os.path.join(parent, KEY_DIR_PREFIX + '.*')):
            if not pid_alive(int(os.path.basename(path).split('.')[2])):
                found.add(path)
    return found


def test_the_role_copies_verifies_and_keeps_retention_on_the_backup_host(alation_host, sshd):
    host = alation_host
    far = sshd.host_dir(HOST)
    # Four older copies there from earlier runs, a foreign file, another host's dir: keep_count 3 lets two go.
    older = [os.path.basename(publish(far, '2026110%d0102' % day, uid=sshd.uid)) for day in range(1, 5)]
    with open(os.path.join(far, 'notes.txt'), 'w') as f:
        f.write('the backup admin keeps notes here')
    publish(sshd.host_dir('alation-other-host'), '202611010102', uid=sshd.uid)

    key_dirs_before = key_dirs()
    run = run_playbook('backup.yml', copy_vars(host, sshd, alation_backup_keep_count=3))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    copy = record['copy']
    assert record['result'] == 'ok' and copy['result'] == 'ok', copy
    [archive] = local_archives(host)
    name = os.path.basename(archive)
    assert copy['dest'] == '%s@127.0.0.1:%s/%s' % (sshd.user, far, name)
    assert copy['bytes'] == os.path.getsize(archive) and copy['error'] == '' and copy['duration_s'] > 0
    assert copy['method'] == ('rsync' if shutil.which('rsync') else 'stream')

    # The archive and its .sha256 landed under their final names, identical, the throwaway user's, 0600.
    for n in (name, name + '.sha256'):
        with open(os.path.join(far, n), 'rb') as f, open(os.path.join(os.path.dirname(archive), n), 'rb') as g:
            assert f.read() == g.read(), n
        st = os.stat(os.path.join(far, n))
        assert st.st_uid == sshd.uid and oct(st.st_mode & 0o777) == '0o600'
    subprocess.run(['sha256sum', '-c', name + '.sha256'], cwd=far, check=True, stdout=subprocess.DEVNULL)

    # Retention there removed exactly the two oldest copies (and their .sha256); nothing foreign, no temp file.
    gone = [n for o in older[:2] for n in (o, o + '.sha256')]
    assert copy['retention']['removed'] == [os.path.join(far, n) for n in gone]
    assert listing(far) == sorted([name, name + '.sha256', 'notes.txt']
                                  + [n for o in older[2:] for n in (o, o + '.sha256')])
    assert len(listing(sshd.host_dir('alation-other-host'))) == 2, "another host's dir is not touched"
    assert os.path.exists(os.path.join(far, OWNER_MARKER)), 'the dir is claimed for this machine'
    # Nothing of the key stays on the host.
    assert key_dirs() <= key_dirs_before, "a copy leaves no key dir (and removes those killed copies left)"
    assert 'PRIVATE KEY' not in run.output


def test_a_wrong_host_key_fails_the_copy_not_the_backup_unless_required(alation_host, sshd):
    host = alation_host
    far = sshd.host_dir(HOST)
    before = listing(far)
    run = run_playbook('backup.yml', copy_vars(host, sshd, alation_backup_copy_known_hosts=sshd.wrong_known_hosts))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok', 'the backup stands'
    assert record['copy']['result'] == 'failed' and 'Host key verification failed' in record['copy']['error']
    assert 'alation_backup_copy_known_hosts' in record['copy']['error']
    [archive] = local_archives(host)
    assert os.path.exists(archive + '.sha256'), 'the local archive is kept'
    assert listing(far) == before, 'nothing written on the far side, no temp file'

    # Required, the copy is checked in preflight: the run is refused before it backs anything up.
    run = run_playbook('backup.yml', copy_vars(host, sshd, alation_backup_copy_known_hosts=sshd.wrong_known_hosts,
                                               alation_backup_copy_required=True))
    assert run.rc != 0
    record = run.records[HOST]
    assert record['result'] == 'failed' and record['error'].startswith('Preflight | '), record['error']
    assert 'Host key verification failed' in record['error'] and 'alation_backup_copy_known_hosts' in record['error']
    assert record['copy']['result'] == 'skipped'
    assert len(local_archives(host)) == 1, 'no backup was taken'
    assert listing(far) == before


def test_the_module_streams_without_rsync_and_leaves_no_temp_file(sshd, scratch):
    local = os.path.join(scratch, 'local')
    archive = publish(local, '202611300102', data=os.urandom(3 * 1024 * 1024))
    args = dict(src=archive, dest='ssh://%s@127.0.0.1:%d%s' % (sshd.user, sshd.port, sshd.backups),
                host_dir='alation-stream', identity_file=sshd.user_key, known_hosts=sshd.known_hosts,
                method='stream', keep_count=1)
    result = run_module('offsite_copy', args)
    assert not result['failed'] and result['changed'], result
    assert result['copy']['result'] == 'ok' and result['copy']['method'] == 'stream'
    far = sshd.host_dir('alation-stream')
    name = os.path.basename(archive)
    assert listing(far) == [name, name + '.sha256']
    subprocess.run(['sha256sum', '-c', name + '.sha256'], cwd=far, check=True, stdout=subprocess.DEVNULL)
    # No secret on any command line it ran.
    assert not any('PRIVATE' in c for c in result['executed_commands'])
    assert any(c.endswith("< %s" % archive) for c in result['executed_commands'])

    # Again: the copy there is verified, not sent again.
    again = run_module('offsite_copy', args)
    assert again['copy']['result'] == 'ok' and not again['changed'] and again['copy']['method'] == ''

    # A wrong host key: refused before anything is written.
    newer = publish(local, '202612010102')
    result = run_module('offsite_copy', dict(args, src=newer, known_hosts=sshd.wrong_known_hosts))
    assert not result['failed'] and result['copy']['result'] == 'failed'
    assert listing(far) == [name, name + '.sha256']
    result = run_module('offsite_copy', dict(args, src=newer, known_hosts=sshd.wrong_known_hosts, required=True))
    assert result['failed'] and 'Host key verification failed' in result['msg']

    # keep_count 1 there: the newer copy replaces the older.
    result = run_module('offsite_copy', dict(args, src=newer))
    assert result['copy']['result'] == 'ok', result
    assert listing(far) == [os.path.basename(newer), os.path.basename(newer) + '.sha256']
