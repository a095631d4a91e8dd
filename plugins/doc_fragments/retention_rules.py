# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The retention rules beside keep_count and keep_days, alike wherever retention runs (the backup storage dir, the
    # space check, the backup host of the off-host copy): _retention.rules_argument_spec().
    DOCUMENTATION = r'''
options:
  keep_daily:
    description:
      - Also keep the newest archive of each of the last this many UTC days that have an archive. V(0) turns this rule off.
      - An archive stays when any rule keeps it (O(keep_count), O(keep_days), the tiers, a pin). Days, ISO weeks and
        months are UTC, by the time in the archive's name - the time every copy of it carries alike (a copy's mtime is
        when it was copied) and the one archives are sorted by; archives named in the future are left alone and take no
        day, week or month.
      - As restic, borg and Proxmox count them, only days that have an archive count, so a pause in the backups does not
        age every archive out at once.
    type: int
    default: 0
  keep_weekly:
    description: Also keep the newest archive of each of the last this many ISO weeks (UTC) that have an archive. V(0) off.
    type: int
    default: 0
  keep_monthly:
    description: Also keep the newest archive of each of the last this many months (UTC) that have an archive. V(0) off.
    type: int
    default: 0
  keep_pinned:
    description:
      - Names of archives (or paths; their last part counts) that are never removed. An archive with a file
        C(<archive>.keep) beside it is pinned too.
      - Pinned archives are not counted toward O(keep_count). A name that is not an archive's is refused.
    type: list
    elements: str
    default: []
'''
