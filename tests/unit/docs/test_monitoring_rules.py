# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The README's Prometheus rules load (promtool check rules) and fire on the metrics the role writes.

The series are what _metrics.render writes for a run, as node_exporter would
serve them (plus the instance and job labels a scrape adds); promtool test
rules evaluates the README's own rule file on them. promtool comes with
Debian's prometheus package (make units takes it out of the .deb); without it these tests
skip, saying so.
"""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from ansible_collections.alation.backup.plugins.module_utils import _metrics

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
RULES_HEAD = '# /etc/prometheus/rules/alation-backup.yml\n'
INSTANCE = 'alation-1.example.com'
SAMPLE_RE = re.compile(r'^(?P<series>[a-z_]+(?:\{[^}]*\})?) (?P<value>\S+)$')

promtool = shutil.which('promtool')
needs_promtool = pytest.mark.skipif(promtool is None, reason='promtool is not on PATH: make promtool takes it out of Debian\'s prometheus package')


def rules_text():
    """The rule file as the README prints it (the yaml block that starts with its path)."""
    with open(os.path.join(ROOT, 'README.md')) as f:
        readme = f.read()
    start = readme.index('```yaml\n' + RULES_HEAD) + len('```yaml\n')
    return readme[start:readme.index('```', start)]


def series(text):
    """The samples of a metrics text as [(promtool series, value)], labelled as a scrape of INSTANCE would."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        m = SAMPLE_RE.match(line)
        assert m, line
        name, dummy, labels = m.group('series').partition('{')
        labels = ('instance="%s",job="node"' % INSTANCE) + (',' + labels.rstrip('}') if labels else '')
        out.append(('%s{%s}' % (name, labels), float(m.group('value'))))
    return out


def run_promtool(tmp_path, metrics_text, minutes, alerts):
    """promtool test rules: the README's rules over ``metrics_text`` held ``minutes`` long, ``alerts`` expected.

    ``alerts``: [(eval_time, alertname, [labels of each firing alert beyond instance/job])].
    """
    rules = rules_text()
    (tmp_path / 'rules.yml').write_text(rules)
    # The summary as Prometheus expands it for the scraped host: the host's name must be in it.
    summaries = {rule['alert']: rule['annotations']['summary'].replace('{{ $labels.instance }}', INSTANCE)
                 for group in yaml.safe_load(rules)['groups'] for rule in group['rules']}
    cases = [dict(eval_time=at, alertname=name,
                  exp_alerts=[dict(exp_labels=dict(dict(alertname=name, instance=INSTANCE, job='node'), **extra),
                                   exp_annotations=dict(summary=summaries[name]))
                              for extra in firing])
             for at, name, firing in alerts]
    test = dict(rule_files=['rules.yml'], evaluation_interval='1m', tests=[dict(
        interval='1m',
        input_series=[dict(series=s, values='%rx%d' % (v, minutes)) for s, v in series(metrics_text)],
        alert_rule_test=cases)])
    (tmp_path / 'test.yml').write_text(yaml.safe_dump(test))
    done = subprocess.run([promtool, 'test', 'rules', 'test.yml'], cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, check=False)
    assert done.returncode == 0, done.stdout


@needs_promtool
def test_the_rule_file_loads(tmp_path):
    path = tmp_path / 'alation-backup.yml'
    path.write_text(rules_text())
    done = subprocess.run([promtool, 'check', 'rules', str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, check=False)
    assert done.returncode == 0, done.stdout
    assert 'SUCCESS: 6 rules found' in done.stdout


@needs_promtool
def test_a_failed_run_fires_failed_copy_failed_drill_failed_and_future_at_once(tmp_path):
    storage = tmp_path / 'backup'
    storage.mkdir()
    # An archive named in 2031 by a clock that ran ahead: never the newest, counted.
    (storage / '203101010101_5-17-0-116556_alation_backup.tar.gz').write_bytes(b'x')
    record = dict(result='failed', copy=dict(result='failed'), drill=dict(result='failed'))
    text = _metrics.render(record, storage_dir=str(storage), now=0, last_success=0)
    run_promtool(tmp_path, text, 120, [
        ('5m', 'AlationBackupFailed', [dict(result='failed')]),
        ('5m', 'AlationBackupCopyFailed', [dict(result='failed')]),
        ('5m', 'AlationBackupDrillFailed', [dict(result='failed')]),
        ('5m', 'AlationBackupNamedInTheFuture', [{}]),
        # No success recorded (0): stale only once time() passes 36 h, and for an hour.
        ('5m', 'AlationBackupStale', []),
    ])


@needs_promtool
def test_a_good_run_fires_nothing_until_36_hours_and_an_hour_have_passed(tmp_path):
    text = _metrics.render(dict(result='ok', copy=dict(result='ok')), now=0)
    run_promtool(tmp_path, text, 38 * 60, [
        ('1h', 'AlationBackupFailed', []),
        ('1h', 'AlationBackupCopyFailed', []),
        ('1h', 'AlationBackupDrillFailed', []),
        ('1h', 'AlationBackupNamedInTheFuture', []),
        ('36h30m', 'AlationBackupStale', []),  # past 36 h, not yet for an hour
        ('37h30m', 'AlationBackupStale', [{}]),
    ])


@needs_promtool
def test_a_good_drill_keeps_not_drilled_quiet_for_14_days(tmp_path):
    text = _metrics.render(dict(result='ok', drill=dict(result='ok')), now=0)
    run_promtool(tmp_path, text, 15 * 24 * 60, [
        ('13d', 'AlationBackupNotDrilled', []),
        ('14d1h', 'AlationBackupNotDrilled', [{}]),
    ])
