# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The run_as option of modules that run programs as another OS user (runner_argument_spec() in module_utils/_runner.py,
    # with the chroot of alation.backup.shell).
    DOCUMENTATION = r'''
options:
  run_as:
    description:
      - OS user to run the external programs as (with C(runuser), or C(chroot --userspec) inside O(chroot)); with O(chroot),
        an account of the Alation shell.
      - Omit, or set V(''), to run as the user Ansible connects or becomes.
    type: str
'''
