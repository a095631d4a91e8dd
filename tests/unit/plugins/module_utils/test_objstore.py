# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The object-store copy's core: the target, rclone's environment (the secret only there), its output read, and the
copy / verify / retention sequence against a bucket double (a dict answering rclone's commands as rclone would).
The real S3 server and rclone are in tests/integration/test_object_storage.py."""

import calendar
import hashlib
import json
import pathlib
import time

import pytest

from ansible_collections.alation.backup.plugins.module_utils import _objstore as S
from ansible_collections.alation.backup.plugins.module_utils import _offsite
from ansible_collections.alation.backup.plugins.module_utils._archive_names import archive_name, sidecar_text

import archives  # tests/support

from .runner_double import runner

TAG = archives.TAG
NOW = calendar.timegm(time.strptime('202611301200', '%Y%m%d%H%M'))
SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'


@pytest.mark.parametrize('value, bucket, prefix', [
    ('s3://acme-backups/prod', 'acme-backups', 'prod'),
    ('s3://acme-backups', 'acme-backups', ''),
    ('s3://acme.backups/a/b//c/', 'acme.backups', 'a/b/c'),
])
def test_parse_target(value, bucket, prefix):
    assert S.is_object_target(value)
    assert S.parse_target(value) == S.ObjTarget('s3', bucket, prefix)


@pytest.mark.parametrize('value, says', [
    ('s3://Acme/prod', 'bucket name'),
    ('s3:///prod', 'bucket name'),
    ('s3://acme-backups/../etc', "'..'"),
    ('s3://acme-backups/a b', "'a b'"),
])
def test_parse_target_refuses(value, says):
    with pytest.raises(_offsite.CopyError) as e:
        S.parse_target(value)
    assert says in str(e.value) and repr(value) in str(e.value)


def test_ssh_targets_are_not_object_targets():
    assert not S.is_object_target('backup@host:/srv') and not S.is_object_target({'host': 'h', 'path': '/p'})


def test_the_secret_goes_in_the_environment_and_env_auth_without_keys():
    env = S.rclone_env('http://127.0.0.1:9000', 'eu-west-1', 'AKIAEXAMPLE', SECRET)
    assert env[S.ENV_PREFIX + 'SECRET_ACCESS_KEY'] == SECRET and env[S.ENV_PREFIX + 'ENV_AUTH'] == 'false'
    assert env[S.ENV_PREFIX + 'PROVIDER'] == 'Other' and env[S.ENV_PREFIX + 'REGION'] == 'eu-west-1'
    own = S.rclone_env()
    assert own[S.ENV_PREFIX + 'ENV_AUTH'] == 'true' and own[S.ENV_PREFIX + 'PROVIDER'] == 'AWS'
    assert not any(k.endswith('SECRET_ACCESS_KEY') for k in own)
    with pytest.raises(_offsite.CopyError, match='both'):
        S.rclone_env(access_key_id='AKIAEXAMPLE')


def test_rclone_output_read():
    listing = json.dumps([{'Name': 'a.tar.gz', 'Size': 3, 'IsDir': False, 'Hashes': {'md5': 'ABC'}},
                          {'Name': 'sub', 'Size': -1, 'IsDir': True}])
    assert S.parse_lsjson(listing) == {'a.tar.gz': dict(size=3, md5='abc'), 'sub': None}
    assert S.parse_check('NOTICE: S3 bucket b: 0 differences found\nNOTICE: S3 bucket b: 2 matching files\n') == (2, 0, 0)
    assert S.parse_check('NOTICE: 1 differences found\nNOTICE: 1 hashes could not be checked\n1 matching file') == (1, 1, 1)
    said = ('2026/12/03 17:13:23 ERROR : : error listing: SignatureDoesNotMatch: The request signature ...\n'
            '\tstatus code: 403, request id: X, host id:\n')
    assert S.rclone_said(said) == 'ERROR : : error listing: SignatureDoesNotMatch: The request signature ...'
    assert 'alation_backup_copy_s3_secret_access_key' in S.explain(said)
    assert 'bucket does not exist' in S.explain('NoSuchBucket: The specified bucket does not exist')
    assert S.explain('something else') == ''


class Bucket(object):
    """rclone against a bucket held in a dict: lsjson, cat, rcat, copyto, deletefile and check, as rclone answers."""

    def __init__(self, corrupt=False, refuse=None):
        self.objects = {}
        self.corrupt = corrupt
        self.refuse = refuse
        self.envs = []

    def key(self, remote):
        return remote.split(':', 1)[1].split('/', 1)[1]

    def __call__(self, argv, data=None):
        args = argv[argv.index('--timeout') + 2:]
        verb, paths = args[0], args[args.index('--') + 1:]
        if self.refuse and self.refuse in args:
            return 1, '', '2026/12/03 17:00:00 ERROR : %s: AccessDenied: Access Denied\n' % self.refuse
        if verb == 'lsjson':
            prefix = self.key(paths[0]) + '/'
            found = [dict(Name=k[len(prefix):], Size=len(v), IsDir=False, Hashes=dict(md5=hashlib.md5(v).hexdigest()))
                     for k, v in sorted(self.objects.items()) if k.startswith(prefix) and '/' not in k[len(prefix):]]
            return (0, json.dumps(found), '') if found else (3, '', 'ERROR : directory not found')
        if verb == 'cat':
            return 0, self.objects[self.key(paths[0])].decode(), ''
        if verb == 'rcat':
            self.objects[self.key(paths[0])] = data
            return 0, '', ''
        if verb == 'copyto':
            with open(paths[0], 'rb') as f:
                body = f.read()
            self.objects[self.key(paths[1])] = body + (b'x' if self.corrupt and paths[0].endswith('.gz') else b'')
            return 0, '', ''
        if verb == 'deletefile':
            if self.objects.pop(self.key(paths[0]), None) is None:
                return 4, '', 'ERROR : Failed to deletefile: object not found'
            return 0, '', ''
        if verb == 'check':
            names = [a[1:] for i, a in enumerate(args) if i and args[i - 1] == '--include']
            prefix = self.key(paths[1])
            same = 0
            for n in names:
                with open('%s/%s' % (paths[0], n), 'rb') as f:
                    same += self.objects.get('%s/%s' % (prefix, n)) == f.read()
            return (0 if same == len(names) else 1, '',
                    'NOTICE: %d differences found\nNOTICE: %d matching files\n' % (len(names) - same, same))
        raise AssertionError(argv)


def copier(bucket, host_dir='alation-one'):
    r = runner()
    calls = []

    def run_command(argv, environ_update=None, data=None, binary_data=False):
        calls.append(list(argv))
        bucket.envs.append(environ_update)
        return bucket(argv, data)
    r.module.run_command = run_command
    r.calls = calls
    return S.ObjCopier(r, S.parse_target('s3://acme-backups/prod'), host_dir, 'http://127.0.0.1:9000', 'us-east-1',
                       'AKIAEXAMPLE', SECRET, rclone='/usr/bin/rclone', ca_bundle='')


def publish(d, ts, data=None):
    """An archive and its .sha256 as the archive module leaves them (tests/support/archives.py), as a Path."""
    return pathlib.Path(archives.publish(d, ts, data=data, repeat=1))


def far_copy(bucket, ts, host_dir='alation-one'):
    name = archive_name(ts, TAG)
    data = ('archive %s' % ts).encode()
    bucket.objects['prod/%s/%s' % (host_dir, name)] = data
    bucket.objects['prod/%s/%s.sha256' % (host_dir, name)] = sidecar_text(
        hashlib.sha256(data).hexdigest(), name, len(data)).encode()
    return name


def test_a_copy_claims_the_prefix_uploads_verifies_and_keeps_retention(tmp_path):
    bucket = Bucket()
    older = [far_copy(bucket, '2026110%d0102' % d) for d in range(1, 5)]
    src = publish(tmp_path, '202611300102')
    copy = copier(bucket)
    changed, record, warnings = _offsite.run_copy(copy, str(src), rules=dict(keep_count=3), clock=lambda: NOW)
    assert changed and record['result'] == 'ok' and record['verified'] == 'size and md5', record
    assert bucket.objects['prod/alation-one/%s' % src.name] == src.read_bytes()
    assert b'machine_id' in bucket.objects['prod/alation-one/' + _offsite.OWNER_MARKER]
    assert record['retention']['removed'] == ['s3://acme-backups/prod/alation-one/%s' % n
                                              for o in older[:2] for n in (o, o + '.sha256')]
    # The archive goes up before its .sha256; the secret is on no command line, only in rclone's environment.
    ups = [c[-1] for c in copy.runner.calls if 'copyto' in c]
    assert ups == ['alationbackup:acme-backups/prod/alation-one/%s' % n for n in (src.name, src.name + '.sha256')]
    assert not any(SECRET in ' '.join(c) for c in copy.runner.calls)
    assert all(e[S.ENV_PREFIX + 'SECRET_ACCESS_KEY'] == SECRET for e in bucket.envs)
    assert not any(SECRET in c for c in copy.runner.executed_commands)

    # Again: verified there, nothing sent.
    again = copier(bucket)
    changed, record, warnings = _offsite.run_copy(again, str(src), rules=dict(keep_count=3), clock=lambda: NOW)
    assert not changed and record['result'] == 'ok' and record['method'] == ''
    assert not any('copyto' in c for c in again.runner.calls)


def test_a_copy_that_does_not_verify_is_removed_there_and_reported(tmp_path):
    bucket = Bucket(corrupt=True)
    src = publish(tmp_path, '202611300102')
    changed, record, warnings = _offsite.run_copy(copier(bucket), str(src), rules=dict(keep_count=3), clock=lambda: NOW)
    assert record['result'] == 'failed' and 'does not match' in record['error'] and 's3://acme-backups' in record['error']
    assert sorted(bucket.objects) == ['prod/alation-one/' + _offsite.OWNER_MARKER], 'what it uploaded is removed'
    assert src.exists() and (tmp_path / (src.name + '.sha256')).exists()


def test_a_refused_upload_names_the_target_and_what_to_do(tmp_path):
    src = publish(tmp_path, '202611300102')
    bucket = Bucket(refuse='copyto')
    changed, record, warnings = _offsite.run_copy(copier(bucket), str(src), clock=lambda: NOW)
    assert record['result'] == 'failed'
    assert record['error'].startswith('uploading %s on s3://acme-backups/prod/alation-one failed (rclone exit 1)'
                                      % src.name)
    assert 's3:PutObject' in record['error'] and 'AccessDenied' in record['error']


def test_another_machines_prefix_is_refused(tmp_path):
    bucket = Bucket()
    bucket.objects['prod/alation-one/' + _offsite.OWNER_MARKER] = b'machine_id 0123456789abcdef\nhost elsewhere\n'
    name = far_copy(bucket, '202611010102')
    src = publish(tmp_path, '202611300102')
    changed, record, warnings = _offsite.run_copy(copier(bucket), str(src), rules=dict(keep_count=1), clock=lambda: NOW)
    assert record['result'] == 'failed' and 'belongs to another machine' in record['error']
    assert sorted(bucket.objects) == sorted(['prod/alation-one/' + _offsite.OWNER_MARKER, 'prod/alation-one/' + name,
                                             'prod/alation-one/%s.sha256' % name])


def test_retention_there_keeps_all_when_the_newest_is_not_vouched_for(tmp_path):
    bucket = Bucket()
    names = [far_copy(bucket, '2026110%d0102' % d) for d in range(1, 4)]
    # The newest one's .sha256 records another size than the store lists.
    bucket.objects['prod/alation-one/%s' % names[-1]] += b'more'
    planned = copier(bucket).plan_retention(dict(keep_count=1), now=NOW)
    assert planned['remove'] == [] and 'does not match its .sha256' in planned['refused']
    assert 'bytes there, its .sha256 records' in planned['refused']


def test_check_mode_runs_nothing(tmp_path):
    bucket = Bucket()
    src = publish(tmp_path, '202611300102')
    copy = copier(bucket)
    changed, record, warnings = _offsite.run_copy(copy, str(src), rules=dict(keep_count=3), check_mode=True)
    assert record['result'] == 'skipped' and copy.runner.calls == [] and bucket.objects == {}
    assert any('copyto' in c and c.endswith('(check mode: not run)') for c in copy.runner.executed_commands)


def test_aws_ca_bundle_goes_to_rclones_own_flag():
    """rclone 1.60's AWS SDK cannot load AWS_CA_BUNDLE into rclone's transport (LoadCustomCABundleError): the
    bundle goes to --ca-cert and the variable is emptied for rclone."""
    copy = S.ObjCopier(runner(), S.parse_target('s3://acme-backups'), 'h', rclone='/usr/bin/rclone',
                       ca_bundle='/etc/ssl/certs/corp.pem')
    assert copy.rclone[copy.rclone.index('--ca-cert') + 1] == '/etc/ssl/certs/corp.pem'
    assert copy.env['AWS_CA_BUNDLE'] == '' and copy.where == 's3://acme-backups/h'
    assert copy.remote('x') == 'alationbackup:acme-backups/h/x'
    assert '--ca-cert' not in S.ObjCopier(runner(), S.parse_target('s3://acme-backups'), 'h', rclone='/usr/bin/rclone',
                                          ca_bundle='').rclone
