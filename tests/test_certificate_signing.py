"""The certificate's signature and print: PAdES (ETSI.CAdES.detached), an RFC 3161 timestamp from a
configured timestamp authority (a local one here), a visible signature on the last page, "Page N of
M" on every page, and only embedded fonts."""

import dataclasses
import datetime
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from audits.certificate_pdf import BODY_FONT, BOLD_FONT, MONO_FONT, font_file, render_certificate
from audits.certificates import certificate_content, signing_identity
from audits.models import Certificate
from audits.services import issue_certificate
from audits.signing import TimestampUnavailable, create_local_identity, pdfsig_report, validate_pdf
from compliance.models import AuditEvent, RemovalRequest, RequestStatus

pytestmark = pytest.mark.django_db
PADES = "/ETSI.CAdES.detached"


def pdftotext_pages(path) -> list[str]:
    text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout
    return text.split("\f")[:-1]  # pdftotext ends every page with a form feed


def pyhanko_validate(path, *trusted: Path) -> subprocess.CompletedProcess:
    trust = [argument for ca in trusted for argument in ("--trust", str(ca))]
    return subprocess.run([str(Path(sys.executable).parent / "pyhanko"), "sign", "validate", *trust, "--trust-replace",
                           str(path)], capture_output=True, text=True)


def test_the_certificate_is_a_pades_signature_that_both_verifiers_accept(certified, tmp_path):
    _, certificate = certified
    ca = signing_identity().ca_file
    check = validate_pdf(Path(certificate.pdf_path).read_bytes(), ca.read_bytes())
    assert check.ok and check.subfilter == PADES and not check.timestamped
    pdfsig = pdfsig_report(Path(certificate.pdf_path), ca, tmp_path / "nss").stdout
    assert "Signature Type: ETSI.CAdES.detached" in pdfsig and "Signature is Valid." in pdfsig
    assert "Certificate is Trusted." in pdfsig
    cli = pyhanko_validate(certificate.pdf_path, ca)
    assert cli.returncode == 0 and "INTACT:TRUSTED,UNTOUCHED" in cli.stdout


def test_the_signature_is_visible_on_the_last_page_naming_the_signer_and_the_time(certified):
    from pyhanko.pdf_utils.reader import PdfFileReader

    _, certificate = certified
    with open(certificate.pdf_path, "rb") as handle:
        reader = PdfFileReader(handle)
        field = reader.embedded_signatures[0].sig_field
        last_page = reader.root["/Pages"]["/Kids"].raw_get(-1)
        x1, y1, x2, y2 = (float(value) for value in field["/Rect"])
        assert x2 > x1 and y2 > y1  # a box, not an invisible signature
        assert field.raw_get("/P").idnum == last_page.idnum
        assert field.container_ref.idnum in [annotation.idnum for annotation in last_page.get_object()["/Annots"]]
    signer = signing_identity().certificate().subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    last = " ".join(pdftotext_pages(certificate.pdf_path)[-1].split())
    assert f"Digitally signed by {signer}" in last
    assert re.search(r"Signing time: \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", last)


def test_every_page_says_which_of_how_many_it_is_and_the_serial(certified):
    _, certificate = certified
    pages = pdftotext_pages(certificate.pdf_path)
    assert len(pages) > 1
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {len(pages)}" in page and f"Certificate {certificate.serial}" in page


def test_every_font_in_the_signed_pdf_is_embedded(certified):
    _, certificate = certified
    listing = subprocess.run(["pdffonts", certificate.pdf_path], capture_output=True, text=True, check=True).stdout
    fonts = listing.splitlines()[2:]  # under the header and its rule
    assert {line.split()[0].split("+")[-1] for line in fonts} == {
        BODY_FONT, BOLD_FONT, MONO_FONT, f"{BODY_FONT}-Identity-H"}  # the last one: the signature's stamp
    emb = listing.splitlines()[0].index("emb")
    assert all(line[emb:emb + 3] == "yes" for line in fonts), listing


def test_the_symbols_the_certificate_prints_are_in_its_fonts(audited_request, tmp_path):
    from fontTools.ttLib import TTFont

    request, _, run = audited_request
    head = AuditEvent.objects.order_by("-seq").first()
    content = certificate_content(request=request, runs=[run], serial="UC-TEST", head=head)
    symbols = "p ≥ 0.95 − 0.05 — then → PASS"
    path = tmp_path / "certificate.pdf"
    path.write_bytes(render_certificate(dataclasses.replace(content, limitations=[symbols])))
    text = "".join(pdftotext_pages(path))
    assert symbols in text
    glyphs = set().union(*(TTFont(font_file(name))["cmap"].getBestCmap() for name in (BODY_FONT, BOLD_FONT, MONO_FONT)))
    assert {ord(character) for character in text if not character.isspace()} <= glyphs  # no character drawn as a box


