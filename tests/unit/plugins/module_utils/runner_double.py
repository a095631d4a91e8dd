# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A double for AnsibleModule.run_command, so that the real _runner.Runner drives the restore cores in unit tests.

Each program (by the base name of argv[0]) answers through a function of its
argv returning (rc, stdout, stderr); a program without one succeeds silently.
``real`` runs the command for real (tar, which every host has).
"""

import os
import subprocess

from ansible_collections.alation.backup.plugins.module_utils._runner import Runner


def real(argv):
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True, check=False)
    return proc.returncode, proc.stdout, proc.stderr


class ModuleDouble(object):
    def __init__(self, programs=None):
        self.programs = dict(programs or {})
        self.calls = []

    def run_command(self, argv, environ_update=None, data=None, binary_data=False):
        self.calls.append(list(argv))
        answer = self.programs.get(os.path.basename(argv[0]))
        return answer(argv) if answer else (0, '', '')


def runner(programs=None, chroot=None):
    """A real Runner whose commands are answered by ``programs``; ``runner.module.calls`` lists what ran."""
    return Runner(ModuleDouble(programs), chroot=chroot)


def program(path, name):
    """An executable file ``name`` in directory ``path`` for find_program to find (the double answers for it)."""
    os.makedirs(str(path), exist_ok=True)
    full = os.path.join(str(path), name)
    with open(full, 'w') as f:
        f.write('#!/bin/sh\nexit 99\n')
    os.chmod(full, 0o755)
    return full
