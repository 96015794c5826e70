"""The alert rules shipped in deploy/prometheus, checked and unit-tested by promtool."""

from pathlib import Path

from tests.promtool import run_promtool

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def test_the_alert_rules_are_valid_prometheus_rules() -> None:
    checked = run_promtool("check", "rules", "alerts.yml", cwd=RULES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 7 rules found" in checked.stdout


def test_the_alert_rules_fire_when_their_unit_tests_expect() -> None:
    tested = run_promtool("test", "rules", "alerts_test.yml", cwd=RULES)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
