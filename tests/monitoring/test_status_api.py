import pytest

pytestmark = pytest.mark.django_db


def test_status_has_the_original_shape(client_for):
    response = client_for("viewer").get("/api/status")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    assert set(body["status"]) == {
        "system_health",
        "active_alerts",
        "monitoring_targets",
        "alert_rules",
        "health_checks",
    }
    assert body["status"]["system_health"] == "healthy"


def test_status_without_key_is_401_in_the_envelope(client_for):
    response = client_for(None).get("/api/status")
    assert response.status_code == 401
    assert response.json()["success"] is False
    assert response.json()["error"]["code"] == "unauthorized"


@pytest.mark.parametrize(
    ("role", "status"), [(None, 401), ("norole", 403), ("viewer", 200), ("operator", 200), ("admin", 200)]
)
def test_status_for_each_role(client_for, role, status):
    response = client_for(role).get("/api/status")
    assert response.status_code == status
    assert response.json()["success"] is (status == 200)


def test_status_counts_and_health_follow_the_data(client_for):
    from alerts.choices import AlertState, Severity
    from alerts.models import Alert, AlertRule
    from monitoring.models import MonitoringTarget

    MonitoringTarget.objects.create(name="A", slug="a")
    MonitoringTarget.objects.create(name="B", slug="b", enabled=False)
    rule = AlertRule.objects.create(name="CPU", key="cpu", metric="cpu", comparison=">", threshold=80)
    Alert.objects.create(rule=rule, fingerprint="f", severity=Severity.CRITICAL, state=AlertState.ACTIVE)
    status = client_for("viewer").get("/api/status").json()["status"]
    assert status["monitoring_targets"] == 1
    assert status["alert_rules"] == 1
    assert status["active_alerts"] == 1
    assert status["system_health"] == "critical"
