# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The off-host copy to an object store: an archive and its .sha256 to ``s3://bucket/prefix``, and retention there.

The same contract as the SSH copy (``_offsite``), through rclone on the host
(one program for S3 and S3-compatible stores; Debian and EPEL package it):

- Into ``<prefix>/<host dir>/``, which an owner marker object
  (``.alation-backup-owner``) claims for this machine: a prefix another machine
  owns is refused. The store has no O_EXCL: two machines claiming a new prefix
  in the same second could both write the marker (the last one wins, the other
  is refused on its next run).
- The archive is uploaded straight to its final key: an S3 PUT, or a multipart
  upload that rclone completes only once every part is in, makes the object
  visible whole or not at all, so a killed upload leaves nothing under the
  final name (an unfinished multipart upload stays invisible until the bucket's
  AbortIncompleteMultipartUpload lifecycle rule, or ``rclone cleanup``, removes
  its parts). Then its .sha256, so an archive without one is never taken for
  a good one.
- Verified there with ``rclone check --one-way``: the size the store lists, and
  the MD5 the store reports against the local file's. For a single-part upload
  (below rclone's 200 MiB cutoff) that MD5 is the store's ETag, computed by the
  store from what it received. A multipart object's ETag is not the file's MD5
  (it is the MD5 of the parts' MD5s, ``-N``): the store checked each part's
  Content-MD5 as it came and rclone checked the multipart ETag when it completed
  the upload, and the whole-file MD5 that ``check`` compares is the one rclone
  stored beside the object (``X-Amz-Meta-Md5chksum``), computed here. The
  .sha256 is single-part: its ETag is its MD5.
- A failure removes what this copy uploaded and leaves the local archive as it
  was; the record says why and what to do.
- Retention there takes the same decision as here (``_retention.plan_listing``)
  over ``rclone lsjson``'s listing. The store cannot hash sha256 without a
  download, so the newest archive there is vouched for by its .sha256 there (it
  names the archive and records the size the store lists), or by this run's
  verified copy.
- Credentials never reach a command line: rclone reads its remote from the
  environment (``RCLONE_CONFIG_<REMOTE>_*``), the secret key with it; without a
  key, rclone's ``env_auth`` takes the host's own (AWS_* environment, an EC2
  instance role). rclone reads no config file (``--config /dev/null``).

Standard library only; needs rclone on this host.
"""

import collections
import json
import os
import posixpath
import re
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_names import (
    DEFAULT_SUFFIX, tmp_name)
from ansible_collections.alation.backup.plugins.module_utils._offsite import (
    OWNER_MARKER, CopyError, check_owner, host_dir_name, last_lines, local_archive, owner_text, sidecar_fields)
from ansible_collections.alation.backup.plugins.module_utils._retention import plan_listing
from ansible_collections.alation.backup.plugins.module_utils._runner import NOT_RUN, find_program, join_argv, not_found

SCHEMES = ('s3',)
# The rclone remote the environment defines for one copy (RCLONE_CONFIG_<NAME>_*): no config file is read.
REMOTE = 'alationbackup'
ENV_PREFIX = 'RCLONE_CONFIG_%s_' % REMOTE.upper()
BUCKET_RE = re.compile(r'^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$')
PREFIX_PART_RE = re.compile(r'^[A-Za-z0-9_.=+-]+$')
# rclone's exit code for "directory not found": a per-host prefix with nothing in it yet.
RCLONE_DIR_NOT_FOUND = 3
# What the store said, and what to do about it.
HINTS = (
    (re.compile(r'SignatureDoesNotMatch|InvalidAccessKeyId|InvalidClientTokenId|AuthorizationHeaderMalformed|'
                r'NoCredentialProviders|no EC2 IMDS role found|UnrecognizedClientException|ExpiredToken'),
     'the store refused the credentials: check alation_backup_copy_s3_access_key_id and '
     'alation_backup_copy_s3_secret_access_key (when both are empty, the host\'s own: its AWS_* environment or '
     'its EC2 instance role), and alation_backup_copy_s3_region'),
    (re.compile(r'AccessDenied|Forbidden|status code: 403'),
     'the credentials may not write there: give them s3:PutObject, s3:GetObject, s3:ListBucket and s3:DeleteObject '
     'on the bucket and prefix'),
    (re.compile(r'NoSuchBucket|bucket does not exist'),
     'the bucket does not exist: create it (with a lifecycle rule that aborts incomplete multipart uploads) or fix '
     'alation_backup_copy_to'),
    (re.compile(r'connection refused|no such host|i/o timeout|dial tcp|TLS handshake|x509|certificate'),
     'the store cannot be reached: check alation_backup_copy_s3_endpoint (and the host\'s route to it)'),
)

ObjTarget = collections.namedtuple('ObjTarget', 'scheme bucket prefix')


def is_object_target(value):
    """Whether ``value`` (alation_backup_copy_to) names an object store (``s3://``)."""
    return isinstance(value, str) and value.strip().lower().split('://', 1)[0] in SCHEMES and '://' in value


def parse_target(value):
    """An ObjTarget from ``s3://bucket[/prefix]``; CopyError saying what is wrong and what to give."""
    text = str(value or '').strip()
    m = re.match(r'^(?P<scheme>s3)://(?P<bucket>[^/]*)(?:/(?P<prefix>.*))?$', text)
    if not m or not BUCKET_RE.match(m.group('bucket')):
        raise CopyError('copy_to %r: give s3://bucket/prefix (such as s3://acme-alation-backups/prod), with a bucket '
                        'name of 3 to 63 lower-case letters, digits, "." and "-"' % (value,))
    parts = [p for p in (m.group('prefix') or '').split('/') if p]
    for part in parts:
        if part in ('.', '..') or not PREFIX_PART_RE.match(part):
            raise CopyError('copy_to %r: the prefix part %r may only hold letters, digits and "._=+-"' % (value, part))
    return ObjTarget(m.group('scheme'), m.group('bucket'), '/'.join(parts))


def rclone_env(endpoint=None, region=None, access_key_id=None, secret_access_key=None, ca_bundle=None):
    """The environment that defines the rclone remote: the secret key only here, never on a command line.

    Without a key, ``env_auth``: the AWS SDK's chain (AWS_* environment, shared config, the EC2 instance role)."""
    if bool(access_key_id) != bool(secret_access_key):
        raise CopyError('give both alation_backup_copy_s3_access_key_id and alation_backup_copy_s3_secret_access_key, '
                        'or neither (then the host\'s own credentials: its AWS_* environment or EC2 instance role)')
    env = {ENV_PREFIX + 'TYPE': 's3', ENV_PREFIX + 'PROVIDER': 'Other' if endpoint else 'AWS',
           ENV_PREFIX + 'NO_CHECK_BUCKET': 'true',
           # rclone 1.60's AWS SDK cannot load AWS_CA_BUNDLE into rclone's transport (LoadCustomCABundleError):
           # the bundle goes to rclone's own --ca-cert instead (``global_flags``).
           'AWS_CA_BUNDLE': ''}
    if endpoint:
        env[ENV_PREFIX + 'ENDPOINT'] = endpoint
    if region:
        env[ENV_PREFIX + 'REGION'] = region
    if access_key_id:
        env.update({ENV_PREFIX + 'ENV_AUTH': 'false', ENV_PREFIX + 'ACCESS_KEY_ID': access_key_id,
                    ENV_PREFIX + 'SECRET_ACCESS_KEY': secret_access_key})
    else:
        env[ENV_PREFIX + 'ENV_AUTH'] = 'true'
    return env


def global_flags(ca_bundle=None, connect_timeout=30):
    """rclone's flags for every call: no config file, one try (the copy reports and the next run tries again)."""
    flags = ['--config', '/dev/null', '--retries', '1', '--low-level-retries', '3',
             '--contimeout', '%ds' % connect_timeout, '--timeout', '5m']
    if ca_bundle:
        flags += ['--ca-cert', ca_bundle]
    return flags


def parse_lsjson(text):
    """``{name: {size, mtime, md5} or None}`` from ``rclone lsjson --hash``: None for a dir."""
    files = {}
    try:
        entries = json.loads(text or '[]')
    except ValueError:
        raise CopyError('rclone lsjson printed no JSON listing: %s' % last_lines(text))
    for e in entries:
        name = e.get('Name') or ''
        if not name or '/' in name:
            continue
        if e.get('IsDir'):
            files[name] = None
            continue
        files[name] = dict(size=int(e.get('Size') or 0), md5=((e.get('Hashes') or {}).get('md5') or '').lower())
    return files


def parse_check(text):
    """(matching files, differences, hashes not checked) from ``rclone check``'s NOTICE lines."""
    def count(pattern):
        m = re.search(pattern, text or '')
        return int(m.group(1)) if m else 0
    return (count(r'(\d+) matching files?'), count(r'(\d+) differences? found'),
            count(r'(\d+) hashes could not be checked'))


def rclone_said(text):
    """rclone's own words: its last ERROR or Failed line, without the timestamp (else its last line)."""
    lines = [re.sub(r'^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ', '', line.strip()) for line in (text or '').splitlines()
             if line.strip()]
    found = [line for line in lines if line.startswith(('ERROR', 'Failed', 'CRITICAL', 'NOTICE: Failed'))]
    return (found or lines or ['no message'])[-1]


def explain(stderr):
    """What rclone's message means and what to do, or ''."""
    for pattern, hint in HINTS:
        if pattern.search(stderr or ''):
            return hint
    return ''


class ObjCopier(object):
    """One archive to one object-store prefix, through rclone; the interface of ``_offsite.Copier`` for
    ``_offsite.run_copy``."""

    method = 'rclone'
    lease_check = None

    def __init__(self, runner, target, host_dir, endpoint=None, region=None, access_key_id=None,
                 secret_access_key=None, connect_timeout=30, rclone=None, ca_bundle=None):
        self.runner = runner
        self.target = target
        host = host_dir_name(host_dir)
        self.key = posixpath.join(target.prefix, host) if target.prefix else host
        self.where = '%s://%s/%s' % (target.scheme, target.bucket, self.key)
        self.env = rclone_env(endpoint, region, access_key_id, secret_access_key)
        if rclone is None:
            rclone = find_program(None, 'rclone')[0]
            if not rclone:
                raise CopyError(not_found(None, 'rclone', find_program(None, 'rclone')[1],
                                          'The copy to %s needs rclone on this host: install it (Debian and Ubuntu: '
                                          'apt install rclone; RHEL: rclone from EPEL).' % self.where))
        ca_bundle = os.environ.get('AWS_CA_BUNDLE') if ca_bundle is None else ca_bundle
        self.rclone = [rclone] + global_flags(ca_bundle, connect_timeout)
        self.removed_tmp = []
        self.room = dict(removed=[], refused='', free_bytes=None, needed_bytes=0)

    def check_lease(self):
        if self.lease_check is not None:
            self.lease_check()

    def remote(self, name=''):
        """rclone's path of ``name`` in the per-host prefix (the prefix itself for '')."""
        return '%s:%s/%s' % (REMOTE, self.target.bucket, posixpath.join(self.key, name) if name else self.key)

    def run(self, args, step, data=None, ok=(0,)):
        """Run rclone ``args``; its result, or CopyError naming the step, the target, what rclone said and what to
        do."""
        result = self.runner.run(self.rclone + args, env=self.env, data=data)
        if result['rc'] not in ok:
            said = rclone_said(result['stderr'] or result['stdout'])
            hint = explain(result['stderr'])
            raise CopyError('%s on %s failed (rclone exit %d)%s. rclone said: %s'
                            % (step, self.where, result['rc'], ': ' + hint if hint else '', said))
        return result

    # -- the far side ------------------------------------------------------------------

    def listing(self):
        result = self.run(['lsjson', '--hash', '--hash-type', 'md5', '--', self.remote()], 'listing',
                          ok=(0, RCLONE_DIR_NOT_FOUND))
        return {} if result['rc'] == RCLONE_DIR_NOT_FOUND else parse_lsjson(result['stdout'])

    def cat(self, name, step):
        return self.run(['cat', '--', self.remote(name)], step)['stdout']

    def put_text(self, name, text, step):
        self.run(['rcat', '--', self.remote(name)], step, data=text.encode('utf-8'))

    def remove(self, names):
        for name in names:
            self.run(['deletefile', '--', self.remote(name)], 'removing %s' % name)

    def claim(self, files):
        """The owner marker: this machine's, or CopyError; written when there is none."""
        if OWNER_MARKER in files:
            check_owner(self.cat(OWNER_MARKER, 'reading the owner marker'), self.where)
        else:
            self.put_text(OWNER_MARKER, owner_text(), 'claiming the prefix (writing %s)' % OWNER_MARKER)

    # -- the copy ----------------------------------------------------------------------

    def verify(self, src, names):
        """CopyError unless ``names`` (beside ``src``) there have the local files' sizes and MD5s."""
        args = ['check', '--one-way']
        for name in names:
            args += ['--include', '/' + name]
        result = self.run(args + ['--', os.path.dirname(src), self.remote()], 'verifying the copy', ok=(0, 1))
        matching, differ, unchecked = parse_check(result['stderr'])
        if result['rc'] != 0 or differ or matching != len(names):
            raise CopyError('the copy on %s does not match this host\'s files (rclone check: %d matching, %d differing): '
                            'not kept. %s' % (self.where, matching, differ, last_lines(result['stderr'])))
        return 'size and md5' if not unchecked else 'size only (the store reported no MD5)'

    def copy(self, src, rules=None, suffix=DEFAULT_SUFFIX):
        """Copy ``src`` and its .sha256; returns {changed, method, dest, bytes, verified}. CopyError when it failed.

        ``rules`` (retention's) are not read here: a store has no room to make first; retention runs after."""
        del rules
        name, sidecar, dummy, actual = local_archive(src)
        names = [name, name + '.sha256']
        files = self.listing()
        self.claim(files)
        done = dict(changed=False, method='', dest='%s/%s' % (self.where, name), bytes=actual, verified='')
        if (files.get(name) or {}).get('size') == actual and files.get(name + '.sha256') is not None:
            try:
                done['verified'] = self.verify(src, names)
                return done
            except CopyError:
                pass
        self.room['needed_bytes'] = actual + os.path.getsize(sidecar)
        sent = []
        try:
            # The archive first, then its .sha256: an archive without one is never taken for a good one.
            for local, remote_name in ((src, name), (sidecar, name + '.sha256')):
                self.check_lease()
                sent.append(remote_name)
                self.run(['copyto', '--', local, self.remote(remote_name)], 'uploading %s' % remote_name)
            done['verified'] = self.verify(src, names)
        except Exception:
            # What this copy put there goes, each on its own (one that never arrived is not found).
            for remote_name in sent:
                try:
                    self.remove([remote_name])
                except CopyError:
                    pass
            raise
        done.update(changed=True, method=self.method)
        return done

    # -- retention on the far side --------------------------------------------------------

    def verify_remote(self, path, files, trusted=()):
        """None when the archive ``path`` there is vouched for by its .sha256 there, else why not."""
        name = posixpath.basename(path)
        if name in trusted:
            return None
        try:
            text = self.cat(name + '.sha256', 'reading %s.sha256' % name)
        except CopyError as e:
            return str(e)
        digest, size = sidecar_fields(text, name)
        if digest is None:
            return 'its .sha256 there has no sha256sum line for it'
        listed = (files.get(name) or {}).get('size')
        if size is not None and listed != size:
            return 'it has %s bytes there, its .sha256 records %d' % (listed, size)
        return None

    def plan_retention(self, rules, suffix=DEFAULT_SUFFIX, trusted=(), now=None, make_room_for=0):
        files = self.listing()
        return plan_listing(self.where, files, rules, suffix, make_room_for, now,
                            lambda path: self.verify_remote(path, files, trusted), protect=trusted)

    def apply_retention(self, planned):
        """Remove what plan_retention chose, each archive before its .sha256; the entries removed."""
        removed = []
        for entry in planned['remove'] + planned['orphans']:
            self.check_lease()
            self.remove([posixpath.basename(entry['path'])])
            removed.append(entry)
        return removed

    def preview(self, src):
        """What a copy would run (check mode): nothing is."""
        return [join_argv(self.rclone + ['lsjson', '--hash', '--', self.remote()]) + NOT_RUN,
                'check that %s/%s names this machine (claim the prefix when it has none)%s'
                % (self.where, OWNER_MARKER, NOT_RUN),
                join_argv(self.rclone + ['copyto', '--', src, self.remote(os.path.basename(src))]) + NOT_RUN,
                'upload its .sha256, verify both there (rclone check: size and md5), then retention there%s' % NOT_RUN]

    def check_target(self, check_mode=False):
        """state=check: the store takes a small object in the per-host prefix (written and removed) with these
        credentials. {result: ok or skipped, dest, method}; CopyError saying what failed."""
        found = dict(result='ok', dest=self.where, method=self.method)
        probe = tmp_name('alation-backup-probe')
        if check_mode:
            self.runner.executed_commands.append(join_argv(self.rclone + ['rcat', '--', self.remote(probe)]) + NOT_RUN)
            found['result'] = 'skipped'
            return found
        self.put_text(probe, 'probe %d\n' % int(time.time()), 'writing a probe object')
        self.remove([probe])
        return found
