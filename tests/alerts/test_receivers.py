"""The receivers file: secrets by environment reference, routing by labels, and mistakes that
name file, receiver and field."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from alerts.delivery.notifiers.alertmanager import AlertmanagerConfig
from alerts.delivery.notifiers.pagerduty import PagerDutyConfig
from alerts.delivery.notifiers.slack import SlackConfig
from alerts.delivery.receivers import load_receivers
from alerts.errors import ReceiverFileError
from alerts.settings import AlertSettings

GOOD = """\
receivers:
  - name: oncall-slack
    type: slack
    url_env: SLACK_WEBHOOK_URL
  - name: pager
    type: pagerduty
    routing_key_env: PAGERDUTY_ROUTING_KEY
  - name: am
    type: alertmanager
    url: http://127.0.0.1:9093
route:
  receivers: [oncall-slack]
  routes:
    - match: {severity: page}
      receivers: [pager, oncall-slack]
    - match_re: {route: "/admin.*"}
      receivers: [am]
      continue: true
    - match: {team: db}
      receivers: [am]
"""
SECRETS = {
    "SLACK_WEBHOOK_URL": "https://hooks.slack.example/services/T0/B0/s3cr3t",
    "PAGERDUTY_ROUTING_KEY": "pd-s3cr3t",
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "receivers.yml"
    path.write_text(text)
    return path


def test_secrets_come_from_the_environment_and_stay_secret(tmp_path: Path) -> None:
    receivers = load_receivers(write(tmp_path, GOOD), environ=SECRETS)
    slack = receivers.configs["oncall-slack"]
    pager = receivers.configs["pager"]
    assert isinstance(slack, SlackConfig) and isinstance(pager, PagerDutyConfig)
    assert slack.url.get_secret_value() == SECRETS["SLACK_WEBHOOK_URL"]
    assert pager.routing_key.get_secret_value() == "pd-s3cr3t"
    assert "s3cr3t" not in repr(receivers) and "s3cr3t" not in str(slack)
    assert isinstance(receivers.configs["am"], AlertmanagerConfig)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"severity": "page"}, ("console", "pager", "oncall-slack")),
        ({"severity": "warning"}, ("console", "oncall-slack")),
        ({"route": "/admin/users"}, ("console", "am")),  # continue: the team route is tried
        ({"route": "/admin/users", "team": "db"}, ("console", "am")),
        (
            {"route": "/admin/users", "severity": "page"},  # the first match decides
            ("console", "pager", "oncall-slack"),
        ),
        ({"route": "/properties/admin"}, ("console", "oncall-slack")),  # regex matches in full
    ],
)
def test_routing_by_labels_with_a_default(
    tmp_path: Path, labels: dict[str, str], expected: tuple[str, ...]
) -> None:
    router = load_receivers(write(tmp_path, GOOD), environ=SECRETS).router
    assert router.receivers_for(labels) == expected


def test_alert_webhook_url_is_a_shorthand_for_a_default_webhook(tmp_path: Path) -> None:
    settings = AlertSettings.from_env({"ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook"})
    receivers = settings.receivers()
    assert set(receivers.configs) == {"webhook"}
    assert receivers.router.receivers_for({}) == ("console", "webhook")
    environ = {**SECRETS, "ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook",
               "ALERT_RECEIVERS_PATH": str(write(tmp_path, GOOD))}  # fmt: skip
    both = AlertSettings.from_env(environ).receivers()
    assert both.router.receivers_for({}) == ("console", "oncall-slack", "webhook")


AM = "type: alertmanager"
MISTAKES = [
    (
        GOOD,
        {"SLACK_WEBHOOK_URL": "https://x"},
        "receiver pager: field routing_key_env: "
        "environment variable 'PAGERDUTY_ROUTING_KEY' is not set",
    ),
    ("receivers: [{name: s, type: slack}]", {}, "receiver s: field url: Field required"),
    ("receivers: [{name: s, type: sms, url: x}]", {}, "receiver s: field type:"),
    (f"receivers: [{{name: a, {AM}, url: 'ftp://x'}}]", {}, "receiver a: field url:"),
    (
        f"receivers: [{{name: a, {AM}, url: 'http://x', colour: red}}]",
        {},
        "receiver a: field colour: Extra inputs are not permitted",
    ),
    ("receivers: [{type: slack}]", {}, "field name: receiver #1 needs a name"),
    (
        f"receivers: [{{name: a, {AM}, url: 'http://x'}}, {{name: a, {AM}, url: 'http://y'}}]",
        {},
        "receiver a: field name: defined twice",
    ),
    ("route: {receivers: [nobody]}", {}, "receiver nobody: field route: no such receiver"),
    (
        "route: {routes: [{match_re: {route: '('}, receivers: [console]}]}",
        {},
        "field route.routes.0.match_re.route: bad regular expression",
    ),
    (
        "route: {routes: [{matchers: [x], receivers: [console]}]}",
        {},
        "field route.routes.0.matchers",
    ),
    ("receivers: {a: 1}", {}, "field receivers: must be a list"),
    (": : :", {}, "not valid YAML"),
]


@pytest.mark.parametrize(("text", "environ", "message"), MISTAKES)
def test_mistakes_name_file_receiver_and_field(
    tmp_path: Path, text: str, environ: dict[str, str], message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ReceiverFileError) as caught:
        load_receivers(path, environ=environ)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_a_secret_never_appears_in_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = "receivers: [{name: p, type: pagerduty, routing_key_env: KEY, url: 42}]"
    with caplog.at_level(logging.DEBUG), pytest.raises(ReceiverFileError) as caught:
        load_receivers(write(tmp_path, text), environ={"KEY": "pd-s3cr3t"})
    assert "s3cr3t" not in str(caught.value) and "s3cr3t" not in caplog.text


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReceiverFileError, match=r"receivers\.yml: cannot read"):
        load_receivers(tmp_path / "receivers.yml", environ={})
