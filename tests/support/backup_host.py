# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A throwaway backup host on loopback: a real OpenSSH server for the off-host copy to copy to.

Needs root and the OpenSSH server (Debian package openssh-server). In DIR it
makes a host key, a key pair for a throwaway user (useradd, a random name
``abk<hex>``, home DIR/home, a password nobody can type) and a known_hosts
that names the server's key; then starts ``sshd -f DIR/sshd_config -D`` on a
free loopback port, letting only that user in, with that key. The user's
``alation-backups`` dir is the copy's destination (per-host dirs below it).
Used by tests/integration/test_offsite_copy.py and ``make demo-offsite``.

    python backup_host.py up DIR            # start it; print what the copy needs as JSON (also in DIR/state.json)
    python backup_host.py down DIR [--keep] # stop sshd, remove the user (--keep: keep its files, then root's)
"""

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid

SSHD = shutil.which('sshd') or '/usr/sbin/sshd'


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def keygen(path, comment='alation-backup-test'):
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', path], check=True)
    with open(path + '.pub') as f:
        return f.read().strip()


def fingerprint(pub_path):
    return subprocess.run(['ssh-keygen', '-l', '-f', pub_path], check=True, stdout=subprocess.PIPE,
                          universal_newlines=True).stdout.strip()


def _alive(pid, config):
    """Whether pid is still the sshd started with config (not a pid handed out again)."""
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return config.encode() in f.read()
    except OSError:
        return False


class BackupHost(object):
    """The server, its user and their keys under ``workdir``; started on construction."""

    def __init__(self, workdir, detach=False):
        self.dir = os.path.abspath(workdir)
        self.port = free_port()
        self.user = 'abk%s' % uuid.uuid4().hex[:8]
        self.home = os.path.join(self.dir, 'home')
        self.backups = os.path.join(self.home, 'alation-backups')
        self.host_key = os.path.join(self.dir, 'host_key')
        self.host_pub = keygen(self.host_key)
        self.user_key = os.path.join(self.dir, 'user_key')
        user_pub = keygen(self.user_key)
        # The host key of another server: a known_hosts that must be refused.
        other_pub = keygen(os.path.join(self.dir, 'other_host_key'))
        self.known_hosts = self._known_hosts('known_hosts', self.host_pub)
        self.wrong_known_hosts = self._known_hosts('wrong_known_hosts', other_pub)
        # A password nobody can type ('*', not locked '!', which sshd without PAM refuses).
        subprocess.run(['useradd', '--home-dir', self.home, '--create-home', '--shell', '/bin/sh', '-p', '*',
                        self.user], check=True)
        pw = pwd.getpwnam(self.user)
        self.uid = pw.pw_uid
        os.makedirs(self.backups)
        os.chown(self.backups, pw.pw_uid, pw.pw_gid)
        keys = os.path.join(self.dir, 'authorized_keys')
        os.makedirs(keys)
        with open(os.path.join(keys, self.user), 'w') as f:
            f.write(user_pub + '\n')
        os.chmod(self.dir, 0o755)
        self.config = os.path.join(self.dir, 'sshd_config')
        with open(self.config, 'w') as f:
            f.write('\n'.join([
                'Port %d' % self.port, 'ListenAddress 127.0.0.1',
                'HostKey %s' % self.host_key,
                'PidFile %s' % os.path.join(self.dir, 'sshd.pid'),
                'AuthorizedKeysFile %s/%%u' % keys,
                # The dir's parents (/tmp) may be world-writable: sshd's ownership checks would refuse them.
                'StrictModes no', 'UsePAM no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
                'PubkeyAuthentication yes', 'AllowUsers %s' % self.user, 'PermitRootLogin no',
                'LogLevel VERBOSE', '']))
        os.makedirs('/run/sshd', mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        self.log_path = os.path.join(self.dir, 'sshd.log')
        with open(self.log_path, 'w') as log:
            # Detached (the demo): its own session, so it outlives the process that started it.
            self.proc = subprocess.Popen([SSHD, '-f', self.config, '-D', '-e'], stdout=log, stderr=log,
                                         start_new_session=detach)
        self.pid = self.proc.pid
        self._save()
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(('127.0.0.1', self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise AssertionError('sshd did not start: %s' % self.sshd_log())
                time.sleep(0.1)

    def _known_hosts(self, name, pub):
        path = os.path.join(self.dir, name)
        with open(path, 'w') as f:
            f.write('[127.0.0.1]:%d %s\n' % (self.port, ' '.join(pub.split()[:2])))
        return path

    def _save(self):
        with open(os.path.join(self.dir, 'state.json'), 'w') as f:
            json.dump(self.state(), f, indent=2)

    def state(self):
        return dict(pid=self.pid, port=self.port, user=self.user, uid=self.uid, home=self.home,
                    backups=self.backups, config=self.config, log=self.log_path, user_key=self.user_key,
                    known_hosts=self.known_hosts, host_key_fingerprint=fingerprint(self.host_key + '.pub'),
                    dest=self.dest())

    def sshd_log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, keep_files=False):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        stop(self.dir, keep_files)

    def dest(self):
        return dict(host='127.0.0.1', port=self.port, user=self.user, path=self.backups)

    def host_dir(self, name):
        return os.path.join(self.backups, name)


def stop(workdir, keep_files=False):
    """Stop the sshd started in workdir and remove its user: with its home, or (keep_files) leaving the
    files there, handed to root. Nothing when it is down already."""
    path = os.path.join(os.path.abspath(workdir), 'state.json')
    if not os.path.exists(path):
        return
    with open(path) as f:
        state = json.load(f)
    pid = state['pid']
    if _alive(pid, state['config']):
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + 10
        while _alive(pid, state['config']) and time.time() < deadline:
            try:
                os.waitpid(pid, os.WNOHANG)  # reaps it when it is our child (the tests)
            except ChildProcessError:
                pass
            time.sleep(0.05)
        if _alive(pid, state['config']):
            os.kill(pid, signal.SIGKILL)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    # The user's processes are gone with sshd's sessions; then the user (and its home, unless kept).
    subprocess.run(['userdel'] + ([] if keep_files else ['--remove']) + [state['user']], check=False,
                   stderr=subprocess.DEVNULL)
    if keep_files and os.path.isdir(state['home']):
        subprocess.run(['chown', '-R', 'root:root', state['home']], check=False)
    os.rename(path, path + '.stopped')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest='cmd', required=True)
    u = sub.add_parser('up', help='start a backup host in DIR (made when missing); print its state as JSON')
    u.add_argument('dir')
    d = sub.add_parser('down', help='stop the backup host in DIR and remove its user')
    d.add_argument('dir')
    d.add_argument('--keep', action='store_true', help="keep the user's files (handed to root)")
    args = p.parse_args(argv)
    if args.cmd == 'up':
        os.makedirs(args.dir, exist_ok=True)
        json.dump(BackupHost(args.dir, detach=True).state(), sys.stdout, indent=2)
        print()
    else:
        stop(args.dir, args.keep)
    return 0


if __name__ == '__main__':
    sys.exit(main())
