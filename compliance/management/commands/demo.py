"""The end-to-end demo: a data owner files a request on the portal, confirms the e-mailed code, a
legal user approves it on the API, the pipeline runs, and the signed certificate is checked.

It drives the product through its real front doors (the portal's forms and the REST API, via
Django's test clients) rather than calling services directly.
"""

import logging
import re
import shutil
import subprocess
import time
from dataclasses import dataclass

from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import Client, override_settings
from rest_framework.test import APIClient

from compliance.management.commands.create_api_user import ensure_api_user
from compliance.models import RemovalRequest, RequestStatus
from unlearning.management.commands.build_demo_world import DEMO_MODEL_NAMES
from unlearning.management.commands.train_tabular_model import BUNDLED_DATASETS


@dataclass(frozen=True)
class DemoSubject:
    name: str
    email: str
    description: str  # what they ask to be removed, in their words
    who: str  # for the demo's reader


def certified_emails() -> set[str]:
    return set(RemovalRequest.objects.filter(status=RequestStatus.CERTIFIED).values_list("email", flat=True))


def pick_person(people: int) -> DemoSubject:
    """The first trained person of the demo world who has no certified request yet."""
    from unlearning.world import World, WorldConfig

    world = World.generate(WorldConfig(people=people, seed=settings.DEMO_WORLD_SEED, detail=settings.DEMO_WORLD_DETAIL))
    done = certified_emails()
    person = next((p for p in world.trained_people if p.email not in done), None)
    if person is None:
        raise CommandError("every trained person of the demo world already has a certificate: delete var/ to start over")
    return DemoSubject(person.name, person.email, "Everything about me: my biography, birthplace, employer and contact "
                                                  f"details ({person.name}).", "a fictitious person the model was trained on")


def pick_row_owner(model_name: str) -> DemoSubject:
    """The owner of the model's first training row who has no certified request yet."""
    from unlearning.models import TrainingRecord

    done = certified_emails()
    owners = TrainingRecord.objects.filter(asset__name=model_name).order_by("record_id").values_list("owner_key", flat=True)
    email = next((owner for owner in owners.iterator() if owner not in done), None)
    if email is None:
        raise CommandError(f"every row owner of {model_name} already has a certificate: delete var/ to start over")
    return DemoSubject(f"Subject {email.split('@')[0].split('-')[-1]}", email,
                       f"The row about me in your {model_name} training data.",
                       "the fictitious owner of one row of a scikit-learn data set")


