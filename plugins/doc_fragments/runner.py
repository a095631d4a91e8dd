# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # Options of modules that run programs inside the Alation shell.
    DOCUMENTATION = r'''
options:
  chroot:
    description:
      - Run the external programs inside this chroot (the Alation shell, usually C(/opt/alation/alation)).
      - Omit, or set C(/), on a plain host.
      - Paths given to the program are paths as seen inside the chroot.
    type: path
  run_as:
    description:
      - OS user to run the external programs as (with C(runuser), or C(chroot --userspec) inside O(chroot)).
      - Omit to run as the user Ansible connects or becomes.
    type: str
'''
