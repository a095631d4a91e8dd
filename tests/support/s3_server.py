# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A real S3 server on loopback for the object-store copy: moto's server mode, with request signing enforced.

moto (``moto[server]``, tests/requirements/s3-server.txt, in its own venv
``.venv-s3``: ``make s3-server`` makes it) serves the S3 REST API over HTTP
on a free loopback port. With ``INITIAL_NO_AUTH_ACTION_COUNT`` it checks
every request's SigV4 signature against its IAM users, and their policies,
after the first few: those create the IAM user, its access key, its policy
and the bucket, so every request of the copy is signed and checked as AWS
would, and a wrong secret key is refused (SignatureDoesNotMatch).

The tests look at the bucket with boto3 (moto's own dependency, in the same
venv), a client other than the rclone under test: ``objects()``,
``get()``, ``multipart_uploads()``.
"""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
VENV = os.environ.get('ALATION_BACKUP_S3_VENV') or os.path.join(REPO, '.venv-s3')
PYTHON = os.path.join(VENV, 'bin', 'python')
SERVER = os.path.join(VENV, 'bin', 'moto_server')
REGION = 'us-east-1'
POLICY = json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': 's3:*', 'Resource': '*'}]})
# The requests made before signing is enforced: CreateUser, CreateAccessKey, PutUserPolicy, CreateBucket.
SETUP_REQUESTS = 4
# The IAM query API is dispatched on its Authorization header's service; unsigned (still allowed) but named.
IAM_AUTH = 'AWS4-HMAC-SHA256 Credential=setup/20260101/%s/iam/aws4_request, SignedHeaders=host, Signature=0' % REGION

# moto's server, with one divergence from AWS set right: AWS takes ``versionId=null`` on an unversioned bucket (its
# objects' version id is "null"), moto answers 400. rclone HEADs a finished multipart upload with the version id the
# completion returned, and moto returns "null" there: without this every multipart upload would fail against moto.
SERVER_MAIN = r'''
import sys
from moto.s3 import responses
head_object = responses.S3Response.head_object
def head_object_null_version(self, bucket_name, query, key_name, headers):
    if query.get('versionId') == ['null'] and not self.backend.get_bucket(bucket_name).is_versioned:
        query = dict((k, v) for k, v in query.items() if k != 'versionId')
    return head_object(self, bucket_name, query, key_name, headers)
responses.S3Response.head_object = head_object_null_version
from moto.server import main
sys.argv[0] = 'moto_server'
sys.exit(main())
'''

CLIENT = r'''
import json, sys
import boto3
spec = json.loads(sys.argv[1])
s3 = boto3.client('s3', endpoint_url=spec['endpoint'], region_name=spec['region'],
                  aws_access_key_id=spec['key'], aws_secret_access_key=spec['secret'])
what = spec['what']
if what == 'objects':
    found = {}
    for page in s3.get_paginator('list_objects_v2').paginate(Bucket=spec['bucket'], Prefix=spec.get('prefix', '')):
        for o in page.get('Contents', []):
            found[o['Key']] = dict(size=o['Size'], etag=o['ETag'].strip('"'))
    print(json.dumps(found))
elif what == 'get':
    sys.stdout.buffer.write(s3.get_object(Bucket=spec['bucket'], Key=spec['key_name'])['Body'].read())
elif what == 'put':
    s3.put_object(Bucket=spec['bucket'], Key=spec['key_name'], Body=sys.stdin.buffer.read())
elif what == 'uploads':
    print(json.dumps([u['Key'] for u in s3.list_multipart_uploads(Bucket=spec['bucket']).get('Uploads', [])]))
'''


def available():
    return os.access(SERVER, os.X_OK) and os.access(PYTHON, os.X_OK)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


class S3Server(object):
    """moto_server on 127.0.0.1:<free port>, signing enforced, one user and one bucket; ``stop()`` ends it."""

    def __init__(self, bucket='alation-backups'):
        self.bucket = bucket
        self.port = free_port()
        self.endpoint = 'http://127.0.0.1:%d' % self.port
        self.region = REGION
        self.log = None
        self.proc = None
        self.key = self.secret = None

    def start(self):
        self.log = os.path.join(tempfile.mkdtemp(prefix='alation-backup-s3-'), 'moto.log')
        env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT=str(SETUP_REQUESTS), MOTO_ALLOW_NONEXISTENT_REGION='true')
        with open(self.log, 'wb') as log:
            self.proc = subprocess.Popen([PYTHON, '-c', SERVER_MAIN, '-H', '127.0.0.1', '-p', str(self.port)], stdout=log,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError('moto_server did not start: %s' % open(self.log).read()[-2000:])
                time.sleep(0.2)
        self._iam('CreateUser', UserName='alation-backup')
        created = self._iam('CreateAccessKey', UserName='alation-backup')
        self.key = created.split('<AccessKeyId>')[1].split('<')[0]
        self.secret = created.split('<SecretAccessKey>')[1].split('<')[0]
        self._iam('PutUserPolicy', UserName='alation-backup', PolicyName='s3', PolicyDocument=POLICY)
        urllib.request.urlopen(urllib.request.Request('%s/%s' % (self.endpoint, self.bucket), method='PUT'),
                               timeout=30).read()
        return self

    def _iam(self, action, **params):
        data = urllib.parse.urlencode(dict(params, Action=action, Version='2010-05-08')).encode()
        request = urllib.request.Request(self.endpoint + '/', data=data, headers={
            'Content-Type': 'application/x-www-form-urlencoded', 'Authorization': IAM_AUTH})
        return urllib.request.urlopen(request, timeout=30).read().decode()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def url(self, prefix=''):
        return 's3://%s/%s' % (self.bucket, prefix) if prefix else 's3://%s' % self.bucket

    def _client(self, what, stdin=None, **spec):
        spec = dict(spec, what=what, endpoint=self.endpoint, region=self.region, key=self.key, secret=self.secret,
                    bucket=self.bucket)
        env = dict(os.environ)
        env.pop('AWS_CA_BUNDLE', None)
        return subprocess.run([PYTHON, '-c', CLIENT, json.dumps(spec)], input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, check=True, timeout=120).stdout

    def objects(self, prefix=''):
        """``{key: {size, etag}}`` under ``prefix``, as the server lists them."""
        return json.loads(self._client('objects', prefix=prefix))

    def get(self, key):
        return self._client('get', key_name=key)

    def put(self, key, data):
        self._client('put', stdin=data, key_name=key)

    def multipart_uploads(self):
        return json.loads(self._client('uploads'))


def _main(argv):
    """``up <dir>``: start a server that outlives this process, its details to <dir>/s3.json (0600: it holds the
    secret key); ``down <dir>``: stop it; ``ls <dir> [prefix]``: list the bucket; ``get <dir> <key> <file>``."""
    import sys
    what, directory = argv[0], argv[1]
    state = os.path.join(directory, 's3.json')
    if what == 'up':
        server = S3Server().start()
        os.makedirs(directory, exist_ok=True)
        fd = os.open(state, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(dict(pid=server.proc.pid, endpoint=server.endpoint, region=server.region, bucket=server.bucket,
                           key=server.key, secret=server.secret, log=server.log), f)
        print(json.dumps(dict(pid=server.proc.pid, endpoint=server.endpoint, bucket=server.bucket)))
        return 0
    try:
        with open(state) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return 0 if what == 'down' else 1
    if what == 'down':
        try:
            os.killpg(found['pid'], signal.SIGTERM)
        except ProcessLookupError:
            pass
        return 0
    server = S3Server(found['bucket'])
    server.endpoint, server.region, server.key, server.secret = found['endpoint'], found['region'], found['key'], found['secret']
    if what == 'ls':
        json.dump(server.objects(argv[2] if len(argv) > 2 else ''), sys.stdout, indent=1, sort_keys=True)
        print()
    elif what == 'get':
        with open(argv[3], 'wb') as f:
            f.write(server.get(argv[2]))
    return 0


if __name__ == '__main__':
    import sys
    sys.exit(_main(sys.argv[1:]))
