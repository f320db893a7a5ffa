"""Secrets reach mlfleet's own processes, and nothing else prints them."""

from __future__ import annotations

from mlfleet.settings import Settings, get_settings


def test_trusted_json_carries_the_webhook_secret_that_model_dump_json_masks() -> None:
    settings = get_settings(alert_webhook_url="http://127.0.0.1:9/hook", alert_webhook_secret="s3")
    assert "s3" not in settings.model_dump_json() and "s3" not in repr(settings)
    again = Settings.model_validate_json(settings.trusted_json())
    assert again.alert_webhook_secret.get_secret_value() == "s3"
    assert again.alert_webhook_url == settings.alert_webhook_url and again.home == settings.home
