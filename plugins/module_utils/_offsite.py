# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The off-host copy: an archive and its .sha256 to a backup host over SSH, and retention there.

Into ``<path>/<host dir>/`` on the backup host, each file under a temporary
name (``_archive_names.tmp_name``: hidden, so retention there never takes it
for an archive), with rsync when both ends have it, else a plain stream
(``ssh host 'cat > tmp'``). Both temporary files must hash on the far side
(``sha256sum`` over ssh) to what the local .sha256 records (the archive) and
to the local .sha256 itself, before they are renamed to their final names,
the archive first (as the archive module publishes them). A failure removes
the temporary files it made and leaves the local archive as it was.

The host key is checked (``StrictHostKeyChecking=yes``) against the
known_hosts file given, or ssh's own; the key is a file given by path, or the
SSH agent at ``SSH_AUTH_SOCK``, which goes in the environment. No secret is
ever on a command line. Retention on the far side takes the same decision as
on this host (``_retention.plan_listing``) over a listing taken over ssh; the
newest archive there must hash to its .sha256 before anything older goes.

Standard library only; needs ssh here, and a POSIX shell, sha256sum, mv and
rm on the backup host.
"""

import collections
import os
import posixpath
import re
import shlex
import subprocess
import time

from ansible_collections.alation.backup.plugins.module_utils._archive_names import (
    DEFAULT_SUFFIX, SHA256_LINE_RE, SIZE_LINE_RE, read_sidecar, sha256_of, tmp_name)
from ansible_collections.alation.backup.plugins.module_utils._host import HostError
from ansible_collections.alation.backup.plugins.module_utils._retention import plan_listing
from ansible_collections.alation.backup.plugins.module_utils._runner import (
    C_LOCALE, NOT_RUN, find_program, join_argv, not_found)

METHODS = ('auto', 'rsync', 'stream')
# ssh's own exit code when it, not the remote command, failed (refused host key, no route, bad key).
SSH_FAILED = 255
HOST_RE = re.compile(r'^[A-Za-z0-9_.:%-]+$')
USER_RE = re.compile(r'^[A-Za-z0-9_.][A-Za-z0-9_.-]*\$?$')
HOST_DIR_RE = re.compile(r'^[A-Za-z0-9_.-]+$')
# A far side's file names worth listing: ours never have other characters (nor a newline to forge a line with).
LIST_SCRIPT = ('for f in *; do case $f in *[!A-Za-z0-9._-]*) continue;; esac; '
               'if [ -f "$f" ] && [ ! -h "$f" ]; then printf "F %s %s\\n" "$(wc -c < "$f")" "$f"; '
               'elif [ -e "$f" ] || [ -h "$f" ]; then printf "O 0 %s\\n" "$f"; fi; done')

Target = collections.namedtuple('Target', 'user host port path')


class CopyError(HostError):
    """The copy failed; the message says at which step, with what, and what to check."""


def parse_target(value, default_port=22):
    """A Target from ``[user@]host:/path``, ``ssh://[user@]host[:port]/path`` or a dict {host, port, user, path}."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(('host', 'port', 'user', 'path')))
        if unknown:
            raise CopyError('copy_to has unknown keys %s: it takes host, port, user and path' % ', '.join(unknown))
        user, host, port, path = value.get('user'), value.get('host'), value.get('port'), value.get('path')
    else:
        text = str(value or '').strip()
        port = None
        m = re.match(r'^ssh://(?:(?P<user>[^@/]+)@)?(?P<host>\[[^\]]+\]|[^:/]+)(?::(?P<port>\d+))?(?P<path>/.*)$', text)
        if not m:
            m = re.match(r'^(?:(?P<user>[^@/:]+)@)?(?P<host>\[[^\]]+\]|[^:/@\[]+):(?P<path>/.*)$', text)
        if not m:
            raise CopyError('copy_to %r: give [user@]host:/path (such as backup@backuphost:/srv/alation-backups), '
                            'ssh://[user@]host[:port]/path, or a dict with host, port, user and path' % (value,))
        user, host, path = m.group('user'), m.group('host'), m.group('path')
        port = m.groupdict().get('port')
        host = host[1:-1] if host.startswith('[') else host
    host = str(host or '')
    if not HOST_RE.match(host) or host.startswith('-'):
        raise CopyError('copy_to host %r is not a host name or address' % (host,))
    user = str(user or '')
    if user and not USER_RE.match(user):
        raise CopyError('copy_to user %r is not a user name' % (user,))
    try:
        port = int(port or default_port)
    except (TypeError, ValueError):
        port = 0
    if not 0 < port < 65536:
        raise CopyError('copy_to port %r must be a number from 1 to 65535' % (value.get('port') if isinstance(value, dict) else port,))
    path = str(path or '')
    if not path.startswith('/') or '\n' in path or '\0' in path:
        raise CopyError('copy_to path %r must be an absolute path on the backup host' % (path,))
    return Target(user, host, port, posixpath.normpath(path))


