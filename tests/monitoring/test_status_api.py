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
