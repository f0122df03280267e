"""The load the web process is measured under (bench/load/run.py starts it): data owners filing
requests on the portal, legal users reading the API (the list, one request's detail) and
downloading a certificate. The fixture file (LOAD_FIXTURE) names the legal token, the seeded
request ids and the certified request."""

import itertools
import json
import os
import random
import uuid

from locust import HttpUser, constant, task

FIXTURE = json.loads(open(os.environ["LOAD_FIXTURE"]).read())
NUMBERS = itertools.count()
RUN = uuid.uuid4().hex[:8]  # e-mail addresses unique across runs on one database


class DataOwner(HttpUser):
    """Files requests on the portal, one after another (the CSRF cookie fetched once)."""

    weight = 3
    wait_time = constant(0)

    def on_start(self):
        self.client.get("/", name="portal: form")
        self.token = self.client.cookies["csrftoken"]

    @task
    def file_a_request(self):
        number = next(NUMBERS)
        form = {"csrfmiddlewaretoken": self.token, "full_name": f"Load Person {number}",
                "email": f"load-{RUN}-{number}@mail.example", "description": "everything about me",
                "jurisdiction": "gdpr", "confirm": "on"}
        with self.client.post("/", data=form, allow_redirects=False, name="portal: submit",
                              catch_response=True) as response:
            if response.status_code != 302:
                response.failure(f"answered {response.status_code}, not the redirect to the code page")


class LegalReviewer(HttpUser):
    """Reads the API as the legal team: the list, a request's detail, a certificate."""

    weight = 1
    wait_time = constant(0)

    def on_start(self):
        self.client.headers["Authorization"] = f"Token {FIXTURE['legal_token']}"

    @task(3)
    def list_requests(self):
        self.client.get("/api/v1/requests/", name="api: list")

    @task(3)
    def read_a_request(self):
        self.client.get(f"/api/v1/requests/{random.choice(FIXTURE['request_ids'])}/", name="api: detail")

    @task(1)
    def download_the_certificate(self):
        self.client.get(f"/api/v1/requests/{FIXTURE['certified_id']}/certificate/", name="api: certificate")