def host_dir_name(value):
    """The per-host dir's name (the inventory name): one safe path component."""
    text = str(value or '')
    if not HOST_DIR_RE.match(text) or text in ('.', '..'):
        raise CopyError('host_dir %r must be one name of letters, digits, ".", "_" and "-" (the inventory name)'
                        % (value,))
    return text


def _config_value(path):
    # ssh -o takes a config line: a path with blanks must be quoted, and a quote cannot be.
    if '"' in path or '\n' in path:
        raise CopyError('%r: ssh cannot be given a path with a double quote or a newline' % (path,))
    return '"%s"' % path if re.search(r'\s', path) else path


def ssh_options(ssh, target, identity_file=None, known_hosts=None, connect_timeout=30):
    """ssh's argv up to the host: batch mode, the host key checked, the key file by path only."""
    argv = [ssh, '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes']
    if known_hosts:
        argv += ['-o', 'UserKnownHostsFile=%s' % _config_value(known_hosts), '-o', 'GlobalKnownHostsFile=/dev/null']
    if identity_file:
        argv += ['-i', identity_file, '-o', 'IdentitiesOnly=yes']
    argv += ['-o', 'ConnectTimeout=%d' % connect_timeout, '-o', 'ServerAliveInterval=15',
             '-o', 'ServerAliveCountMax=4', '-p', str(target.port)]
    if target.user:
        argv += ['-l', target.user]
    return argv


def sidecar_fields(text, name):
    """(hex digest or None, size or None) that a .sha256's text records for archive ``name``."""
    digest = size = None
    for line in text.splitlines():
        m = SHA256_LINE_RE.match(line.strip())
        if m and posixpath.basename(m.group('name')) == name:
            digest = m.group('hex').lower()
        m = SIZE_LINE_RE.match(line.strip())
        if m:
            size = int(m.group('size'))
    return digest, size


def parse_listing(text):
    """``{name: {size} or None}`` from LIST_SCRIPT's output."""
    files = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if len(parts) == 3 and parts[0] in ('F', 'O') and parts[1].isdigit():
            files[parts[2]] = dict(size=int(parts[1])) if parts[0] == 'F' else None
    return files


def parse_sha256sum(text):
    """``{name: hex}`` from sha256sum's output."""
    found = {}
    for line in text.splitlines():
        m = SHA256_LINE_RE.match(line)
        if m:
            found[m.group('name')] = m.group('hex').lower()
    return found


def _last_lines(text, n=3):
    lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
    return ' '.join(lines[-n:]) or 'no message'


def send_file(runner, argv, path, env):
    """Run ``argv`` with ``path`` on its stdin (the plain stream): run_command cannot stream a file."""
    cmd = join_argv(argv) + ' < ' + shlex.quote(path)
    runner.executed_commands.append(cmd)
    environ = dict(os.environ)
    environ.pop('LANGUAGE', None)
    environ.update(C_LOCALE)
    environ.update(env)
    with open(path, 'rb') as f:
        proc = subprocess.Popen(argv, stdin=f, stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True,
                                env=environ)
        out, err = proc.communicate()
    return dict(cmd=cmd, rc=proc.returncode, stdout=out.decode('utf-8', 'replace'),
                stderr=err.decode('utf-8', 'replace'))


