# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The chroot option of the modules that work in the Alation shell (shell_argument_spec() in module_utils/_runner.py).
    DOCUMENTATION = r'''
options:
  chroot:
    description:
      - The Alation shell's root, as a host path (usually C(/opt/alation/alation)), a chroot with its own system and accounts.
      - Programs the module runs run inside it, and the paths they are given are paths as seen inside it.
      - User and group names the module takes (C(owner), C(group), C(run_as)) are the shell's accounts, looked up in its own
        C(etc/passwd) and C(etc/group), never on the host, where the same names may be missing or have other ids.
      - Omit, or set V('') or C(/), on a plain host (what C(module_defaults) on the C(group/alation.backup.shell) action
        group may give). Programs then run, and names are looked up, on the host.
    type: path
'''
