# -*- coding: utf-8 -*-
# Copyright (c) alation.backup contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)


class ModuleDocFragment(object):
    # The options of a long step that runs in the background (async) and watches for its controller.
    DOCUMENTATION = r'''
options:
  controller_mark:
    description:
      - A host file that the controller's M(alation.backup.wait_progress) rewrites when each look at this step starts
        and when it ends (through M(alation.backup.step_progress); a look lasts a third of O(controller_timeout) at
        most). The module creates it when it starts and removes it when it ends.
      - When it has not changed for O(controller_timeout) seconds (an AWX cancel, a controller that died), the module stops
        its programs (the whole process tree), fails as a failed step does (removing its temporary files), releases
        the O(lease), and writes C(.alation_backup.cancelled.json) beside the lease, saying the controller stopped
        polling and when, which the next backup run's record and M(alation.backup.metrics) read. The next run then starts at once.
      - Omit to run on without a controller (a step run in the foreground needs none).
    type: path
  controller_timeout:
    description:
      - Seconds without a poll after which the step stops (see O(controller_mark)); 0 for never. Measured with a clock
        that does not jump.
    type: int
    default: 180
'''