class Copier(object):
    """One archive to one backup host; ``runner`` runs ssh and rsync, ``send`` streams a file into ssh."""

    def __init__(self, runner, target, host_dir, identity_file=None, known_hosts=None, ssh_auth_sock=None,
                 method='auto', connect_timeout=30, ssh=None, rsync=None, send=None):
        if method not in METHODS:
            raise CopyError('method %r must be one of %s' % (method, ', '.join(METHODS)))
        for what, path in (('identity_file', identity_file), ('known_hosts', known_hosts)):
            if path and not os.path.isfile(path):
                raise CopyError('%s %s is not a file on this host' % (what, path))
        self.runner = runner
        self.target = target
        self.dir = posixpath.join(target.path, host_dir_name(host_dir))
        self.method = method
        if ssh is None:
            ssh = find_program(None, 'ssh')[0]
            if not ssh:
                raise CopyError(not_found(None, 'ssh', find_program(None, 'ssh')[1],
                                          'Install the OpenSSH client (Debian openssh-client, RHEL openssh-clients).'))
        if rsync is None and method != 'stream':
            rsync = find_program(None, 'rsync')[0]
        self.rsync = rsync or None
        self.ssh = ssh_options(ssh, target, identity_file, known_hosts, connect_timeout)
        self.env = {'SSH_AUTH_SOCK': ssh_auth_sock} if ssh_auth_sock else {}
        self.send = send or send_file
        self.where = '%s%s:%s' % (target.user + '@' if target.user else '',
                                  '[%s]' % target.host if ':' in target.host else target.host, self.dir)

    # -- the far side ----------------------------------------------------------------

    # The run's lease check (Heartbeat.check), set by the module: called before each far-side rename or removal.
    lease_check = None

    def check_lease(self):
        if self.lease_check is not None:
            self.lease_check()

    def remote_argv(self, script):
        return self.ssh + ['--', self.target.host, script]

    def remote(self, script, step):
        """Run ``script`` (a POSIX shell line, every value quoted) on the backup host; CopyError saying why not."""
        result = self.runner.run(self.remote_argv(script), env=self.env)
        if result['rc'] == SSH_FAILED:
            raise CopyError('%s: ssh to %s port %d failed: %s. Check that alation_backup_copy_known_hosts has the '
                            "backup host's key (StrictHostKeyChecking is on) and that the key or agent is let in."
                            % (step, self.target.host, self.target.port, _last_lines(result['stderr'])))
        if result['rc'] != 0:
            raise CopyError('%s on %s failed (exit %d): %s' % (step, self.where, result['rc'],
                                                               _last_lines(result['stderr'] or result['stdout'])))
        return result['stdout']

    def in_dir(self, script):
        return 'cd -- %s && %s' % (shlex.quote(self.dir), script)

    def probe(self):
        """Make the per-host dir; (rsync there?, its listing)."""
        out = self.remote('umask 077 && mkdir -p -- %s && cd -- %s && '
                          '{ if command -v rsync >/dev/null 2>&1; then echo "R yes"; else echo "R no"; fi; } && %s'
                          % (shlex.quote(self.dir), shlex.quote(self.dir), LIST_SCRIPT),
                          'making %s' % self.dir)
        return 'R yes' in out.splitlines(), parse_listing(out)

    def listing(self):
        return parse_listing(self.remote(self.in_dir(LIST_SCRIPT), 'listing %s' % self.dir))

    def hashes(self, names, step):
        return parse_sha256sum(self.remote(self.in_dir('sha256sum -- %s' % join_argv(names)), step))

    def remove(self, names):
        if names:
            self.remote(self.in_dir('rm -f -- %s' % join_argv(names)), 'removing %s from %s' % (', '.join(names), self.dir))

    # -- the copy ----------------------------------------------------------------------

    def choose_method(self, remote_rsync):
        if self.method == 'stream':
            return 'stream'
        if self.rsync and remote_rsync:
            return 'rsync'
        if self.method == 'rsync':
            raise CopyError('method rsync: rsync is missing %s. Install it there, or use method auto or stream.'
                            % ('on this host' if not self.rsync else 'on the backup host %s' % self.target.host))
        return 'stream'

    def transfer(self, method, local, remote_name):
        dest = posixpath.join(self.dir, remote_name)
        if method == 'rsync':
            host = '[%s]' % self.target.host if ':' in self.target.host else self.target.host
            argv = [self.rsync, '--protect-args', '--times', '--chmod=F600', '-e', join_argv(self.ssh), '--',
                    local, '%s:%s' % (host, dest)]
            result = self.runner.run(argv, env=self.env)
        else:
            result = self.send(self.runner, self.remote_argv('umask 077 && cat > %s' % shlex.quote(dest)), local,
                               self.env)
        if result['rc'] != 0:
            raise CopyError('sending %s to %s:%s with %s failed (exit %d): %s'
                            % (local, self.target.host, dest, method, result['rc'], _last_lines(result['stderr'])))

    def copy(self, src):
        """Copy ``src`` and its .sha256; returns {changed, method, dest, bytes}. CopyError when it failed."""
        name = os.path.basename(src)
        sidecar = src + '.sha256'
        if not os.path.isfile(src):
            raise CopyError('the archive %s is not a file on this host' % src)
        try:
            digest, size = read_sidecar(sidecar, name)
        except ValueError as e:
            raise CopyError('the archive %s cannot be copied without its .sha256: %s' % (src, e))
        actual = os.path.getsize(src)
        if size is not None and size != actual:
            raise CopyError('the archive %s has %d bytes, its .sha256 recorded %d: not copied' % (src, actual, size))
        sidecar_digest = sha256_of(sidecar)
        final = {name: digest, name + '.sha256': sidecar_digest}
        remote_rsync, files = self.probe()
        done = dict(changed=False, method='', dest=posixpath.join(self.dir, name), bytes=actual)
        if (files.get(name) or {}).get('size') == actual and files.get(name + '.sha256') is not None:
            if self.hashes(sorted(final), 'checking the copy already on %s' % self.where) == final:
                return done
        method = self.choose_method(remote_rsync)
        tmps = [tmp_name(name), tmp_name(name + '.sha256')]
        sent = []
        try:
            for local, remote_name in ((src, tmps[0]), (sidecar, tmps[1])):
                sent.append(remote_name)
                self.transfer(method, local, remote_name)
            got = self.hashes(tmps, 'verifying the copy on %s' % self.where)
            for tmp, (final_name, want) in zip(tmps, ((name, digest), (name + '.sha256', sidecar_digest))):
                if got.get(tmp) != want:
                    raise CopyError('the copy of %s on %s hashes to %s, not %s as here: not kept'
                                    % (final_name, self.where, got.get(tmp) or 'nothing', want))
            # The archive first, then its .sha256: an archive without one is never taken for a good one.
            self.check_lease()
            self.remote(self.in_dir('mv -f -- %s %s && mv -f -- %s %s' % (
                shlex.quote(tmps[0]), shlex.quote(name), shlex.quote(tmps[1]), shlex.quote(name + '.sha256'))),
                'renaming the copy into place on %s' % self.where)
        except Exception:
            if sent:
                try:
                    self.remove(sent)
                except CopyError:
                    pass
            raise
        done.update(changed=True, method=method)
        return done

    # -- retention on the far side --------------------------------------------------------

    def verify_remote(self, path, trusted=()):
        """None when the far side's archive ``path`` hashes to what its .sha256 there records, else why not."""
        name = posixpath.basename(path)
        if name in trusted:
            return None
        try:
            out = self.remote(self.in_dir('sha256sum -- %s && echo "== sidecar" && head -c 65536 -- %s' % (
                shlex.quote(name), shlex.quote(name + '.sha256'))), 'verifying %s' % path)
        except CopyError as e:
            return str(e)
        hashed, dummy, text = out.partition('== sidecar\n')
        digest, dummy = sidecar_fields(text, name)
        if digest is None:
            return 'its .sha256 there has no sha256sum line for it'
        actual = parse_sha256sum(hashed).get(name)
        if actual != digest:
            return 'it hashes to %s there, its .sha256 records %s' % (actual, digest)
        return None

    def plan_retention(self, keep_count, keep_days=0, suffix=DEFAULT_SUFFIX, trusted=(), now=None):
        return plan_listing(self.dir, self.listing(), keep_count, keep_days, suffix, 0, now,
                            lambda path: self.verify_remote(path, trusted))

    def apply_retention(self, planned):
        """Remove what plan_retention chose (each archive before its .sha256, in one rm); the entries removed."""
        entries = planned['remove'] + planned['orphans']
        if entries:
            self.check_lease()
        self.remove([posixpath.basename(e['path']) for e in entries])
        return entries

    def preview(self, src):
        """What a copy would run (check mode): nothing is."""
        return [join_argv(self.remote_argv('mkdir -p -- %s' % shlex.quote(self.dir))) + NOT_RUN,
                'copy %s and its .sha256 to %s under temporary names, verify them there, rename%s'
                % (src, self.where, NOT_RUN)]


