# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The far side of the off-host copy when the world around it misbehaves (issue 18), against a real OpenSSH
server on loopback (tests/support/backup_host.py, as in test_offsite_copy.py).

A copy killed mid-way (its temp file there, its key dir on tmpfs here) is cleaned by the next; a far side made
full (a real tmpfs, this small, mounted on the per-host dir) gets retention first, or a failure naming the bytes;
a per-host dir another machine owns is refused; a site ssh_config that would break the connection is not read;
and through the role, a local retention failure still copies the new archive.
"""

import glob
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _offsite
from ansible_collections.alation.backup.plugins.module_utils._archive_names import host_label, tmp_name

from archives import TAG, publish
from backup_host import SSHD
from modrun import _argv_env, run_module
from playbook import HOST, run_playbook

KEY_DIRS = '/dev/shm/%s.*' % _offsite.KEY_DIR_PREFIX


def dead_key_dirs():
    """Key dirs on tmpfs whose copy is gone: what a killed copy leaves. Other tests' copies run meanwhile (pytest -n):
    their key dirs, alive, are not this test's to judge."""
    dead = set()
    for path in glob.glob(KEY_DIRS):
        m = _offsite.KEY_DIR_RE.match(os.path.basename(path))
        if m and not os.path.exists('/proc/%s' % m.group('pid')):
            dead.add(path)
    return dead


pytestmark = pytest.mark.skipif(not os.access(SSHD, os.X_OK) or os.geteuid() != 0,
                                reason='needs root and the OpenSSH server (make deps installs openssh-server)')


def archive_name(ts):
    return '%s_%s_alation_backup.tar.gz' % (ts, TAG)


def listing(directory):
    return sorted(os.listdir(directory)) if os.path.isdir(directory) else []


def module_args(sshd, src, host_dir, **extra):
    return dict(dict(src=src, dest='ssh://%s@127.0.0.1:%d%s' % (sshd.user, sshd.port, sshd.backups),
                     host_dir=host_dir, identity_file=sshd.user_key, known_hosts=sshd.known_hosts), **extra)


def dead_pid():
    proc = subprocess.Popen(['true'])
    proc.wait()
    return proc.pid


@pytest.fixture
def small_tmpfs(sshd):
    """Mount a tmpfs of the given size on a per-host dir of the backup host (its user's); unmounted afterwards."""
    mounted = []

    def mount(host_dir, size):
        path = sshd.host_dir(host_dir)
        os.makedirs(path, exist_ok=True)
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%d,mode=0700,uid=%d,gid=%d' % (size, sshd.uid, sshd.uid),
                        'alation-backup-far-test', path], check=True)
        mounted.append(path)
        return path
    yield mount
    for path in reversed(mounted):
        subprocess.run(['umount', path], check=False)


def test_a_copy_killed_mid_way_is_cleaned_by_the_next_here_and_there(sshd, scratch):
    local = os.path.join(scratch, 'local')
    # Big enough that the stream runs for a while on loopback; zeros, so it costs no disk here.
    src = publish(local, '202611300102', size=256 * 1024 * 1024)
    name = os.path.basename(src)
    far = sshd.host_dir('alation-killed')
    # Another host's temp file (another label): never judged here, whatever its pid.
    theirs = tmp_name(archive_name('202611290102'), pid=dead_pid(), host='another-host-0123abcd')
    os.makedirs(far)
    with open(os.path.join(far, theirs), 'wb') as f:
        f.write(b'another host, mid-way')
    os.chown(far, sshd.uid, sshd.uid)
    with open(sshd.user_key) as f:
        key = f.read()
    with open(sshd.known_hosts) as f:
        known = f.read()
    args = module_args(sshd, src, 'alation-killed', method='stream', identity_content=key, known_hosts_content=known)
    del args['identity_file'], args['known_hosts']
    argv, env, args_file = _argv_env('offsite_copy', args)
    before = dead_key_dirs()
    # Its own session: killed with its ssh, as a cancelled job's host process would be.
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    ours = tmp_name(name, pid=proc.pid)
    try:
        deadline = time.time() + 60
        while not (os.path.exists(os.path.join(far, ours)) and os.path.getsize(os.path.join(far, ours)) > 0):
            assert proc.poll() is None, proc.communicate()[0]
            assert time.time() < deadline, 'no temp file appeared on the far side'
            time.sleep(0.002)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        os.unlink(args_file)
    time.sleep(0.5)  # the far side's cat sees the end of its stream
    assert ours in listing(far) and os.path.getsize(os.path.join(far, ours)) < os.path.getsize(src)
    [left_key_dir] = dead_key_dirs() - before
    assert os.path.basename(left_key_dir).startswith('%s.%s.%d.' % (_offsite.KEY_DIR_PREFIX, host_label(), proc.pid))

    # The next copy (another archive) removes both, and leaves the other host's temp file alone.
    newer = publish(local, '202612010102')
    result = run_module('offsite_copy', dict(args, src=newer))
    assert result['copy']['result'] == 'ok', result
    assert result['copy']['removed_tmp'] == [os.path.join(far, ours)]
    assert result['removed_key_dirs'] == [left_key_dir] and not os.path.exists(left_key_dir)
    assert dead_key_dirs() <= before, 'its own key dir is gone too'
    assert listing(far) == sorted([_offsite.OWNER_MARKER, theirs, os.path.basename(newer),
                                   os.path.basename(newer) + '.sha256'])


