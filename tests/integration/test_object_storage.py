# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The copy to an object store (s3://bucket/prefix) against a real S3 server on loopback.

The server is moto's server mode (tests/support/s3_server.py), started by
these tests on a free loopback port with SigV4 signing enforced, and stopped
after. The copy runs rclone (Debian's package); the tests look at the bucket
with boto3, another client. The module alone is run for the copy, retention,
a killed upload and wrong credentials; the backup role once, in a real
Alation shell.
"""

import glob
import hashlib
import os
import signal
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils._offsite import OWNER_MARKER

from archives import TAG, publish
from modrun import result_of, run_module, spawn_module
from playbook import HOST, run_playbook
import s3_server

RCLONE = '/usr/bin/rclone'

pytestmark = pytest.mark.skipif(not s3_server.available() or not os.access(RCLONE, os.X_OK),
                                reason='needs rclone (make deps) and the S3 server venv (make s3-server)')


@pytest.fixture(scope='module')
def s3():
    server = s3_server.S3Server().start()
    try:
        yield server
    finally:
        server.stop()


def put_copy(s3, prefix, ts):
    """An archive and its .sha256 there, as an earlier run's copy left them."""
    data = ('archive %s' % ts).encode() * 100
    name = '%s_%s_alation_backup.tar.gz' % (ts, TAG)
    s3.put('%s/%s' % (prefix, name), data)
    s3.put('%s/%s.sha256' % (prefix, name),
           ('%s  %s\n# size %d\n' % (hashlib.sha256(data).hexdigest(), name, len(data))).encode())
    return name


def names(s3, prefix):
    return sorted(k[len(prefix) + 1:] for k in s3.objects(prefix + '/') if not k.endswith('/' + OWNER_MARKER))


def module_args(s3, src, host_dir, **extra):
    return dict(dict(src=src, dest=s3.url('prod'), host_dir=host_dir, s3_endpoint=s3.endpoint,
                     s3_region=s3.region, s3_access_key_id=s3.key, s3_secret_access_key=s3.secret), **extra)


def md5_of(path):
    with open(path, 'rb') as f:
        return hashlib.md5(f.read()).hexdigest()


def test_a_copy_is_verified_there_and_retention_runs_there(s3, scratch):
    prefix = 'prod/alation-one'
    older = [put_copy(s3, prefix, '2026110%d0102' % day) for day in range(1, 5)]
    s3.put(prefix + '/notes.txt', b'the backup admin keeps notes here')
    put_copy(s3, 'prod/alation-other', '202611010102')
    archive = publish(os.path.join(scratch, 'local'), '202611300102', data=os.urandom(3 * 1024 * 1024))
    name = os.path.basename(archive)

    result = run_module('offsite_copy', module_args(s3, archive, 'alation-one', keep_count=3))
    assert not result['failed'] and result['changed'], result
    copy = result['copy']
    assert copy['result'] == 'ok' and copy['method'] == 'rclone' and copy['verified'] == 'size and md5', copy
    assert copy['dest'] == 's3://%s/%s/%s' % (s3.bucket, prefix, name) and copy['bytes'] == os.path.getsize(archive)

    # What the server holds, asked with another client: the bytes, the store's own MD5 (single-part ETag), the .sha256.
    objects = s3.objects(prefix + '/')
    assert objects['%s/%s' % (prefix, name)] == dict(size=os.path.getsize(archive), etag=md5_of(archive))
    with open(archive, 'rb') as f:
        assert s3.get('%s/%s' % (prefix, name)) == f.read()
    with open(archive + '.sha256', 'rb') as f:
        assert s3.get('%s/%s.sha256' % (prefix, name)) == f.read()
    assert b'machine_id' in s3.get('%s/%s' % (prefix, OWNER_MARKER)), 'the prefix is claimed for this machine'

    # Retention there: the two oldest copies (and their .sha256) went; nothing foreign, nothing of another host.
    gone = [n for o in older[:2] for n in (o, o + '.sha256')]
    assert copy['retention']['removed'] == ['s3://%s/%s/%s' % (s3.bucket, prefix, n) for n in gone]
    assert names(s3, prefix) == sorted([name, name + '.sha256', 'notes.txt']
                                       + [n for o in older[2:] for n in (o, o + '.sha256')])
    assert len(names(s3, 'prod/alation-other')) == 2
    # The secret is on no command line the module ran.
    assert not any(s3.secret in c for c in result['executed_commands'])
    assert s3.secret not in repr(result)

    # Again: the copy there checks out, nothing is sent.
    again = run_module('offsite_copy', module_args(s3, archive, 'alation-one', keep_count=3))
    assert again['copy']['result'] == 'ok' and not again['changed'] and again['copy']['method'] == '', again


def test_a_multipart_copy_and_a_killed_upload(s3, scratch):
    """A multipart upload (5 MiB parts): killed mid-way, nothing is under the final name and the local archive is
    as it was; then a full one whose ETag is the parts' (-N), verified by size and md5."""
    archive = publish(os.path.join(scratch, 'local'), '202611300102', data=os.urandom(24 * 1024 * 1024))
    name = os.path.basename(archive)
    before = hashlib.sha256(open(archive, 'rb').read()).hexdigest()
    parts = dict(RCLONE_S3_UPLOAD_CUTOFF='5M', RCLONE_S3_CHUNK_SIZE='5M')
    proc, path = spawn_module('offsite_copy', module_args(s3, archive, 'alation-kill'),
                              env=dict(parts, RCLONE_BWLIMIT='2M'))
    rclone = None
    deadline = time.monotonic() + 60
    while rclone is None and time.monotonic() < deadline:
        for cmdline in glob.glob('/proc/[0-9]*/cmdline'):
            try:
                with open(cmdline, 'rb') as f:
                    argv = f.read().split(b'\0')
            except OSError:
                continue
            if argv[0].endswith(b'rclone') and b'copyto' in argv and archive.encode() in argv:
                rclone = int(cmdline.split('/')[2])
        time.sleep(0.2)
    assert rclone, 'the upload did not start'
    # Some parts in: the multipart upload exists, unfinished.
    while not s3.multipart_uploads() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(2)
    os.kill(rclone, signal.SIGKILL)
    result = result_of(proc, path)
    copy = result['copy']
    assert not result['failed'] and copy['result'] == 'failed', result
    assert 'uploading %s' % name in copy['error'] and 's3://%s/prod/alation-kill' % s3.bucket in copy['error']
    assert names(s3, 'prod/alation-kill') == [], 'nothing under the final name'
    assert hashlib.sha256(open(archive, 'rb').read()).hexdigest() == before and os.path.exists(archive + '.sha256')
    assert any('the local archive is kept' in str(w) for w in result.get('warnings', [])), result

    result = run_module('offsite_copy', module_args(s3, archive, 'alation-kill'), env=parts)
    assert result['copy']['result'] == 'ok' and result['copy']['verified'] == 'size and md5', result['copy']['error']
    etag = s3.objects('prod/alation-kill/')['prod/alation-kill/' + name]['etag']
    assert etag.endswith('-5') and etag != md5_of(archive), 'a multipart ETag is not the MD5 of the file'
    assert names(s3, 'prod/alation-kill') == [name, name + '.sha256']


def test_wrong_credentials_fail_the_copy_clearly_and_keep_the_archive(s3, scratch):
    archive = publish(os.path.join(scratch, 'local'), '202611300102')
    args = module_args(s3, archive, 'alation-wrong', s3_secret_access_key='not-the-secret')
    result = run_module('offsite_copy', args)
    copy = result['copy']
    assert not result['failed'] and copy['result'] == 'failed', result
    assert 's3://%s/prod/alation-wrong' % s3.bucket in copy['error']
    assert 'SignatureDoesNotMatch' in copy['error'] and 'alation_backup_copy_s3_secret_access_key' in copy['error']
    assert os.path.exists(archive) and os.path.exists(archive + '.sha256')
    assert 'not-the-secret' not in repr(result)
    assert names(s3, 'prod/alation-wrong') == []

    result = run_module('offsite_copy', dict(args, required=True))
    assert result['failed'] and 'SignatureDoesNotMatch' in result['msg']
    # The preflight probe says the same before anything is backed up.
    result = run_module('offsite_copy', dict(args, state='check', src=None))
    assert result['failed'] and 'cannot take the copy' in result['msg'] and 'alation-wrong' in result['msg']


def test_a_prefix_of_another_machine_is_refused(s3, scratch):
    s3.put('prod/alation-taken/' + OWNER_MARKER, b'machine_id 0123456789abcdef\nhost elsewhere\n')
    name = put_copy(s3, 'prod/alation-taken', '202611010102')
    archive = publish(os.path.join(scratch, 'local'), '202611300102')
    result = run_module('offsite_copy', module_args(s3, archive, 'alation-taken', keep_count=1))
    assert result['copy']['result'] == 'failed' and 'belongs to another machine' in result['copy']['error']
    assert names(s3, 'prod/alation-taken') == [name, name + '.sha256'], 'nothing written or removed there'


def role_vars(host, s3, **extra):
    return dict(dict(host.role_vars, alation_backup_engine='pg_basebackup', alation_backup_copy_to=s3.url('role'),
                     alation_backup_copy_s3_endpoint=s3.endpoint, alation_backup_copy_s3_region=s3.region,
                     alation_backup_copy_s3_access_key_id=s3.key, alation_backup_copy_s3_secret_access_key=s3.secret),
                **extra)


def secret_files():
    return set(glob.glob('/dev/shm/.alation_backup.*s3_secret*'))


def test_the_role_copies_to_the_bucket_from_the_real_shell(alation_host, s3):
    host = alation_host
    prefix = 'role/' + HOST
    older = [put_copy(s3, prefix, '2026110%d0102' % day) for day in range(1, 4)]
    before = secret_files()
    run = run_playbook('backup.yml', role_vars(host, s3, alation_backup_keep_count=2))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    copy = record['copy']
    assert record['result'] == 'ok' and copy['result'] == 'ok' and copy['method'] == 'rclone', copy
    assert copy['verified'] == 'size and md5'
    [archive] = sorted(glob.glob(host.path('/data2/backup/*_alation_backup.tar.gz')))
    name = os.path.basename(archive)
    assert copy['dest'] == 's3://%s/%s/%s' % (s3.bucket, prefix, name)
    with open(archive, 'rb') as f:
        assert s3.get('%s/%s' % (prefix, name)) == f.read()
    with open(archive + '.sha256', 'rb') as f:
        assert s3.get('%s/%s.sha256' % (prefix, name)) == f.read()
    # keep_count 2 there: the new copy and the newest older one stay.
    assert names(s3, prefix) == sorted([name, name + '.sha256', older[-1], older[-1] + '.sha256'])
    assert s3.secret not in run.output
    assert secret_files() <= before, 'the secret file on tmpfs is gone'

    # A wrong secret: the copy fails, the backup stands; required, preflight refuses the run before any backup.
    run = run_playbook('backup.yml', role_vars(host, s3, alation_backup_copy_s3_secret_access_key='not-the-secret'))
    assert run.rc == 0, run.output
    record = run.records[HOST]
    assert record['result'] == 'ok' and record['copy']['result'] == 'failed'
    assert 'SignatureDoesNotMatch' in record['copy']['error'] and 's3://%s/role' % s3.bucket in record['copy']['error']
    assert 'not-the-secret' not in run.output
    archives = sorted(glob.glob(host.path('/data2/backup/*_alation_backup.tar.gz')))
    assert len(archives) == 2 and all(os.path.exists(a + '.sha256') for a in archives), 'the local archives stay'
    run = run_playbook('backup.yml', role_vars(host, s3, alation_backup_copy_s3_secret_access_key='not-the-secret',
                                               alation_backup_copy_required=True))
    assert run.rc != 0
    record = run.records[HOST]
    assert record['result'] == 'failed' and record['error'].startswith('Preflight | '), record['error']
    assert 'SignatureDoesNotMatch' in record['error'] and 'alation_backup_copy_s3_secret_access_key' in record['error']
    assert len(glob.glob(host.path('/data2/backup/*_alation_backup.tar.gz'))) == 2, 'no backup was taken'
    assert 'not-the-secret' not in run.output


def test_check_mode_sends_nothing_to_the_bucket(alation_host, s3):
    run = run_playbook('backup.yml', role_vars(alation_host, s3, alation_backup_copy_to=s3.url('check'),
                                               alation_backup_copy_required=True), check=True)
    assert run.rc == 0, run.output
    copy = run.records[HOST]['copy']
    assert copy['result'] in ('skipped', 'off'), copy
    assert s3.objects('check/') == {}, 'nothing written in check mode, not even the probe'
    assert s3.secret not in run.output