def run_copy(copier, src, keep_count=0, keep_days=0, suffix=DEFAULT_SUFFIX, check_mode=False, clock=time.time):
    """The whole step: the copy, then retention on the far side. Never raises for a copy that failed: the
    record says so. Returns (changed, record, warnings)."""
    started = clock()
    record = dict(result='ok', dest='%s/%s' % (copier.where, os.path.basename(src)), bytes=0, duration_s=0.0,
                  error='', method='', retention=dict(removed=[], freed_bytes=0, refused=''))
    warnings = []
    if check_mode:
        copier.runner.executed_commands.extend(copier.preview(src))
        record.update(result='skipped', error='check mode: nothing copied')
        return True, record, warnings
    changed = False
    try:
        done = copier.copy(src)
        changed = done['changed']
        record.update(bytes=done['bytes'], method=done['method'])
    except (HostError, OSError) as e:
        record.update(result='failed', error=str(e), duration_s=round(clock() - started, 2))
        return False, record, warnings
    if keep_count and keep_count > 0:
        try:
            planned = copier.plan_retention(keep_count, keep_days, suffix, trusted=(os.path.basename(src),))
            removed = copier.apply_retention(planned)
        except (HostError, OSError) as e:
            record['retention']['refused'] = 'retention on %s failed: %s' % (copier.where, e)
            warnings.append(record['retention']['refused'])
        else:
            record['retention'].update(removed=[e['path'] for e in removed],
                                       freed_bytes=sum(e['bytes'] for e in removed),
                                       refused=planned['refused'] or '')
            changed = changed or bool(removed)
            if planned['refused']:
                warnings.append('retention on %s: %s' % (copier.where, planned['refused']))
    record['duration_s'] = round(clock() - started, 2)
    return changed, record, warnings