def test_a_full_far_side_gets_retention_first_then_the_copy_fits(sshd, scratch, small_tmpfs):
    far = small_tmpfs('alation-full', 1024 * 1024)
    older = [os.path.basename(publish(far, '2026112%d0102' % day, uid=sshd.uid, data=os.urandom(300000))) for day in (6, 7, 8)]
    src = publish(os.path.join(scratch, 'local'), '202611300102', data=os.urandom(300000))
    name = os.path.basename(src)
    free = int(subprocess.run(['df', '-Pk', far], stdout=subprocess.PIPE, check=True,
                              universal_newlines=True).stdout.splitlines()[-1].split()[3]) * 1024
    assert free < 300000, 'the far side is too full for the archive before retention'

    result = run_module('offsite_copy', module_args(sshd, src, 'alation-full', keep_count=2))
    copy = result['copy']
    assert not result['failed'] and copy['result'] == 'ok', result
    # keep_count 2 with this archive about to come: only the newest there stays; two went, before the copy.
    assert copy['retention']['removed'] == [os.path.join(far, n) for o in older[:2] for n in (o, o + '.sha256')]
    assert copy['free_bytes'] >= copy['needed_bytes'] > 300000
    assert listing(far) == sorted([_offsite.OWNER_MARKER, older[2], older[2] + '.sha256', name, name + '.sha256'])
    subprocess.run(['sha256sum', '-c', name + '.sha256'], cwd=far, check=True, stdout=subprocess.DEVNULL)


def test_a_copy_that_cannot_fit_fails_naming_the_free_and_needed_bytes(sshd, scratch, small_tmpfs):
    far = small_tmpfs('alation-tiny', 1024 * 1024)
    older = [os.path.basename(publish(far, '2026112%d0102' % day, uid=sshd.uid, data=os.urandom(200000))) for day in (6, 7)]
    src = publish(os.path.join(scratch, 'local'), '202611300102', data=os.urandom(1500000))

    result = run_module('offsite_copy', module_args(sshd, src, 'alation-tiny', keep_count=2, required=True))
    assert result['failed']
    copy = result['copy']
    m = re.search(r'not enough free space on the backup host for %s in .*: (\d+) bytes \(.*\) free, (\d+) bytes '
                  r'\(.*\) needed for the archive and its \.sha256, after retention there removed 2 files'
                  % re.escape(os.path.basename(src)), result['msg'])
    assert m, result['msg']
    free, needed = int(m.group(1)), int(m.group(2))
    assert needed == copy['needed_bytes'] == (1500000 + 4095) // 4096 * 4096 + 4096
    assert free == copy['free_bytes'] and free < needed and free > 1024 * 1024 - 300000
    # Retention made what room it could (the newest copy there stays), nothing was sent, no temp file.
    assert listing(far) == sorted([_offsite.OWNER_MARKER, older[1], older[1] + '.sha256'])


