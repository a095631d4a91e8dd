# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run the collection's playbooks for real against a fake Alation host on localhost."""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
COLLECTIONS = os.path.join(REPO, '.build', 'collections')
# The fake Alation host, reached over a local connection. It is not called
# localhost, so the summary play (on the controller, localhost) still runs
# when the host failed.
HOST = 'alation-test-host'


def local_host(interpreter=None, **hostvars):
    """Inventory vars of a host reached over a local connection."""
    # Set, never discovered: discovery can pick a pyenv shim with no Python behind it.
    return dict({'ansible_connection': 'local', 'ansible_python_interpreter': interpreter or sys.executable},
                **hostvars)


def _inventory(workdir, interpreter=None, hosts=None):
    path = os.path.join(workdir, 'inventory.yml')
    with open(path, 'w') as f:
        json.dump({'alation': {'hosts': hosts or {HOST: local_host(interpreter)}}}, f)
    return path


def _argv_env(playbook, extra_vars, check=False, workdir=None, ansible_playbook=None, interpreter=None,
              hosts=None, env=None):
    workdir = workdir or tempfile.mkdtemp(prefix='alation-backup-play-')
    vars_file = os.path.join(workdir, 'vars.json')
    report = os.path.join(workdir, 'report.json')
    with open(vars_file, 'w') as f:
        # We are root on localhost already: no become (sudo may not be installed).
        json.dump(dict({'alation_backup_become': False, 'alation_backup_report_path': report,
                        'alation_restore_become': False, 'alation_restore_report_path': report}, **extra_vars), f)
    argv = [ansible_playbook or os.path.join(os.path.dirname(sys.executable), 'ansible-playbook'),
            '-i', _inventory(workdir, interpreter, hosts),
            playbook if os.path.isabs(playbook) else os.path.join(REPO, 'playbooks', playbook), '-e', '@' + vars_file]
    if check:
        argv.append('--check')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_NOCOLOR='1',
               ANSIBLE_STDOUT_CALLBACK='ansible.builtin.default', ANSIBLE_RETRY_FILES_ENABLED='0',
               ANSIBLE_LOCALHOST_WARNING='0', **(env or {}))
    return argv, env, report


class PlaybookRun:
    def __init__(self, proc, report):
        self.proc = proc
        self.report_path = report
        self.rc = None
        self.output = ''

    def wait(self, timeout=900):
        out, dummy = self.proc.communicate(timeout=timeout)
        self.rc = self.proc.returncode
        self.output = out
        return self

    @property
    def records(self):
        """The per-host records the summary play wrote (alation_backup_result of each host)."""
        with open(self.report_path) as f:
            return {r['host']: r for r in json.load(f)}


def start_playbook(playbook, extra_vars, check=False, workdir=None, ansible_playbook=None, interpreter=None,
                   hosts=None, env=None):
    """Start ``playbook``; ``ansible_playbook`` another ansible-core's, ``interpreter`` the host's Python.

    ``hosts`` (name: inventory vars) replaces the one local host; ``env`` adds to the environment.
    """
    argv, env, report = _argv_env(playbook, extra_vars, check, workdir, ansible_playbook, interpreter, hosts, env)
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return PlaybookRun(proc, report)


def run_playbook(playbook, extra_vars, check=False, workdir=None, timeout=900, ansible_playbook=None,
                 interpreter=None, hosts=None, env=None):
    return start_playbook(playbook, extra_vars, check, workdir, ansible_playbook, interpreter, hosts,
                          env).wait(timeout)
