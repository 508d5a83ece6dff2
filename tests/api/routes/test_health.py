"""Probes over HTTP."""

from tests.utils.app import RunningApp, assert_error


async def test_liveness_answers(app: RunningApp) -> None:
    response = await app.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_answers_while_the_database_does(app: RunningApp) -> None:
    response = await app.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readiness_is_503_while_draining_and_liveness_stays_200(
    app: RunningApp,
) -> None:
    app.services.health.start_draining()
    response = await app.client.get("/readyz")
    assert_error(response, 503, "draining")
    assert response.headers["retry-after"] == "1"
    assert (await app.client.get("/healthz")).status_code == 200