def test_a_per_host_dir_of_another_machine_is_refused(sshd, scratch):
    far = sshd.host_dir('alation-shared-name')
    older = os.path.basename(publish(far, '202611260102', uid=sshd.uid))
    with open(os.path.join(far, _offsite.OWNER_MARKER), 'w') as f:
        f.write('machine_id 0123456789abcdef0123456789abcdef\nhost alation-elsewhere\n')
    before = listing(far)
    src = publish(os.path.join(scratch, 'local'), '202611300102')
    result = run_module('offsite_copy', module_args(sshd, src, 'alation-shared-name', keep_count=1))
    assert not result['failed'] and result['copy']['result'] == 'failed'
    error = result['copy']['error']
    assert 'belongs to another machine (alation-elsewhere' in error and 'alation_backup_copy_host_dir' in error
    assert listing(far) == before, 'nothing written there, %s not pruned' % older

    # The dir this machine claimed is its own: a second copy is let in.
    src2 = publish(os.path.join(scratch, 'local'), '202611300202')
    first = run_module('offsite_copy', module_args(sshd, src2, 'alation-mine'))
    again = run_module('offsite_copy', module_args(sshd, src2, 'alation-mine'))
    assert first['copy']['result'] == 'ok' and again['copy']['result'] == 'ok' and not again['changed']
    with open(os.path.join(sshd.host_dir('alation-mine'), _offsite.OWNER_MARKER)) as f:
        assert _offsite.parse_owner(f.read())['host'] == _offsite.this_machine()[1]


def test_a_site_ssh_config_is_not_read(sshd, scratch):
    # What root's ssh reads (Debian's /etc/ssh/ssh_config includes ssh_config.d): for this throwaway user only,
    # a proxy that breaks every connection, agent forwarding, and no host-key checking.
    conf = '/etc/ssh/ssh_config.d/zz-alation-backup-test-%s.conf' % sshd.user
    with open(conf, 'w') as f:
        f.write('Match originalhost 127.0.0.1 user %s\n  ProxyCommand /bin/false\n  ForwardAgent yes\n'
                '  StrictHostKeyChecking no\n' % sshd.user)
    try:
        target = _offsite.parse_target(module_args(sshd, '', '')['dest'])
        argv = _offsite.ssh_options('ssh', target, sshd.user_key, sshd.known_hosts, 10)
        assert argv[1:3] == ['-F', '/dev/null']
        # Read, the site config breaks the connection: the test means something.
        read = subprocess.run(argv[:1] + argv[3:] + ['--', '127.0.0.1', 'true'], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, timeout=60, check=False)
        assert read.returncode == 255, read
        assert subprocess.run(argv + ['--', '127.0.0.1', 'true'], timeout=60, check=False).returncode == 0
        src = publish(os.path.join(scratch, 'local'), '202611300102')
        for method in ('stream', 'rsync') if shutil.which('rsync') else ('stream',):
            result = run_module('offsite_copy', module_args(sshd, src, 'alation-config-%s' % method, method=method))
            assert result['copy']['result'] == 'ok' and result['copy']['method'] == method, result
    finally:
        os.unlink(conf)


def test_a_local_retention_failure_still_copies_the_new_archive(alation_host, sshd):
    host = alation_host
    storage = host.path('/data2/backup')
    old = [publish(storage, '2026110%d0102' % day) for day in (1, 2)]
    # An old archive that cannot be removed (a file bind-mounted on it: unlink says EBUSY), so retention fails.
    pinned = os.path.join(os.path.dirname(storage), 'pinned-archive')
    shutil.copyfile(old[0], pinned)
    subprocess.run(['mount', '--bind', pinned, old[0]], check=True)
    try:
        with open(sshd.user_key) as f:
            key = f.read()  # the key itself, not a file: the role passes it to the module as text
        before = dead_key_dirs()
        run = run_playbook('backup.yml', dict(
            host.role_vars, alation_backup_engine='pg_basebackup', alation_backup_keep_count=1,
            alation_backup_copy_to=sshd.dest(), alation_backup_copy_ssh_key=key,
            alation_backup_copy_known_hosts=sshd.known_hosts))
    finally:
        subprocess.run(['umount', old[0]], check=False)
    assert run.rc != 0, 'the run still fails with retention'
    record = run.records[HOST]
    assert record['result'] == 'failed' and 'Retention' in record['error'] and 'could not remove' in record['error'], \
        record['error']
    assert os.path.basename(old[0]) in record['error']
    # The good new archive was copied all the same, verified there.
    copy = record['copy']
    assert copy['result'] == 'ok', copy
    name = os.path.basename(record['archive'])
    far = sshd.host_dir(HOST)
    assert name in listing(far) and name + '.sha256' in listing(far)
    subprocess.run(['sha256sum', '-c', name + '.sha256'], cwd=far, check=True, stdout=subprocess.DEVNULL)
    assert os.path.exists(record['archive']), 'the local archive stays'
    assert dead_key_dirs() <= before, 'no key dir left behind'
    assert 'PRIVATE KEY' not in run.output