def tsa_certificate(ca_folder: Path, key: rsa.RSAPrivateKey) -> x509.Certificate:
    """A TSA certificate from a test CA: timeStamping its only extended key usage, critical (RFC 3161 2.3)."""
    ca_key = serialization.load_pem_private_key((ca_folder / "ca.key").read_bytes(), password=None)
    ca = x509.load_pem_x509_certificate((ca_folder / "ca.pem").read_bytes())
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test TSA")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


@pytest.fixture
def tsa(tmp_path):
    """An RFC 3161 timestamp authority on 127.0.0.1: pyHanko's test timestamper behind an HTTP
    server, its certificate issued by a CA of its own (not the signer's). Yields (url, CA file, the
    content types of the requests it answered)."""
    from asn1crypto import keys, tsp
    from asn1crypto import x509 as asn1_x509
    from pyhanko.sign.timestamps import DummyTimeStamper

    ca_folder = tmp_path / "tsa"
    create_local_identity(ca_folder, "Test TSA")  # its CA; the signer it makes beside it is unused
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stamper = DummyTimeStamper(
        tsa_cert=asn1_x509.Certificate.load(tsa_certificate(ca_folder, key).public_bytes(serialization.Encoding.DER)),
        tsa_key=keys.PrivateKeyInfo.load(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption())))
    queries = []

    class TimestampHandler(BaseHTTPRequestHandler):
        def do_POST(self):
            queries.append(self.headers["Content-Type"])
            query = tsp.TimeStampReq.load(self.rfile.read(int(self.headers["Content-Length"])))
            reply = stamper.request_tsa_response(query).dump()
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass  # quiet test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), TimestampHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/tsr", ca_folder / "ca.pem", queries
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def timestamped(tsa, settings, request):
    """The `certified` request, its certificate signed with the local TSA's timestamp."""
    settings.CERTIFICATE_TIMESTAMP_URL = tsa[0]
    return request.getfixturevalue("certified")


def test_a_configured_timestamp_authority_timestamps_the_signature(timestamped, tsa, tmp_path):
    _, certificate = timestamped
    _, tsa_ca, queries = tsa
    assert set(queries) == {"application/timestamp-query"}  # pyHanko asks once more to size the signature
    ca, pdf = signing_identity().ca_file, Path(certificate.pdf_path).read_bytes()
    check = validate_pdf(pdf, ca.read_bytes(), timestamp_ca_pem=tsa_ca.read_bytes())
    assert check.ok and check.subfilter == PADES and check.timestamped and check.timestamp_trusted
    assert not validate_pdf(pdf, ca.read_bytes()).timestamp_trusted  # the token is checked against its TSA's CA
    cli = pyhanko_validate(certificate.pdf_path, ca, tsa_ca)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "INTACT:TRUSTED,TIMESTAMP_TOKEN<INTACT:TRUSTED>,UNTOUCHED" in cli.stdout
    assert pyhanko_validate(certificate.pdf_path, ca).returncode != 0  # an untrusted timestamp is not accepted
    pdfsig = pdfsig_report(Path(certificate.pdf_path), ca, tmp_path / "nss").stdout
    assert "Signature Type: ETSI.CAdES.detached" in pdfsig and "Signature is Valid." in pdfsig
    assert "with an RFC 3161 timestamp" in " ".join(pdftotext_pages(certificate.pdf_path)[-1].split())


@pytest.fixture
def silent_tsa():
    """A timestamp authority that takes the connection and never answers."""
    with socket.create_server(("127.0.0.1", 0)) as listening:
        yield f"http://127.0.0.1:{listening.getsockname()[1]}/tsr"


def test_a_timestamp_authority_that_does_not_answer_fails_the_signing(audited_request, store, settings, silent_tsa):
    request, _, _ = audited_request
    settings.CERTIFICATE_TIMESTAMP_URL, settings.CERTIFICATE_TIMESTAMP_TIMEOUT_SECONDS = silent_tsa, 1
    RemovalRequest.objects.filter(pk=request.pk).update(status=RequestStatus.AUDITING)
    with pytest.raises(TimestampUnavailable, match=f"authority {silent_tsa} gave no timestamp .no answer within 1 s."):
        issue_certificate(request_id=request.pk)
    request.refresh_from_db()
    assert request.status == RequestStatus.AUDITING and not Certificate.objects.exists()  # the task can try again
    assert not list((store / "certificates").glob("*.pdf"))