class Command(BaseCommand):
    help = "Run one removal request from the portal to a signed, verified certificate."

    def add_arguments(self, parser):
        parser.add_argument("--regime", choices=tuple(DEMO_MODEL_NAMES), default="plain",
                            help="plain: GradDiff on one model (suppression); sisa: exact deletion by SISA shard "
                                 "retraining; s3t: exact deletion by switching S3T adapters off")
        parser.add_argument("--scale", choices=("cpu", "gpu"), default="cpu",
                            help="gpu: the largest demo world and an 11M-parameter GPT-2, on a CUDA device (make demo-gpu)")
        parser.add_argument("--dataset", choices=BUNDLED_DATASETS,
                            help="instead of the demo world's language model: a SISA classifier or regressor on "
                                 "this scikit-learn data set, and the owner of one of its rows")

    def handle(self, *args, regime, scale, dataset, **options):
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            raise CommandError("the demo runs tasks in-process: unset CELERY_BROKER_URL")
        from unlearning.demo_world import DEMO_SCALES
        from unlearning.numerics import device

        if DEMO_SCALES[scale].needs_cuda and device().type != "cuda":
            raise CommandError(f"the {scale}-scale demo needs a CUDA device (UNLEARNING_DEVICE resolves to "
                               f"{device().type} here); `make demo` runs the CPU scale")
        # In-process tasks would log each completion, innermost first; the demo prints its own summary.
        logging.getLogger("celery.app.trace").setLevel(logging.WARNING)
        started = time.perf_counter()
        subject = self._build_model(regime, dataset, scale)
        self.stdout.write(f"\nData subject: {subject.name} <{subject.email}> ({subject.who})")

        owner = Client()
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
            response = owner.post("/", {
                "full_name": subject.name, "email": subject.email, "jurisdiction": "gdpr", "confirm": "on",
                "description": subject.description,
            })
            if response.status_code != 302:
                raise CommandError(f"the portal refused the request: {response.status_code}")
            code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
        verify_url = response["Location"]
        response = owner.post(verify_url, {"code": code})
        if response.status_code != 302:
            raise CommandError("the portal refused the e-mailed code")
        request = RemovalRequest.objects.get(pk=verify_url.strip("/").split("/")[1])
        self.stdout.write(f"Request {request.reference} ({request.pk}) filed on the portal; identity verified by e-mailed code.")

        _, token = ensure_api_user("legal-demo")
        legal = APIClient()
        legal.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        self.stdout.write("Legal approves it on the API; the worker pipeline runs (in-process)...")
        pipeline_started = time.perf_counter()
        response = legal.post(f"/api/v1/requests/{request.pk}/approve/", {"note": "verified data subject"}, format="json")
        if response.status_code != 200:
            raise CommandError(f"approval failed: {response.status_code} {response.content[:500]!r}")
        detail = legal.get(f"/api/v1/requests/{request.pk}/").json()
        pipeline_seconds = time.perf_counter() - pipeline_started
        if detail["status"] != RequestStatus.CERTIFIED:
            raise CommandError(f"the request ended {detail['status']}: {detail['failed_step']}: {detail['failure_reason']}")
        self._print_results(detail, pipeline_seconds)
        certificate = detail["certificate"]
        pdf = legal.get(certificate["download"])
        path = settings.VAR_DIR / "certificates" / f"{certificate['serial']}.pdf"
        if b"".join(pdf.streaming_content) != path.read_bytes():
            raise CommandError("the API served different bytes from the stored certificate")
        self._check_signature(path)
        call_command("verify_audit_log", stdout=self.stdout)
        self.stdout.write(f"\nDone in {time.perf_counter() - started:.0f} s.\n")
        self.stdout.write(
            "Look around:\n"
            "  make serve                      # then open http://127.0.0.1:8000/ (portal)\n"
            f"  http://127.0.0.1:8000/verify/{certificate['serial']}/   (public verify page)\n"
            "  http://127.0.0.1:8000/api/v1/docs/                      (API, token below)\n"
            f"  curl -H 'Authorization: Token {token.key}' http://127.0.0.1:8000/api/v1/requests/{request.pk}/\n"
            f"  The owner's view needs the code: use 'Follow a request' with {request.reference} and {subject.email};\n"
            f"  the code arrives as a file in {settings.EMAIL_FILE_PATH}.\n"
        )

    def _build_model(self, regime: str, dataset: str | None, scale: str) -> DemoSubject:
        """Train and register the demo's model unless it is registered already; pick its subject."""
        if dataset is None:
            from unlearning.demo_world import DEMO_SCALES

            preset = DEMO_SCALES[scale]
            # A rich world's model under a name of its own, beside a compact one in the same database.
            detail = "-rich" if settings.DEMO_WORLD_DETAIL == "rich" else ""
            call_command("build_demo_world", regime=regime, scale=scale,
                         name=DEMO_MODEL_NAMES[regime] + preset.name_suffix + detail, stdout=self.stdout)
            return pick_person(preset.people or settings.DEMO_WORLD_PEOPLE)
        from unlearning.models import ModelAsset

        name = f"demo-{dataset.replace('_', '-')}"
        if not ModelAsset.objects.filter(name=name).exists():
            call_command("train_tabular_model", name=name, dataset=dataset, stdout=self.stdout)
        return pick_row_owner(name)

    def _print_results(self, detail: dict, seconds: float) -> None:
        self.stdout.write(f"\nPipeline finished in {seconds:.0f} s.")
        audits = {audit["job"]: audit for audit in detail["audits"]}
        for job in detail["jobs"]:  # one per model trained on the subject
            self._print_job(job, audits[job["id"]])
        self.stdout.write(f"Request {detail['reference']}: {detail['status']}; certificate {detail['certificate']['serial']}")

    def _print_job(self, job: dict, audit: dict) -> None:
        self.stdout.write(f"\nModel {job['model']}, method {job['method']}, {job['forget_records']} forget records.")
        if job["executed_plan"]:
            plan = job["executed_plan"]
            self.stdout.write(f"  exact deletion: retrained shards {[s['shard'] for s in plan['shards']]} "
                              f"({plan['estimated_steps']} optimizer steps; all shards from scratch: {plan['full_retraining_steps']})")
        holdout = audit["comparison"] == "holdout"
        oracle = "none: compared with never-trained people (AUDIT_REFERENCE_MAX_STEPS)" if holdout else audit["reference_sha256"]
        self.stdout.write(f"  before  {job['base_sha256']}\n  after   {job['result_sha256']}\n  oracle  {oracle}")
        self.stdout.write(f"\n{'metric':<30}{'original':>9}{'unlearned':>10}{'baseline' if holdout else 'retrained':>10}{'95% interval*':>19}"
                          f"{'margin':>8}{'n':>5}  verdict")
        for r in audit["results"]:
            low, high = r["difference_interval"]
            interval = "—" if low is None else f"[{low:+.3f}, {high:+.3f}]"
            self.stdout.write(f"{r['metric']:<30}{_number(r['original']):>9}{_number(r['unlearned']):>10}"
                              f"{_number(r['reference']):>10}{interval:>19}{r['margin']:>8.2f}{r['sample_size']:>5}  {r['verdict']}")
        interval_of = ("* of the unlearned model's gap between the subject and never-trained people; " if holdout
                       else "* of unlearned − retrained; ")
        ks_interval_of = "of D between the two; " if holdout else "of D(unlearned, retrained); "
        if any(r["metric"] == "forget_quality_ks" for r in audit["results"]):  # language models only
            interval_of += "for forget_quality_ks " + ks_interval_of
        self.stdout.write(interval_of + "for utility metrics of the degradation from the original. "
                                        "N/A: nothing to measure, or reported only.")
        privleaks = ", ".join(f"{r['metric'][4:-4]} {r['details']['privleak']:+.1f}" for r in audit["results"] if "privleak" in r["details"])
        if privleaks:
            self.stdout.write(f"PrivLeak (unlearned vs retrained, %): {privleaks}")
        self.stdout.write("\nBy family of audits (the policy's rule makes the verdict from these):")
        for family in audit["families"]:
            counted = "" if family["counted"] or family["verdict"] == "N/A" else " (not counted)"
            self.stdout.write(f"  {family['family']:<11} {family['verdict'] + counted:<26} {family['explanation'][:150]}")
        proof = (": removal proven by identity (the model after deletion is the retrained reference, byte for byte; "
                 "the audits above are measurements beside it)" if audit["verdict_basis"] == "identity" else "")
        self.stdout.write(f"Verdict: {audit['verdict']}{proof} (policy {audit['policy_version']})")

    def _check_signature(self, path) -> None:
        from audits.certificates import signing_identity
        from audits.signing import pdfsig_report, validate_pdf

        identity = signing_identity()
        check = validate_pdf(path.read_bytes(), identity.ca_file.read_bytes())
        self.stdout.write(f"\nCertificate: {path}\n  pyHanko validator: intact={check.intact} valid={check.valid} trusted={check.trusted}")
        if not check.ok:
            raise CommandError(f"the certificate's signature does not validate: {check.summary}")
        cli = shutil.which("pyhanko") or str(settings.BASE_DIR / ".venv" / "bin" / "pyhanko")
        result = subprocess.run([cli, "sign", "validate", "--trust", str(identity.ca_file), "--trust-replace", str(path)],
                                capture_output=True, text=True, timeout=60)
        self.stdout.write(f"  pyhanko sign validate --trust ca.pem (exit {result.returncode}): {result.stdout.strip().split(':', 1)[-1]}")
        if result.returncode != 0:
            raise CommandError("pyhanko rejected the certificate")
        if not (shutil.which("pdfsig") and shutil.which("certutil")):
            self.stdout.write("  pdfsig: not installed (apt-get install poppler-utils libnss3-tools)")
        else:
            report = pdfsig_report(path, identity.ca_file, settings.VAR_DIR / "nss").stdout
            verdicts = [line.strip(" -") for line in report.splitlines() if "Signature Validation" in line or "Certificate Validation" in line]
            self.stdout.write(f"  pdfsig, CA trusted via NSS: {'; '.join(verdicts)}")
            if "Signature is Valid." not in report:
                raise CommandError("pdfsig rejected the certificate")
        self.stdout.write(f"  trust anchor: {identity.ca_file} (SHA-256 {identity.ca_fingerprint()})")


def _number(value: float | None) -> str:
    """A figure for the table; N/A results have none."""
    return "—" if value is None else f"{value:.3f}"
