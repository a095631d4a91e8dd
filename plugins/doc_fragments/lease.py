# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The lease option of modules that work while a run holds the host lock (alation.backup.backup_lock).
    DOCUMENTATION = r'''
options:
  lease:
    description:
      - The host lock this run holds, as M(alation.backup.backup_lock) took it. While the module works it renews the lease
        (a heartbeat every min(30, stale_after/4) seconds), so a long step never lets another run take the host over.
      - Just before each destructive act (emptying a staging dir, deleting an archive or a backup, publishing an archive,
        renaming or removing on the backup host) the module checks, renewing it, that the lease is still this run's. Once it
        is another run's (it was taken over) or gone, the module stops there, changing nothing more, and fails saying so.
        Work without such an act (a database backup, a check) fails at its end instead.
      - Omit, or give C({}) or null, when no host lock is held (what C(module_defaults) on the C(group/alation.backup.leased)
        action group gives a task outside a run). O(lease.path) and O(lease.token) go together.
    type: dict
    suboptions:
      path:
        description: The lock file.
        type: path
      token:
        description: The token M(alation.backup.backup_lock) returned.
        type: str
'''
